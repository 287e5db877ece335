"""The token-to-wordpiece alignment of the spacy-transformers ``transformer``,
computed from offsets trimmed of whitespace, and its check at initialize.

spacy-transformers aligns a spaCy token with every wordpiece whose character
offsets touch the token's characters *or the one character after it* (its
trailing space). Tokenizers that count the space before a piece as part of
the piece (sentencepiece's ``▁``, as DeBERTa-v2/v3 and XLM-R converted from
their ``.model`` files; byte-level BPE without offset trimming, as
ModernBERT) report offsets such as " Ferreira" = (3, 12), so each token
also gets the next token's first piece ("Zoe" gets " Ferreira", "," gets
" a"). Nothing fails, but every span vector mixes in its neighbour.

The fix is one rule: a piece belongs to the tokens whose characters its
offsets cover once whitespace is trimmed from both ends; a piece that is
only whitespace belongs to no token. With trimmed offsets spacy-transformers'
own alignment function gives exactly that (the trailing character it adds
to a token is then never covered by another token's piece), so
``aligned_forward`` is spacy-transformers' forward with that one change (and
two more: the windows are truncated at the encoder's own maximum length,
``max_wordpieces``, and the tokenizer is called with ``verbose=False``, so
transformers does not claim that a long window "will result in indexing
errors" when the windows are truncated anyway). For tokenizers whose offsets
never hold whitespace (BERT, DistilBERT, ELECTRA, RoBERTa) every word keeps
exactly spacy-transformers' alignment; only spaCy's whitespace tokens ("\n",
a second space) lose a piece that is only whitespace (byte-level "Ċ"), as
they have none with BERT.

Why here and not elsewhere: the offsets exist only inside the transformer's
forward (``TransformerData`` keeps the alignment, not the offsets), so a
listener could only re-tokenize every batch to redo it; wrapping the
tokenizer does not survive loading (spacy-transformers rebuilds the tokenizer
from its files, and the class name is saved with it). ``install_aligned_forward``
instead sets the forward function of the ``TransformerModel`` object, which
loading fills in place, ``pickle`` stores by reference (``nlp.pipe(n_process=2)``)
and the ``spert`` factory sets whenever a pipeline is built (``spacy.load``,
a packaged pipeline, ``nlp.add_pipe``; see ``span_getters.bind_wordpiece_windows``).
It applies to every spacy-transformers transformer of a pipeline with a
``spert`` component, so all listeners of that transformer see the same
alignment. A transformer copied into another component by
``nlp.replace_listeners`` keeps spacy-transformers' forward.

``check_alignment`` measures an alignment against the trimmed offsets, and
``warn_alignment`` (called by ``spert``'s ``initialize``) warns when a token
still gets a piece that belongs to another token, when the tokenizer gives no
offsets at all, when many tokens have exactly a neighbour's pieces, or when
the encoder has no [CLS]-like first piece for SpERT's context vector.
"""

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import numpy
from spacy.tokens import Doc, Span
from spacy_transformers.align import get_alignment, get_alignment_via_offset_mapping, get_token_positions
from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.layers.transformer_model import forward as spacy_transformers_forward
from spacy_transformers.truncate import truncate_oversize_splits
from spacy_transformers.util import log_batch_size, log_gpu_memory, maybe_flush_pytorch_cache
from thinc.types import Ints2d, Ragged
from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

# transformers' "no limit" is about 1e30; anything above this is none.
NO_LIMIT = 1_000_000
# Encoders whose position ids start after the padding index (RoBERTa's
# embeddings): max_position_embeddings less pad_token_id + 1 fit a window.
PADDING_OFFSET_POSITIONS = {
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "data2vec-text",
    "longformer",
    "roberta-prelayernorm",
    "xmod",
    "bart",
    "mbart",
}
# Share of tokens with exactly a neighbour's pieces (identical vectors) above
# which warn_alignment says so (English with BERT: about none; Chinese with
# spaCy's character segmenter and XLM-R's multi-character pieces: most).
INDISTINCT_WARN_RATIO = 0.05
_SPACE = re.compile(r"\s")


