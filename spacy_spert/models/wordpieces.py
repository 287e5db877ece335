"""The transformer's output of a batch as the head's input: wordpiece
vectors stacked over the docs and indexed by global token (``wordpiece_features``),
and the gradient of those vectors cut back per doc (``split_gradients``).

A doc's ``TransformerData`` (from the listener) holds its windows'
last_hidden_state, the token-to-wordpiece alignment and, in each window's
first row, [CLS]. Tokens that got no wordpiece (whitespace, or a window the
transformer truncated) pool to zeros in the head.
"""

import warnings
from dataclasses import dataclass
from typing import List

import numpy
from spacy.tokens import Doc
from spacy_transformers.data_classes import TransformerData
from thinc.api import get_array_module
from transformers.file_utils import ModelOutput

from .suggesters import whitespace_mask


@dataclass
class WordpieceFeatures:
    """The wordpiece vectors of a batch of docs, indexed by global token."""

    hidden: numpy.ndarray  # (R, H): every doc's last_hidden_state rows, stacked
    row_offsets: List[int]  # first row of each doc in ``hidden``
    align_rows: numpy.ndarray  # (A,) row of each token-wordpiece alignment entry
    align_tokens: numpy.ndarray  # (A,) global token of each alignment entry
    cls_rows: numpy.ndarray  # (n_windows,) the row of each transformer window's [CLS]
    token_windows: numpy.ndarray  # (N,) the window that holds the token
    all_covered: bool  # every token has at least one wordpiece

    @property
    def token_cls_rows(self) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): (N,) the [CLS] row of each token's window."""
        return self.cls_rows[self.token_windows]


def wordpiece_features(docs: List[Doc], trf_datas: List[TransformerData], width: int) -> WordpieceFeatures:
    """Stack the transformer output of a batch and index it by global token.
    A token's window is the one that holds its first wordpiece; tokens
    without wordpieces take the previous token's (or the first window).

    docs (List[Doc]): The batch.
    trf_datas (List[TransformerData]): The listener's output, one per doc.
    width (int): The hidden width (for docs without transformer output).
    RETURNS (WordpieceFeatures): The stacked vectors and their indices.
    """
    hiddens, row_offsets, align_rows, align_tokens, cls_rows, token_windows = [], [], [], [], [], []
    n_rows = n_tokens = n_windows = 0
    all_covered = True
    xp = numpy
    for doc, trf in zip(docs, trf_datas):
        row_offsets.append(n_rows)
        n = len(doc)
        lhs = trf.model_output.get("last_hidden_state") if n else None
        if lhs is None or lhs.size == 0:
            if n:
                # No transformer output for a non-empty doc: one zero row that
                # serves as its [CLS]; its tokens have no wordpieces.
                all_covered = False
                hiddens.append(numpy.zeros((1, width), dtype="float32"))
                cls_rows.append(numpy.asarray([n_rows], dtype="int64"))
                token_windows.append(numpy.full((n,), n_windows, dtype="int64"))
                n_rows += 1
                n_windows += 1
                n_tokens += n
            continue
        xp = get_array_module(lhs)
        seq_len = lhs.shape[1]
        flat = lhs.reshape(-1, lhs.shape[-1])
        lengths = numpy.asarray(trf.align.lengths, dtype="int64")
        rows = numpy.asarray(trf.align.dataXd, dtype="int64").reshape(-1)
        if numpy.count_nonzero(lengths) == len(lengths):  # every token has wordpieces
            if lhs.shape[0] == 1:
                window = numpy.zeros((n,), dtype="int64")
            else:
                window = rows[numpy.cumsum(lengths) - lengths] // seq_len
        else:
            all_covered = False
            _warn_if_truncated(doc, lengths)
            has_wp = lengths > 0
            first = numpy.zeros((n,), dtype="int64")
            first[has_wp] = rows[(numpy.cumsum(lengths) - lengths)[has_wp]] // seq_len
            idx = numpy.where(has_wp, numpy.arange(n), -1)
            numpy.maximum.accumulate(idx, out=idx)
            window = numpy.where(idx >= 0, first[numpy.clip(idx, 0, None)], 0)
        align_rows.append(rows + n_rows if n_rows else rows)
        align_tokens.append(numpy.arange(n_tokens, n_tokens + n, dtype="int64").repeat(lengths))
        cls_rows.append(numpy.arange(n_rows, n_rows + seq_len * lhs.shape[0], seq_len, dtype="int64"))
        token_windows.append(window + n_windows if n_windows else window)
        hiddens.append(flat)
        n_rows += flat.shape[0]
        n_windows += lhs.shape[0]
        n_tokens += n
    if len(hiddens) == 1:
        hidden = xp.asarray(hiddens[0], dtype="float32")
    elif hiddens:
        hidden = xp.concatenate([xp.asarray(h, dtype="float32") for h in hiddens])
    else:
        hidden = numpy.zeros((0, width), dtype="float32")
    return WordpieceFeatures(
        hidden=hidden,
        row_offsets=row_offsets,
        align_rows=_cat(align_rows),
        align_tokens=_cat(align_tokens),
        cls_rows=_cat(cls_rows),
        token_windows=_cat(token_windows),
        all_covered=all_covered,
    )


