"""The PyTorch head of the SpERT model (``SpERTHead``): the width embedding,
the pooling (``range_max.py``) and the two classifiers (``classifiers.py``).

``SpERTHead.forward`` is the training computation on sampled spans and pairs;
``predict`` the inference computation on all candidates, block by block,
pairing the kept spans of each pairing group (``pairing.py``).

At inference the indices (which spans, which pairs, which table rows) are
small numpy arrays worked out on the host; the device only gathers, takes
maxima and multiplies, so that a sentence costs a few dozen tensor operations.
"""

from typing import List, NamedTuple, Optional, Tuple

import numpy
import torch

from .. import tuning
from ..pairing import group_token_counts, pairs_within_groups, top_per_group
from .classifiers import EntityClassifier, RelationClassifier
from .range_max import RangeMax
from .tensors import take


class SpERTHead(torch.nn.Module):
    """Span pooling, entity and relation classifiers (PyTorch).

    hidden_width (int): The transformer's hidden width H.
    n_entity_outputs (int): Columns of the entity logits.
    n_relation_outputs (int): Columns of the relation logits.
    width_embedding_size, max_width_embeddings, dropout, pair_batch_size,
        max_pair_entities_per_token: see ``build_spert_model``.
    entity_logits_in_relation (bool): Append both spans' entity logits (all
        n_entity_outputs columns) to the relation input (SpERT.MT).
    identification_heads (bool): SpERT.MT's identification head per stage
        (see ``EntityClassifier``). All layers are initialized N(0, 0.02) with
        zero biases, as BERT's own layers.
    """

    def __init__(
        self,
        hidden_width: int,
        n_entity_outputs: int,
        n_relation_outputs: int,
        *,
        width_embedding_size: int,
        max_width_embeddings: int,
        dropout: float,
        pair_batch_size: int,
        max_pair_entities_per_token: float,
        entity_logits_in_relation: bool,
        identification_heads: bool,
    ):
        super().__init__()
        self.max_width = max_width_embeddings
        self.pair_batch_size = pair_batch_size
        self.max_pair_entities_per_token = max_pair_entities_per_token
        self.width_embedding = torch.nn.Embedding(max_width_embeddings + 1, width_embedding_size)
        self.entity_classifier = EntityClassifier(
            hidden_width, width_embedding_size, n_entity_outputs, identification_heads, dropout
        )
        self.relation_classifier = RelationClassifier(
            hidden_width,
            width_embedding_size,
            n_relation_outputs,
            n_entity_outputs if entity_logits_in_relation else 0,
            identification_heads,
            dropout,
        )
        # BERT's initialization, which SpERT and SpERT.MT (BertPreTrainedModel
        # subclasses) apply to their own layers: N(0, 0.02), zero biases.
        for module in self.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    @property
    def device(self) -> torch.device:
        """RETURNS (torch.device): The device of the module's parameters."""
        return self.width_embedding.weight.device

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        align_rows: torch.Tensor,
        align_tokens: torch.Tensor,
        token_cls_rows: torch.Tensor,
        n_tokens: int,
        max_range: int,
        span_starts: torch.Tensor,
        span_ends: torch.Tensor,
        pair_heads: torch.Tensor,
        pair_tails: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training: classify the sampled spans and pairs.

        hidden: (R, H) wordpiece vectors; align_rows/align_tokens: (A,) the
        token-to-wordpiece alignment; token_cls_rows: (N,) the [CLS] row per
        token; span_*: (S,) sampled spans in global token offsets; pair_*:
        (P,) sampled pairs, indices into the spans.
        RETURNS (Tuple[torch.Tensor, torch.Tensor]): entity logits (S, E) and
            relation logits (P, R).
        """
        if span_starts.shape[0] == 0:
            return self._no_logits(hidden)
        pool = RangeMax(hidden, align_rows, align_tokens, n_tokens, max_range)
        span_pool = pool(span_starts, span_ends)
        widths = self.width_embedding((span_ends - span_starts).clamp(max=self.max_width))
        cls = hidden.index_select(0, token_cls_rows.index_select(0, span_starts))
        entity_logits = self.entity_classifier(cls, span_pool, widths)
        relation_logits = self.relation_classifier(
            pool, span_starts, span_ends, span_pool, widths, entity_logits, pair_heads, pair_tails
        )
        return entity_logits, relation_logits

    def predict(
        self,
        hidden: torch.Tensor,
        *,
        align_rows: numpy.ndarray,
        align_tokens: numpy.ndarray,
        cls_rows: numpy.ndarray,
        token_windows: numpy.ndarray,
        n_tokens: int,
        max_range: int,
        span_starts: numpy.ndarray,
        span_ends: numpy.ndarray,
        span_groups: numpy.ndarray,
        blocks: List[Tuple[int, int, int, int]],
        objective,
        threshold: float,
        entity_thresholds: Optional[numpy.ndarray] = None,
        given_entities: bool = False,
        all_covered: bool = False,
    ) -> "HeadPredictions":
        """Inference: classify all candidate spans, then the pairs of the kept
        spans of each pairing group, one block of whole groups at a time (the
        range-max table and span features of a long doc never exist at once).

        hidden: (R, H) wordpiece vectors (on the head's device); the rest are
            numpy arrays on the host: align_rows/align_tokens: (A,) the
            token-to-wordpiece alignment (ordered by token); cls_rows:
            (n_windows,) the [CLS] row of each transformer window;
            token_windows: (N,) the window of each token;
            span_starts/span_ends/span_groups: (S,) the candidates in global
            token offsets and their pairing group.
        n_tokens, max_range: as in ``forward``.
        blocks: (first span, end span, first token, end token) per block
            (``Candidates.blocks``).
        objective, threshold: The decoding rule (``objectives.py``): the spans it
            keeps as entities, the best-scoring of each group, are paired.
        entity_thresholds (Optional[numpy.ndarray]): (E + 1,) a threshold per
            label id (-inf for 0, none): a span whose decoded label's score is
            below its label's is no entity; None: the decoding rule alone.
        given_entities (bool): Every candidate is a given entity: all are
            paired, with no bound on their number.
        all_covered (bool): Every token has a wordpiece (no range needs the
            check for tokens without one).
        RETURNS (HeadPredictions): Logits and decoded entities of all spans,
            the pairs classified and their logits.
        """
        if len(span_starts) == 0:
            ent, rel = self._no_logits(hidden)
            empty = numpy.zeros((0,), dtype="int64")
            return HeadPredictions(ent, empty, numpy.zeros((0,), dtype="float32"), empty, empty, rel)
        if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == n_tokens:
            bounds = [0, len(align_tokens)]  # one block of all tokens (a batch of sentences)
        else:
            bounds = numpy.searchsorted(align_tokens, [t for b in blocks for t in b[2:]]).tolist()
        if len(cls_rows) == 1:  # one window (a sentence): a view, no gather
            cls_vectors = hidden[int(cls_rows[0]) : int(cls_rows[0]) + 1]
        else:
            cls_vectors = take(hidden, cls_rows)
        outputs = []
        for i, (s0, s1, t0, t1) in enumerate(blocks):
            a0, a1 = bounds[2 * i], bounds[2 * i + 1]
            pool = RangeMax(
                hidden,
                align_rows[a0:a1],
                _shift(align_tokens[a0:a1], -t0),
                t1 - t0,
                min(max_range, t1 - t0),
                all_covered=all_covered,
            )
            out = self._predict_block(
                pool,
                cls_vectors,
                token_windows[t0:t1],
                _shift(span_starts[s0:s1], -t0),
                _shift(span_ends[s0:s1], -t0),
                span_groups[s0:s1],
                objective,
                threshold,
                entity_thresholds,
                given_entities,
            )
            if s0:
                out = out._replace(pair_heads=out.pair_heads + s0, pair_tails=out.pair_tails + s0)
            outputs.append(out)
        if len(outputs) == 1:
            return outputs[0]
        return HeadPredictions._make(
            torch.cat(parts) if isinstance(parts[0], torch.Tensor) else numpy.concatenate(parts)
            for parts in zip(*outputs)
        )

    def _predict_block(
        self,
        pool,
        cls_vectors,
        token_windows,
        starts,
        ends,
        groups,
        objective,
        threshold: float,
        entity_thresholds: Optional[numpy.ndarray],
        given_entities: bool,
    ) -> "HeadPredictions":
        """Entity logits of the spans of one block, and relation logits of the
        pairs of its kept spans (head and tail indices into the block's
        spans). Pairs are formed among at most max(10, ceil(ratio x group
        tokens)) kept spans per group, the highest-scoring ones."""
        chunk = min(self.pair_batch_size, tuning.SPAN_CHUNK)
        widths = numpy.minimum(ends - starts, self.max_width)
        width_table = self.width_embedding.weight
        entity_logits, span_pool = self.entity_classifier.predict(
            pool, cls_vectors, token_windows, width_table, starts, ends, widths, chunk
        )
        labels, scores = objective.decode_entities(_host(entity_logits), threshold)
        if entity_thresholds is not None:  # one gather and compare for all spans
            # in the scores' precision, as the global threshold (a Python float) is compared
            cut = entity_thresholds.astype(scores.dtype, copy=False)[labels]
            labels = numpy.where(scores >= cut, labels, 0)
        if given_entities:
            kept = numpy.arange(len(starts))
        else:
            kept = (labels > 0).nonzero()[0]
            if len(kept) > 10:
                limits = numpy.ceil(group_token_counts(starts, ends, groups) * self.max_pair_entities_per_token)
                kept = top_per_group(kept, scores[kept], groups, numpy.maximum(limits, 10).astype("int64"))
        heads, tails = pairs_within_groups(numpy.arange(len(kept)), groups[kept])  # positions in kept
        pair_heads, pair_tails = kept[heads], kept[tails]
        relations = self.relation_classifier
        if len(heads) == 0:
            relation_logits = entity_logits.new_zeros((0, relations.n_outputs))
        else:
            k_starts, k_ends = starts[kept], ends[kept]
            k_pool = pool(k_starts, k_ends, nonempty=True) if span_pool is None else take(span_pool, kept)
            relation_logits = relations.predict(
                pool,
                k_starts,
                k_ends,
                k_pool,
                width_table,
                widths[kept],
                take(entity_logits, kept) if relations.uses_entity_logits else None,
                heads,
                tails,
                chunk,
            )
        return HeadPredictions(entity_logits, labels, scores, pair_heads, pair_tails, relation_logits)

    def _no_logits(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return (
            hidden.new_zeros((0, self.entity_classifier.n_outputs)),
            hidden.new_zeros((0, self.relation_classifier.n_outputs)),
        )


# Parameter names before the classifiers became modules of their own, so that
# pipelines saved by spacy-spert 0.1.0 still load.
_LEGACY_KEYS = {
    "entity_classifier.weight": "entity_classifier.classes.weight",
    "entity_classifier.bias": "entity_classifier.classes.bias",
    "entity_identifier.weight": "entity_classifier.identifier.weight",
    "entity_identifier.bias": "entity_classifier.identifier.bias",
    "relation_classifier.weight": "relation_classifier.classes.weight",
    "relation_classifier.bias": "relation_classifier.classes.bias",
    "relation_identifier.weight": "relation_classifier.identifier.weight",
    "relation_identifier.bias": "relation_classifier.identifier.bias",
}


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    for old, new in _LEGACY_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class HeadPredictions(NamedTuple):
    """What ``SpERTHead.predict`` returns for a batch.

    entity_logits: (S, E) the logits of every candidate span (on the device).
    entity_labels, entity_scores: (S,) numpy, the objective's decoding of them
        (``decode_entities``: label id, 0 for none, and score).
    pair_heads, pair_tails: (P,) numpy, the pairs classified (indices into
        the candidates).
    relation_logits: (P, R) their logits (on the device).
    """

    entity_logits: torch.Tensor
    entity_labels: numpy.ndarray
    entity_scores: numpy.ndarray
    pair_heads: numpy.ndarray
    pair_tails: numpy.ndarray
    relation_logits: torch.Tensor


def _shift(offsets: numpy.ndarray, by: int) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The offsets moved by ``by`` (no copy for 0)."""
    return offsets + by if by else offsets


def _host(x: torch.Tensor) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The tensor's values on the host."""
    return x.cpu().numpy()