def trim_offsets(texts: Sequence[str], offsets: numpy.ndarray) -> numpy.ndarray:
    """Trim whitespace off both ends of each wordpiece's character offsets; a
    piece that is only whitespace gets an empty range (no characters).

    texts (Sequence[str]): The window texts that were tokenized.
    offsets (numpy.ndarray): (n_windows, n_pieces, 2) the tokenizer's
        ``offset_mapping`` of ``texts`` (padded; special tokens are (0, 0)).
    RETURNS (numpy.ndarray): The trimmed offsets, same shape, int64.
    """
    offsets = numpy.asarray(offsets, dtype="int64")
    if offsets.size == 0:
        return offsets.copy()
    # one string, the windows separated by a whitespace character, so that
    # every window's offsets become global by adding its base
    joined = "\n".join(texts)
    bases = numpy.cumsum([0] + [len(text) + 1 for text in texts[:-1]], dtype="int64")
    is_space = numpy.zeros(len(joined) + 1, dtype="bool")
    is_space[[m.start() for m in _SPACE.finditer(joined)]] = True
    solid = numpy.flatnonzero(~is_space)  # (ends with the sentinel len(joined))
    starts = offsets[..., 0] + bases[:, None]
    ends = offsets[..., 1] + bases[:, None]
    # first solid character at or after the start; last solid one before the end
    new_starts = numpy.minimum(solid[numpy.searchsorted(solid, starts, side="left")], ends)
    before_end = numpy.searchsorted(solid, ends, side="left") - 1
    last = numpy.where(before_end >= 0, solid[numpy.clip(before_end, 0, None)], -1)
    new_ends = numpy.maximum(last + 1, new_starts)
    new_ends = numpy.minimum(new_ends, ends)
    trimmed = numpy.stack([new_starts, numpy.maximum(new_ends, new_starts)], axis=-1) - bases[:, None, None]
    return trimmed.astype("int64", copy=False)


def encoder_max_length(transformer: Any) -> Optional[int]:
    """The longest window (special tokens included) the encoder's position
    embeddings hold: ``max_position_embeddings`` (8,192 for ModernBERT),
    less the padding offset of RoBERTa-style embeddings (514 - 2 = 512).

    transformer: The Hugging Face model (with a ``config``), or None.
    RETURNS (Optional[int]): The length, or None where the config has none.
    """
    config = getattr(transformer, "config", None)
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_POSITIONS:
        n -= int(getattr(config, "pad_token_id", 0) or 0) + 1
    return max(1, n)


def max_wordpieces(tokenizer: Any, transformer: Any = None) -> Optional[int]:
    """The longest window in wordpieces: the smaller of the tokenizer's
    ``model_max_length`` and the encoder's own maximum
    (``encoder_max_length``).

    RETURNS (Optional[int]): The length, or None where neither has one.
    """
    limits = [encoder_max_length(transformer)]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < NO_LIMIT:
        limits.append(tokenizer_limit)
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def tokenize_windows(tokenizer: Any, texts: List[str]) -> Any:
    """spacy-transformers' ``huggingface_tokenize``, with ``verbose=False``
    (the windows are truncated to the encoder after this call, so
    transformers' warning about sequences longer than the model's maximum is
    not true here) and right padding (each window's [CLS] in its first row).

    RETURNS (BatchEncoding): The encoding, with the wordpiece strings in
        "input_texts" and the pad token in "pad_token".
    """
    kwargs: Dict[str, Any] = {}
    if getattr(tokenizer, "padding_side", "right") != "right":
        kwargs["padding_side"] = "right"
    token_data = tokenizer(
        texts,
        add_special_tokens=True,
        return_attention_mask=True,
        return_offsets_mapping=isinstance(tokenizer, PreTrainedTokenizerFast),
        return_tensors="np",
        return_token_type_ids=None,
        padding="longest",
        verbose=False,
        **kwargs,
    )
    token_data["input_texts"] = [tokenizer.convert_ids_to_tokens(ids) for ids in token_data["input_ids"]]
    token_data["pad_token"] = tokenizer.pad_token
    return token_data


