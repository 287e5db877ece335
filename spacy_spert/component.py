"""The ``spert`` pipeline component: joint entity and relation extraction.

Entities are written to ``doc.spans[spans_key]`` (overlaps allowed, scores in
``attrs["scores"]``), relations to ``doc._.relations`` (see ``relations.py``).
Gold annotation for training is read from the same places on the reference
docs of the Examples.
"""
import os
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
import torch
from spacy import util
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate, xp2torch

from .candidates import (
    SpanBatch,
    build_inference_batch,
    build_training_batch,
    doc_segments,
    pair_segments,
    sample_doc,
    whitespace_mask,
)
from .losses import compute_loss
from .model import SpERTOutput, ensure_head
from .relations import RELATIONS_ATTR, canonical_order, validate_relation

def _single_thread_torch_in_child() -> None:
    torch.set_num_threads(1)


# ``nlp.pipe(n_process=N)`` forks workers. A forked child that runs torch
# after the parent used torch's OpenMP thread pool can deadlock, so each
# forked child uses one torch thread (N workers then use N cores).
os.register_at_fork(after_in_child=_single_thread_torch_in_child)

DEFAULT_SPERT_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-spert.SpERT.v1"
width_embedding_size = 25
max_width_embeddings = 100
dropout = 0.1
pair_batch_size = 4096
max_pair_entities_per_token = 0.5

