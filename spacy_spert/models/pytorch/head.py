"""The PyTorch head of the SpERT model (``SpERTHead``): the width embedding,
the pooling (``range_max.py``) and the two classifiers (``classifiers.py``).

``SpERTHead.forward`` is the training computation on sampled spans and pairs;
``predict`` the inference computation on all candidates, block by block,
pairing the kept spans of each pairing group (``pairing.py``,
``inference.py``).

At inference the indices (which spans, which pairs, which table rows) are
small numpy arrays worked out on the host and moved to the device together;
the device only gathers, takes maxima and multiplies, so that a sentence
costs a few dozen tensor operations and, on a GPU, a batch waits for the
device twice.

With ``mixed_precision`` the linear maps run in torch's autocast (float16 on
CUDA, bfloat16 on the CPU); the pooling (maxima of float32 vectors) is exact
in float32, and the logits are cast to float32 before any softmax, sigmoid,
loss or threshold sees them.
"""

import contextlib
from typing import ContextManager, Tuple

import torch

from .classifiers import EntityClassifier, RelationClassifier
from .inference import predict_blocks
from .range_max import RangeMax


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
    mixed_precision (bool): Run the linear maps in autocast (float16 on
        CUDA, bfloat16 on the CPU), in training and at inference; the logits
        come out in float32.
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
        mixed_precision: bool = False,
    ):
        super().__init__()
        self.mixed_precision = mixed_precision
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

    def autocast(self, device: torch.device) -> ContextManager:
        """RETURNS (ContextManager): torch's autocast for the device with
        ``mixed_precision`` (float16 on CUDA, bfloat16 elsewhere), else a
        context that does nothing."""
        if not self.mixed_precision:
            return contextlib.nullcontext()
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype)

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
            return self.no_logits(hidden)
        with self.autocast(hidden.device):
            pool = RangeMax(hidden, align_rows, align_tokens, n_tokens, max_range)
            span_pool = pool(span_starts, span_ends)
            widths = self.width_embedding((span_ends - span_starts).clamp(max=self.max_width))
            cls = hidden.index_select(0, token_cls_rows.index_select(0, span_starts))
            entity_logits = self.entity_classifier(cls, span_pool, widths)
            relation_logits = self.relation_classifier(
                pool, span_starts, span_ends, span_pool, widths, entity_logits, pair_heads, pair_tails
            )
        # (no copy in float32; the losses take float32 logits)
        return entity_logits.float(), relation_logits.float()

    # Inference: classify all candidate spans, then the pairs of the kept
    # spans of each pairing group, one block of whole groups at a time (the
    # range-max table and span features of a long doc never exist at once).
    # ``inference.predict_blocks`` declares and documents the arguments; as a
    # method its first parameter is this head.
    predict = predict_blocks

    def no_logits(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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