def flat_windows(model: Any, docs: List[Doc]) -> Tuple[List[List[Span]], List[Span]]:
    """RETURNS (Tuple[List[List[Span]], List[Span]]): The transformer's
    windows of the docs (its ``get_spans``), per doc and flat."""
    nested = model.attrs["get_spans"](docs)
    return nested, [span for doc_spans in nested for span in doc_spans]


def encode_windows(model: Any, spans: List[Span]) -> Tuple[Any, WordpieceBatch, Ragged]:
    """Tokenize windows and align them with trimmed offsets, then truncate
    the windows at ``max_wordpieces`` as spacy-transformers does.

    model (TransformerModel): The transformer model (its tokenizer is loaded).
    spans (List[Span]): The windows.
    RETURNS (Tuple[BatchEncoding, WordpieceBatch, Ragged]): The encoding
        (untruncated, with "offset_mapping" for fast tokenizers), the
        wordpieces and the alignment (both truncated).
    """
    tokenizer = model.tokenizer
    texts = [span.text for span in spans]
    encoding = tokenize_windows(tokenizer, texts)
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    if "offset_mapping" in encoding:
        # (typed Ints2d upstream, but it is the (windows, pieces, 2) offset_mapping)
        trimmed = cast(Ints2d, trim_offsets(texts, encoding["offset_mapping"]))
        align = get_alignment_via_offset_mapping(spans, trimmed)
    else:  # slow tokenizers: by the strings (warn_alignment says so)
        align = get_alignment(spans, wordpieces.strings, tokenizer.all_special_tokens)
    limit = max_wordpieces(tokenizer, model.transformer)
    if limit is not None:
        wordpieces, align = truncate_oversize_splits(wordpieces, align, limit)
    return encoding, wordpieces, align