[model.tok2vec]
@layers = "spacy-spert.WordpieceListener.v1"
upstream = "*"
"""
)["model"]


@Language.factory(
    "spert",
    assigns=["doc.spans", "doc._.relations"],
    default_config={
        "model": DEFAULT_SPERT_MODEL,
        "spans_key": "sc",
        "max_span_width": 10,
        "neg_entity_count": 100,
        "neg_relation_count": 100,
        "threshold": 0.4,
        "candidate_scope": "sentence",
        "max_segment_length": 128,
        "symmetric_relations": [],
        "set_ents": False,
        "scorer": {"@scorers": "spacy-spert.spert_scorer.v1"},
    },
    default_score_weights={"spert_ent_f": 0.5, "spert_rel_f": 0.5, "spert_rel_bound_f": 0.0},
)
def make_spert(
    nlp: Language,
    name: str,
    model: Model,
    spans_key: str,
    max_span_width: int,
    neg_entity_count: int,
    neg_relation_count: int,
    threshold: float,
    candidate_scope: str,
    max_segment_length: int,
    symmetric_relations: List[str],
    set_ents: bool,
    scorer: Optional[Callable],
) -> "SpERT":
    """Create a ``spert`` component.

    model (Model): A SpERT architecture, e.g. ``spacy-spert.SpERT.v1``.
    spans_key (str): The ``doc.spans`` key that holds the entities.
    max_span_width (int): The widest candidate span, in tokens (10).
    neg_entity_count (int): Negative spans sampled per doc in training (100).
    neg_relation_count (int): Negative entity pairs sampled per doc (100).
    threshold (float): Relations with a score >= threshold are kept (0.4).
    candidate_scope (str): "sentence" (default) or "doc": entity candidates
        and relation pairs stay within a sentence (the whole doc when it has
        no sentence boundaries) or within the doc.
    max_segment_length (int): Relation pairs are formed only among spans
        that start in the same piece of at most this many tokens of a
        sentence (or doc), so text without sentence boundaries costs time
        linear in its length (128; 0: no limit). Entities are not cut.
    symmetric_relations (List[str]): Relation types whose direction is
        meaningless; they are output with the earlier span as head.
    set_ents (bool): Also write the best non-overlapping entities to doc.ents.
    scorer (Optional[Callable]): The scoring function.
    """
    return SpERT(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        max_span_width=max_span_width,
        neg_entity_count=neg_entity_count,
        neg_relation_count=neg_relation_count,
        threshold=threshold,
        candidate_scope=candidate_scope,
        max_segment_length=max_segment_length,
        symmetric_relations=symmetric_relations,
        set_ents=set_ents,
        scorer=scorer,
    )


class SpERT(TrainablePipe):
    """Joint entity and relation extraction over transformer wordpieces."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "spert",
        *,
        spans_key: str = "sc",
        max_span_width: int = 10,
        neg_entity_count: int = 100,
        neg_relation_count: int = 100,
        threshold: float = 0.4,
        candidate_scope: str = "sentence",
        max_segment_length: int = 128,
        symmetric_relations: Sequence[str] = (),
        set_ents: bool = False,
        scorer: Optional[Callable] = None,
    ) -> None:
        if candidate_scope not in ("doc", "sentence"):
            raise ValueError(f"candidate_scope must be 'doc' or 'sentence', not '{candidate_scope}'")
        if max_span_width < 1:
            raise ValueError(f"max_span_width must be at least 1, not {max_span_width}")
        if max_segment_length < 0:
            raise ValueError(f"max_segment_length must be >= 0 (0: no limit), not {max_segment_length}")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": {"entities": [], "relations": []},
            "hidden_width": None,
            "spans_key": spans_key,
            "max_span_width": max_span_width,
            "neg_entity_count": neg_entity_count,
            "neg_relation_count": neg_relation_count,
            "threshold": threshold,
            "candidate_scope": candidate_scope,
            "max_segment_length": max_segment_length,
            "symmetric_relations": list(symmetric_relations),
            "set_ents": set_ents,
        }
        self._rng = numpy.random.default_rng(0)

    # Labels ---------------------------------------------------------------

    @property
    def entity_labels(self) -> Tuple[str, ...]:
        """RETURNS (Tuple[str]): The entity types."""
        return tuple(self.cfg["labels"]["entities"])

    @property
    def relation_labels(self) -> Tuple[str, ...]:
        """RETURNS (Tuple[str]): The relation types."""
        return tuple(self.cfg["labels"]["relations"])

    @property
    def labels(self) -> Tuple[str, ...]:
        """RETURNS (Tuple[str]): The entity types, then the relation types."""
        return self.entity_labels + self.relation_labels

    @property
    def label_data(self) -> Dict[str, List[str]]:
        """RETURNS (Dict[str, List[str]]): {"entities": [...], "relations": [...]},
        as written by ``spacy init labels`` and read by ``initialize``."""
        return {"entities": list(self.entity_labels), "relations": list(self.relation_labels)}

    def add_label(self, label: str) -> int:
        raise NotImplementedError(
            "spert has two label sets: use add_entity_label() or add_relation_label()."
        )

    def add_entity_label(self, label: str) -> int:
        """Add an entity type before initialization. RETURNS (int): 1 if added."""
        return self._add_label("entities", label)

    def add_relation_label(self, label: str) -> int:
        """Add a relation type before initialization. RETURNS (int): 1 if added."""
        return self._add_label("relations", label)

    def _add_label(self, kind: str, label: str) -> int:
        if not isinstance(label, str):
            raise ValueError(Errors.E187)
        if label in self.cfg["labels"][kind]:
            return 0
        self._require_no_head(f"add the {kind[:-1]} label '{label}'")
        self.cfg["labels"][kind].append(label)
        self.vocab.strings.add(label)
        return 1

    def _require_no_head(self, what: str) -> None:
        if len(self.model.layers) > 1:
            raise ValueError(f"Cannot {what}: the spert component '{self.name}' is already initialized.")

    # Initialization -----------------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Dict[str, List[str]]] = None,
    ) -> None:
        """Initialize the component: set the label sets (from ``labels`` or
        from the gold annotation of the examples), check the gold data and
        build the model.

        get_examples (Callable[[], Iterable[Example]]): Returns training examples.
        nlp (Language): The current nlp object.
        labels (Optional[Dict[str, List[str]]]): {"entities": [...],
            "relations": [...]}, e.g. from ``spacy init labels``.
        """
        validate_get_examples(get_examples, "SpERT.initialize")
        if labels is not None:
            if not isinstance(labels, dict) or not set(labels) <= {"entities", "relations"}:
                raise ValueError(
                    "spert labels must be a dict {'entities': [...], 'relations': [...]}, "
                    f"got: {labels!r}"
                )
            entities, relations = list(labels.get("entities", [])), list(labels.get("relations", []))
        else:
            entities, relations = set(), set()
            key = self.cfg["spans_key"]
            for eg in get_examples():
                entities.update(span.label_ for span in eg.reference.spans.get(key, []))
                relations.update(rel["label"] for rel in eg.reference._.get(RELATIONS_ATTR))
            entities, relations = sorted(entities), sorted(relations)
        for label in entities:
            self.add_entity_label(label)
        for label in relations:
            self.add_relation_label(label)
        if not self.entity_labels:
            raise ValueError(
                f"The spert component '{self.name}' has no entity labels: the training data "
                f"has no spans in doc.spans['{self.cfg['spans_key']}'] and no labels were given."
            )
        for i, eg in enumerate(islice(get_examples(), 1000)):
            self._gold_annotation(eg, where=f"training example {i}")
        listener = self.model.layers[0]
        if self.cfg["hidden_width"] is None:
            if not listener.has_dim("nO") or listener.get_dim("nO") is None:
                raise ValueError(
                    f"The spert component '{self.name}' could not find the width of its "
                    "transformer: add a 'transformer' component before it in the pipeline."
                )
            self.cfg["hidden_width"] = listener.get_dim("nO")
        self._rng = numpy.random.default_rng(numpy.random.randint(0, 2**31 - 1))
        self._build_head()

    def _build_head(self) -> None:
        self.model.set_dim("nI", self.cfg["hidden_width"])
        self.model.set_dim("nE", len(self.entity_labels))
        self.model.set_dim("nR", len(self.relation_labels))
        ensure_head(self.model)

    # Gold data ------------------------------------------------------------

    def _gold_annotation(self, eg: Example, where: str = "example"):
        """Gold entities and relations of an example in the predicted doc's
        tokens, as label ids: ([(start, end, label_id)], [(head, tail, rel_id)]).
        Raises a ValueError for unknown labels and relations that point at a
        span that is not an entity."""
        key = self.cfg["spans_key"]
        ref, pred = eg.reference, eg.predicted
        ent_ids = {label: i + 1 for i, label in enumerate(self.entity_labels)}
        rel_ids = {label: i for i, label in enumerate(self.relation_labels)}
        gold_spans = list(ref.spans.get(key, []))
        same_tokens = len(ref) == len(pred) and all(a.text == b.text for a, b in zip(ref, pred))
        entities: List[Tuple[int, int, int]] = []
        # (start, end) in the reference -> [(label, entity index or None if it
        # does not align to the predicted tokens)]
        by_bounds: Dict[Tuple[int, int], List[Tuple[str, Optional[int]]]] = {}
        for span in gold_spans:
            if span.label_ not in ent_ids:
                raise ValueError(
                    f"{where}: entity '{span.text}' has the label '{span.label_}', which the "
                    f"spert component '{self.name}' does not know (labels: {list(self.entity_labels)})"
                )
            aligned = [span] if same_tokens else eg.get_aligned_spans_y2x([span], allow_overlap=True)
            index = None
            if aligned:
                index = len(entities)
                entities.append((aligned[0].start, aligned[0].end, ent_ids[span.label_]))
            by_bounds.setdefault((span.start, span.end), []).append((span.label_, index))
        relations: List[Tuple[int, int, int]] = []
        for j, rel in enumerate(ref._.get(RELATIONS_ATTR)):
            validate_relation(ref, rel, where=f"{where}, relation {j}")
            if rel["label"] not in rel_ids:
                raise ValueError(
                    f"{where}, relation {j}: the label '{rel['label']}' is not known to the spert "
                    f"component '{self.name}' (labels: {list(self.relation_labels)})"
                )
            ends = []
            for side in ("head", "tail"):
                bounds = (rel[f"{side}_start"], rel[f"{side}_end"])
                label = rel.get(f"{side}_label")
                matches = [i for lab, i in by_bounds.get(bounds, []) if label is None or lab == label]
                if not matches:
                    raise ValueError(
                        f"{where}, relation {j}: the {side} {bounds[0]}:{bounds[1]} "
                        f"('{ref[bounds[0]:bounds[1]].text}'{'' if label is None else ', ' + label}) "
                        f"is not an entity in doc.spans['{key}']"
                    )
                ends.append(matches[0])
            if None not in ends:  # both arguments align to the predicted tokens
                relations.append((ends[0], ends[1], rel_ids[rel["label"]]))
        return entities, relations

    def _sample(self, eg: Example):
        entities, relations = self._gold_annotation(eg)
        doc = eg.predicted
        segments = doc_segments(doc, self.cfg["candidate_scope"])
        return sample_doc(
            len(doc),
            entities,
            relations,
            n_relation_labels=len(self.relation_labels),
            max_width=self.cfg["max_span_width"],
            neg_entity_count=self.cfg["neg_entity_count"],
            neg_relation_count=self.cfg["neg_relation_count"],
            rng=self._rng,
            symmetric={i for i, l in enumerate(self.relation_labels) if l in self._symmetric},
            segment_ids=segments,
            skip=whitespace_mask(doc),
            pair_segment_ids=pair_segments(len(doc), segments, self.cfg["max_segment_length"]),
        )

    @property
    def _symmetric(self) -> set:
        return set(self.cfg["symmetric_relations"])

    # Training -------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: sample candidates, run the model
        (and through it the transformer), backpropagate the loss.

        RETURNS (Dict[str, float]): The updated losses.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "SpERT.update")
        self._require_head("update")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        batch = build_training_batch(docs, [self._sample(eg) for eg in examples])
        set_dropout_rate(self.model, drop)
        output, backprop = self.model.begin_update((docs, batch))
        loss, d_output = self.get_loss(examples, (batch, output))
        backprop(d_output)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Tuple[SpanBatch, SpERTOutput]):
        """The loss of a training batch and its gradient.

        scores (Tuple[SpanBatch, SpERTOutput]): The batch with targets and the
            model output for it.
        RETURNS (Tuple[float, SpERTOutput]): The loss and the gradient of the logits.
        """
        batch, output = scores
        objective = self.model.attrs["objective"]
        loss, d_ent, d_rel = compute_loss(objective, output.entity_logits, output.relation_logits, batch)
        d_output = SpERTOutput(d_ent, d_rel, output.pair_heads, output.pair_tails)
        return loss, d_output

    # Prediction -------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> Tuple[SpanBatch, SpERTOutput]:
        """Score all candidate spans and the pairs of kept spans.

        RETURNS (Tuple[SpanBatch, SpERTOutput]): The candidates and the logits.
        """
        docs = list(docs)
        self._require_head("predict")
        batch = build_inference_batch(
            docs,
            self.cfg["max_span_width"],
            self.cfg["candidate_scope"],
            self.cfg["threshold"],
            self.cfg["max_segment_length"],
        )
        return batch, self.model.predict((docs, batch))

    def set_annotations(self, docs: Iterable[Doc], scores: Tuple[SpanBatch, SpERTOutput]) -> None:
        """Write entities to ``doc.spans[spans_key]`` and relations to
        ``doc._.relations``."""
        docs = list(docs)
        batch, output = scores
        objective = self.model.attrs["objective"]
        threshold = self.cfg["threshold"]
        key = self.cfg["spans_key"]
        ent_labels, ent_scores = objective.decode_entities(xp2torch(output.entity_logits), threshold)
        ent_labels = ent_labels.cpu().numpy()
        ent_scores = ent_scores.cpu().numpy().astype("float32")
        rel_scores = objective.decode_relations(xp2torch(output.relation_logits), threshold).cpu().numpy()
        pair_heads = numpy.asarray(output.pair_heads)
        pair_tails = numpy.asarray(output.pair_tails)
        span_docs = batch.span_docs()
        labels = self.entity_labels
        rel_labels = self.relation_labels
        kept = numpy.flatnonzero(ent_labels > 0)
        hit_pairs, hit_types = numpy.nonzero(rel_scores >= threshold)
        rel_docs = span_docs[pair_heads[hit_pairs]] if len(hit_pairs) else hit_pairs
        for d, doc in enumerate(docs):
            offset = int(batch.doc_offsets[d])
            mine = kept[span_docs[kept] == d]
            spans = [
                Span(doc, int(batch.starts[i]) - offset, int(batch.ends[i]) - offset, label=labels[ent_labels[i] - 1])
                for i in mine
            ]
            doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs={"scores": ent_scores[mine]})
            relations = []
            for p, r in zip(hit_pairs[rel_docs == d], hit_types[rel_docs == d]):
                h, t = pair_heads[p], pair_tails[p]
                relations.append(
                    {
                        "head_start": int(batch.starts[h]) - offset,
                        "head_end": int(batch.ends[h]) - offset,
                        "tail_start": int(batch.starts[t]) - offset,
                        "tail_end": int(batch.ends[t]) - offset,
                        "label": rel_labels[r],
                        "score": float(rel_scores[p, r]),
                        "head_label": labels[ent_labels[h] - 1],
                        "tail_label": labels[ent_labels[t] - 1],
                    }
                )
            if self._symmetric:
                relations = canonical_order(relations, self.cfg["symmetric_relations"])
            doc._.set(RELATIONS_ATTR, relations)
            if self.cfg["set_ents"]:
                doc.ents = _best_non_overlapping(spans, ent_scores[mine])

    def _require_head(self, what: str) -> None:
        if len(self.model.layers) < 2:
            raise ValueError(
                f"Cannot {what}: the spert component '{self.name}' is not initialized. "
                "Call nlp.initialize() or load a trained pipeline."
            )

    # Serialization ----------------------------------------------------------

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: self.model.to_bytes(),
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SpERT":
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_model(b),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: self.model.to_disk(p),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "SpERT":
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_model(Path(p).read_bytes()),
        }
        util.from_disk(path, deserialize, exclude)
        return self

    def _load_model(self, data: bytes) -> None:
        if self.cfg.get("hidden_width") is None:
            raise ValueError(f"Cannot load the spert component '{self.name}': its cfg has no hidden_width.")
        self._build_head()
        self.model.from_bytes(data)


def _best_non_overlapping(spans: List[Span], scores: numpy.ndarray) -> List[Span]:
    """The highest-scoring spans that do not overlap, in document order."""
    taken = set()
    chosen = []
    for i in numpy.argsort(-scores, kind="stable"):
        span = spans[i]
        tokens = range(span.start, span.end)
        if not taken.intersection(tokens):
            taken.update(tokens)
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)