def _warn_if_truncated(doc: Doc, lengths: numpy.ndarray) -> None:
    """Warn when tokens other than whitespace got no wordpiece: the
    transformer cut a window that was longer than its maximum length in
    wordpieces, and nothing in the cut part can be found. Called for docs
    where some token got none."""
    lost = numpy.flatnonzero((lengths == 0) & ~whitespace_mask(doc))
    if len(lost):
        warnings.warn(
            f"[spacy-spert] {len(lost)} of {len(doc)} tokens of a doc got no wordpiece "
            f"(first: token {lost[0]}, {doc[int(lost[0])].text!r}): a transformer window held more wordpieces "
            f"than the encoder's maximum length, the transformer truncated it, and no entity can be found in "
            f"the cut tokens. Windows bounded in tokens alone overflow when tokens split into many wordpieces "
            f"(URLs, identifiers, long names) or a doc is one window; bound them in wordpieces too: "
            f'[components.transformer.model.get_spans] @span_getters = "spacy-spert.sentence_windows.v2".',
            stacklevel=2,
        )


def _cat(arrays: List[numpy.ndarray]) -> numpy.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    return numpy.concatenate(arrays) if arrays else numpy.zeros((0,), dtype="int64")


def split_gradients(trf_datas: List[TransformerData], d_hidden, row_offsets: List[int]) -> List[TransformerData]:
    """Cut the stacked gradient back into one ``TransformerData`` per doc whose
    model_output holds only last_hidden_state, as spacy-transformers expects.

    trf_datas (List[TransformerData]): The listener's output, one per doc.
    d_hidden (Floats2d): (R, H) the gradient of ``WordpieceFeatures.hidden``.
    row_offsets (List[int]): ``WordpieceFeatures.row_offsets``.
    RETURNS (List[TransformerData]): The gradient per doc.
    """
    outputs = [t.model_output.get("last_hidden_state") for t in trf_datas]
    shapes = [x.shape for x in outputs if x is not None and x.size]
    d_trf_datas = []
    for trf, start in zip(trf_datas, row_offsets):
        lhs = trf.model_output.get("last_hidden_state")
        if lhs is None or lhs.size == 0:
            # A doc without windows (empty) still sends back a gradient with
            # zero windows, so that the transformer can stack the batch.
            empty = d_hidden[:0].reshape((0,) + tuple(shapes[0][1:])) if shapes else d_hidden[:0]
            d_trf_datas.append(
                TransformerData(
                    wordpieces=trf.wordpieces, model_output=ModelOutput(last_hidden_state=empty), align=trf.align
                )
            )
            continue
        n_rows = lhs.shape[0] * lhs.shape[1]
        d_lhs = d_hidden[start : start + n_rows].reshape(lhs.shape)
        d_trf_datas.append(
            TransformerData(
                wordpieces=trf.wordpieces,
                model_output=ModelOutput(last_hidden_state=d_lhs),
                align=trf.align,
            )
        )
    return d_trf_datas