def aligned_forward(model: Any, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    """spacy-transformers' ``TransformerModel`` forward with the alignment of
    ``encode_windows``: the same windows, wordpieces, transformer call and
    output (``FullTransformerBatch``) and the same backprop."""
    transformer = model.layers[0]
    nested_spans, flat_spans = flat_windows(model, docs)
    maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    logger = model.attrs.get("logger")
    if logger is not None:
        log_gpu_memory(logger, "begin forward")
    _, wordpieces, align = encode_windows(model, flat_spans)
    if logger is not None:
        log_batch_size(logger, wordpieces, is_train)
    model_output, bp_tensors = transformer(wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        bp_tensors(d_output.model_output)
        return docs

    return output, backprop


def install_aligned_forward(model: Any) -> bool:
    """Give a spacy-transformers ``TransformerModel`` the trimmed-offset
    alignment (``aligned_forward``). A model whose forward is not
    spacy-transformers' own (already ours, or someone else's) is left alone.

    model (Model): The transformer component's model.
    RETURNS (bool): Whether the model now has ``aligned_forward``.
    """
    if not isinstance(model, TransformerModel):
        return False
    if model._func is spacy_transformers_forward:
        model._func = aligned_forward
    return model._func is aligned_forward


# Checks ---------------------------------------------------------------------


@dataclass
class AlignmentReport:
    """How an alignment of tokens to wordpieces fits the pieces' characters.

    n_tokens (int): Tokens checked (not whitespace).
    foreign (List[Tuple[int, str, str]]): (token index, token text, piece
        text) for each token that got a piece with none of its characters
        (one example per token).
    indistinct (int): Tokens whose pieces are exactly those of a
        neighbouring token (one piece covers both: the tokenizer's pieces are
        coarser than spaCy's tokens), so their vectors are identical.
    indistinct_example (Optional[Tuple[str, str]]): (the pieces' text, the
        tokens' texts) of the first such run.
    has_offsets (bool): Whether the tokenizer gave offsets (fast tokenizers).
    """

    n_tokens: int = 0
    foreign: List[Tuple[int, str, str]] = field(default_factory=list)
    indistinct: int = 0
    indistinct_example: Optional[Tuple[str, str]] = None
    has_offsets: bool = True

    @property
    def n_foreign(self) -> int:
        """RETURNS (int): Tokens that got a piece belonging to other tokens."""
        return len(self.foreign)


def alignment_report(spans: List[Span], offsets: numpy.ndarray, align: Ragged, seq_len: int) -> AlignmentReport:
    """Measure an alignment against the pieces' trimmed character offsets.

    spans (List[Span]): The windows, as aligned.
    offsets (numpy.ndarray): (n_windows, L, 2) the tokenizer's offsets of the
        windows (untrimmed or trimmed: they are trimmed here).
    align (Ragged): The alignment (rows into the (n_windows, seq_len) pieces).
    seq_len (int): The pieces per window in ``align``'s rows (after truncation).
    RETURNS (AlignmentReport): The counts.
    """
    texts = [span.text for span in spans]
    trimmed = trim_offsets(texts, offsets)
    window_start = numpy.asarray([span.start_char for span in spans], dtype="int64")
    positions = get_token_positions(spans)
    tokens = sorted(positions, key=positions.__getitem__)
    lengths = numpy.asarray(align.lengths, dtype="int64")
    rows = numpy.asarray(align.dataXd, dtype="int64").reshape(-1)
    starts = numpy.cumsum(lengths) - lengths
    report = AlignmentReport()
    pieces: List[frozenset] = [frozenset()] * len(tokens)  # each token's pieces, as (start, end) characters
    for position, token in enumerate(tokens):
        if token.is_space:
            continue
        report.n_tokens += 1
        t_start, t_end = token.idx, token.idx + len(token)
        bad = None
        own = set()
        for row in rows[starts[position] : starts[position] + lengths[position]]:
            window, piece = divmod(int(row), seq_len)
            p_start, p_end = (trimmed[window, piece] + window_start[window]).tolist()
            if p_start >= p_end or p_end <= t_start or p_start >= t_end:
                if bad is None:
                    raw_start, raw_end = (offsets[window, piece] + window_start[window]).tolist()
                    bad = token.doc.text[raw_start:raw_end]
            else:
                own.add((p_start, p_end))
        pieces[position] = frozenset(own)
        if bad is not None:
            report.foreign.append((token.i, token.text, bad))
    # tokens with exactly the pieces of the next token of their doc (a run of
    # them: all but the last; the last is counted with the token before)
    run: List[int] = []
    for position in range(len(tokens) + 1):
        same = (
            0 < position < len(tokens)
            and pieces[position]
            and pieces[position] == pieces[position - 1]
            and tokens[position].doc is tokens[position - 1].doc
        )
        if same:
            run.append(position)
            continue
        if run:
            first = run[0] - 1
            report.indistinct += len(run) + 1
            if report.indistinct_example is None:
                doc = tokens[first].doc
                p_start = min(s for s, _ in pieces[first])
                p_end = max(e for _, e in pieces[first])
                report.indistinct_example = (
                    doc.text[p_start:p_end],
                    " | ".join(tokens[p].text for p in [first, *run]),
                )
        run = []
    return report


def check_alignment(model: Any, docs: Iterable[Doc]) -> AlignmentReport:
    """Measure the alignment that the transformer model gives the docs (its
    own forward, whatever it is) against the pieces' trimmed offsets.

    model (TransformerModel): The transformer component's model, loaded.
    docs (Iterable[Doc]): Sample docs (e.g. the first training docs).
    RETURNS (AlignmentReport): The counts (``has_offsets`` False and nothing
        counted for a tokenizer without offsets).
    """
    docs = [doc for doc in docs if len(doc)]
    _, spans = flat_windows(model, docs)
    if not spans:
        return AlignmentReport()
    tokenizer = model.tokenizer
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return AlignmentReport(has_offsets=False)
    if model._func is aligned_forward:
        encoding, wordpieces, align = encode_windows(model, spans)
    else:  # someone else's forward: what it really does
        output = model.predict(docs)
        encoding, wordpieces, align = (
            tokenize_windows(tokenizer, [s.text for s in spans]),
            output.wordpieces,
            output.align,
        )
    return alignment_report(spans, encoding["offset_mapping"], align, int(wordpieces.input_ids.shape[1]))


def first_piece_is_special(tokenizer: Any) -> bool:
    """RETURNS (bool): Whether the tokenizer starts every window with a
    special token ([CLS], <s>), the vector SpERT takes as a span's context."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] in set(tokenizer.all_special_ids)


def warn_alignment(nlp: Any, component: str, docs: Sequence[Doc], context: str = "cls") -> List[str]:
    """Check the alignment of the transformer(s) that a ``spert`` component
    listens to on sample docs, and warn about what would mix neighbouring
    tokens or lose the context vector. Called by ``spert``'s ``initialize``.

    nlp (Language): The pipeline.
    component (str): The spert component's name.
    docs (Sequence[Doc]): Sample docs (the first training docs).
    context (str): The listener's context setting ("cls" or "max").
    RETURNS (List[str]): The warnings given (also issued with ``warnings.warn``).
    """
    messages = []
    for name, pipe in nlp.components:  # (a frozen transformer is disabled while spert initializes)
        model = getattr(pipe, "model", None)
        listeners = getattr(pipe, "listener_map", {}).get(component)
        if not listeners or not isinstance(model, TransformerModel) or not model.attrs.get("has_transformer"):
            continue
        tokenizer = model.tokenizer
        where = f"The transformer '{name}' ({type(tokenizer).__name__}) of spert '{component}'"
        report = check_alignment(model, docs)
        if not report.has_offsets:
            messages.append(
                f"{where} is a slow tokenizer without character offsets, so its wordpieces are aligned to tokens "
                "by matching strings, which spert cannot check: pieces with a space marker (▁, Ġ) or normalized "
                "text may go to the wrong token. Use the fast tokenizer: "
                f"[components.{name}.model.tokenizer_config] use_fast = true."
            )
        if report.n_foreign:
            i, text, piece = report.foreign[0]
            messages.append(
                f"{where}: {report.n_foreign} of {report.n_tokens} tokens got a wordpiece whose characters belong "
                f"to other tokens (first: token {i} {text!r} got {piece!r}). Span vectors then mix neighbouring "
                "words. The cause is the tokenizer's character offsets (they include text outside the piece, e.g. "
                "the space before it) with a forward that does not trim them: spert trims them for "
                "spacy-transformers' TransformerModel; this transformer's forward is "
                f"{getattr(model._func, '__qualname__', model._func)!r}."
            )
        if report.n_tokens and report.indistinct > INDISTINCT_WARN_RATIO * report.n_tokens:
            piece, held = report.indistinct_example or ("", "")
            messages.append(
                f"{where}: {report.indistinct} of {report.n_tokens} tokens have exactly the wordpieces of a "
                f"neighbouring token (e.g. {piece!r} is all of {held}): the tokenizer's pieces are coarser than "
                "spaCy's tokens, so those tokens get the same vector and no entity can start or end between them. "
                "Use a spaCy tokenizer that splits no finer than the transformer (for Chinese: "
                'nlp.tokenizer with segmenter "jieba" or "pkuseg" instead of "char").'
            )
        if context == "cls" and not first_piece_is_special(tokenizer):
            messages.append(
                f"{where} adds no special token ([CLS], <s>) at the start of a window, so the context vector "
                "SpERT reads from the first row is an ordinary wordpiece: use the window's maximum instead, "
                f'[components.{component}.model.tok2vec] context = "max".'
            )
    for message in messages:
        warnings.warn(f"[spacy-spert] {message}", stacklevel=3)
    return messages
