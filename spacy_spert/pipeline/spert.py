"""The ``spert`` pipeline component: joint entity and relation extraction.

A thin, cfg-driven shell, as spaCy's ``spancat``: the suggester
(``models/suggesters.py``, any ``Suggester``) gives the candidate spans, the
model (``models/architectures.py``) scores and decodes them with the
``threshold`` of the cfg (and the per-label ``entity_thresholds`` and
``relation_thresholds``), and ``annotations.py`` writes entities to
``doc.spans[spans_key]`` (overlaps allowed, scores in ``attrs["scores"]``) and
relations to ``doc._.relations`` (see ``relations.py``). In training, the gold
annotation of the reference docs is read by ``gold.py``, sampled by
``models/sampling.sample_doc`` and scored by the objective
(``models/objectives.py``).
"""

import math
import os
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy
import srsly
import torch
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, set_dropout_rate

from ..models.architectures import SpERTLogits, SpERTPredictions, Thresholds, build_head, has_head
from ..models.listeners import listener_width
from ..models.objectives import compute_loss
from ..models.sampling import DocSample, TrainingBatch, sample_doc
from ..models.suggesters import Candidates, Suggester
from ..relations import RELATIONS_ATTR, install_extensions
from ..transformer.alignment import warn_alignment
from ..transformer.span_getters import bind_wordpiece_windows
from .annotations import write_predictions
from .gold import Gold, read_gold

_FORK_HANDLER_REGISTERED = False


def _single_thread_torch_in_child() -> None:
    torch.set_num_threads(1)


def _register_fork_handler() -> None:
    """``nlp.pipe(n_process=N)`` forks workers. A forked child that runs torch
    after the parent used torch's OpenMP thread pool can deadlock, so each
    forked child uses one torch thread (N workers then use N cores). Registered
    when the first ``spert`` component is created, never at import: spaCy
    imports this package whenever it builds any pipeline."""
    global _FORK_HANDLER_REGISTERED
    if not _FORK_HANDLER_REGISTERED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_thread_torch_in_child)
        _FORK_HANDLER_REGISTERED = True


class SpERT(TrainablePipe):
    """Joint entity and relation extraction over transformer wordpieces."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        suggester: Suggester,
        name: str = "spert",
        *,
        spans_key: str = "sc",
        neg_entity_count: int = 100,
        neg_relation_count: int = 100,
        threshold: float = 0.4,
        entity_thresholds: Optional[Dict[str, float]] = None,
        relation_thresholds: Optional[Dict[str, float]] = None,
        symmetric_relations: Sequence[str] = (),
        set_ents: bool = False,
        scorer: Optional[Callable] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.suggester = suggester
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": {"entities": [], "relations": []},
            "hidden_width": None,
            "spans_key": spans_key,
            "neg_entity_count": neg_entity_count,
            "neg_relation_count": neg_relation_count,
            "threshold": threshold,
            "entity_thresholds": dict(entity_thresholds or {}),
            "relation_thresholds": dict(relation_thresholds or {}),
            "symmetric_relations": list(symmetric_relations),
            "set_ents": set_ents,
        }
        self._rng = numpy.random.default_rng(0)
        install_extensions()
        _register_fork_handler()

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
        raise NotImplementedError("spert has two label sets: use add_entity_label() or add_relation_label().")

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
        if has_head(self.model):
            raise ValueError(
                f"Cannot add the {kind[:-1]} label '{label}': the spert component '{self.name}' is already initialized."
            )
        self.cfg["labels"][kind].append(label)
        self.vocab.strings.add(label)
        return 1

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
        if nlp is not None:
            bind_wordpiece_windows(nlp)
        if labels is not None:
            if not isinstance(labels, dict) or not set(labels) <= {"entities", "relations"}:
                raise ValueError(
                    f"spert labels must be a dict {{'entities': [...], 'relations': [...]}}, got: {labels!r}"
                )
            entities, relations = list(labels.get("entities", [])), list(labels.get("relations", []))
        else:
            entity_set: Set[str] = set()
            relation_set: Set[str] = set()
            for eg in get_examples():
                entity_set.update(span.label_ for span in self._gold_entities(eg.reference))
                relation_set.update(rel["label"] for rel in eg.reference._.get(RELATIONS_ATTR))
            entities, relations = sorted(entity_set), sorted(relation_set)
        for label in entities:
            self.add_entity_label(label)
        for label in relations:
            self.add_relation_label(label)
        if not self.entity_labels:
            raise ValueError(
                f"The spert component '{self.name}' has no entity labels: the training data "
                f"has no entities in {self._gold_source()} and no labels were given."
            )
        for i, eg in enumerate(islice(get_examples(), 1000)):
            self._gold(eg, where=f"training example {i}")
        if self.cfg["hidden_width"] is None:
            # (also checks that the listener fits the pipeline's transformer)
            self.cfg["hidden_width"] = listener_width(self.model.get_ref("tok2vec"), nlp, self.name)
        if nlp is not None:
            # warns about an alignment that gives tokens their neighbours' wordpieces
            sample = [eg.predicted for eg in islice(get_examples(), 16)]
            warn_alignment(nlp, self.name, sample, context=self.model.get_ref("tok2vec").attrs.get("context", "cls"))
        self._rng = numpy.random.default_rng(numpy.random.randint(0, 2**31 - 1))
        self._build_head()
        self._check_thresholds()

    def _build_head(self) -> None:
        """Set the model's dims from cfg and build its head (before weights load)."""
        self.model.set_dim("nI", self.cfg["hidden_width"])
        self.model.set_dim("nE", len(self.entity_labels))
        self.model.set_dim("nR", len(self.relation_labels))
        build_head(self.model)

    # Thresholds -------------------------------------------------------------

    @property
    def thresholds(self) -> Dict[str, Dict[str, float]]:
        """The threshold that decides each label's predictions: the label's
        own (``entity_thresholds``, ``relation_thresholds``) or the fallback,
        for relations the global ``threshold``, for entities the objective's
        (SpERT: 0.0, the argmax decides alone; SpERT.MT: ``threshold``).

        RETURNS (Dict[str, Dict[str, float]]): {"entities": {label: value},
            "relations": {label: value}} over all labels.
        """
        threshold = float(self.cfg["threshold"])
        default = self.model.attrs["objective"].default_entity_threshold(threshold)
        own_ents, own_rels = self.cfg.get("entity_thresholds") or {}, self.cfg.get("relation_thresholds") or {}
        return {
            "entities": {label: float(own_ents.get(label, default)) for label in self.entity_labels},
            "relations": {label: float(own_rels.get(label, threshold)) for label in self.relation_labels},
        }

    def set_thresholds(
        self,
        entity_thresholds: Optional[Dict[str, float]] = None,
        relation_thresholds: Optional[Dict[str, float]] = None,
    ) -> None:
        """Replace the per-label thresholds (saved with the pipeline, in the
        cfg). Labels left out fall back to the global threshold (see
        ``thresholds``); the scores are not changed, only what is kept.

        entity_thresholds (Optional[Dict[str, float]]): Entity label -> threshold.
        relation_thresholds (Optional[Dict[str, float]]): Relation label -> threshold.
        RAISES: ValueError for an unknown label or a value that is not a finite number.
        """
        old = self.cfg["entity_thresholds"], self.cfg["relation_thresholds"]
        self.cfg["entity_thresholds"] = {str(k): float(v) for k, v in (entity_thresholds or {}).items()}
        self.cfg["relation_thresholds"] = {str(k): float(v) for k, v in (relation_thresholds or {}).items()}
        try:
            self._check_thresholds()
        except ValueError:
            self.cfg["entity_thresholds"], self.cfg["relation_thresholds"] = old
            raise

    def _check_thresholds(self) -> None:
        """Refuse per-label thresholds of unknown labels, values that are not
        finite numbers, and entity thresholds where the entities are given
        (they would have no effect). Labels are known once the component is
        initialized or loaded, when this runs."""
        settings = (
            ("entity_thresholds", "entity", self.entity_labels),
            ("relation_thresholds", "relation", self.relation_labels),
        )
        for key, kind, known in settings:
            values = self.cfg.get(key) or {}
            for label, value in values.items():
                if label not in known:
                    raise ValueError(
                        f"The spert component '{self.name}' has a threshold in {key} for the {kind} label "
                        f"'{label}', which is not one of its {kind} labels: {', '.join(known) or '(none)'}"
                    )
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(
                        f"The spert component '{self.name}' has {key}['{label}'] = {value!r}: "
                        "a threshold must be a finite number"
                    )
        if self.cfg.get("entity_thresholds") and self.suggester.gives_entities:
            raise ValueError(
                f"The spert component '{self.name}' has entity_thresholds, but its suggester gives the "
                f"entities ({self.suggester.where}), which thresholds do not remove: leave entity_thresholds empty"
            )

    def _model_thresholds(self) -> Union[float, Thresholds]:
        """The model's thresholds input: the global threshold as a float
        without per-label thresholds (the path of the default settings), else
        a ``Thresholds`` with one value per label (built once per batch)."""
        if not self.cfg.get("entity_thresholds") and not self.cfg.get("relation_thresholds"):
            return self.cfg["threshold"]
        thresholds = self.thresholds
        entities = numpy.asarray(list(thresholds["entities"].values()), dtype="float64")
        relations = numpy.asarray(list(thresholds["relations"].values()), dtype="float64")
        return Thresholds(
            float(self.cfg["threshold"]),
            entities=entities if self.cfg.get("entity_thresholds") else None,
            relations=relations if self.cfg.get("relation_thresholds") else None,
        )

    # Training -------------------------------------------------------------

    def _gold_entities(self, doc: Doc) -> Sequence[Span]:
        """The gold entities of a reference doc: doc.spans[spans_key], or the
        given entities (doc.ents or a span group) when the suggester gives them."""
        if self.suggester.gives_entities:
            return self.suggester.entities(doc)
        return doc.spans.get(self.cfg["spans_key"], [])

    def _gold_source(self) -> str:
        if self.suggester.gives_entities:
            return self.suggester.where
        return f"doc.spans['{self.cfg['spans_key']}']"

    def _gold(self, eg: Example, where: str = "example") -> Gold:
        return read_gold(
            eg,
            spans_key=self.cfg["spans_key"],
            entity_labels=self.entity_labels,
            relation_labels=self.relation_labels,
            where=where,
            component=self.name,
            entities=self._gold_entities(eg.reference),
            source=self._gold_source(),
        )

    def _sample(self, eg: Example) -> DocSample:
        """SpERT's training sample of an example: its gold entities and
        relations with negatives drawn from the suggester's candidates (with
        given entities: no negative entities)."""
        gold = self._gold(eg)
        symmetric = set(self.cfg["symmetric_relations"])
        return sample_doc(
            self.suggester.doc_candidates(eg.predicted),
            gold.entities,
            gold.relations,
            n_relation_labels=len(self.relation_labels),
            neg_entity_count=0 if self.suggester.gives_entities else self.cfg["neg_entity_count"],
            neg_relation_count=self.cfg["neg_relation_count"],
            rng=self._rng,
            symmetric={i for i, label in enumerate(self.relation_labels) if label in symmetric},
        )

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: sample spans and pairs, run the model
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
        batch = TrainingBatch.from_samples(docs, [self._sample(eg) for eg in examples])
        set_dropout_rate(self.model, drop)
        logits, backprop = self.model.begin_update((docs, batch))
        loss, d_logits = self.get_loss(examples, (batch, logits))
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Tuple[TrainingBatch, SpERTLogits]):
        """The loss of a training batch and its gradient.

        scores (Tuple[TrainingBatch, SpERTLogits]): The batch with targets and
            the model's logits for it.
        RETURNS (Tuple[float, SpERTLogits]): The loss and the gradient of the logits.
        """
        batch, logits = scores
        objective = self.model.attrs["objective"]
        loss, d_ent, d_rel = compute_loss(
            objective, logits.entity_logits, logits.relation_logits, batch, entities=not self.suggester.gives_entities
        )
        return loss, SpERTLogits(d_ent, d_rel)

    # Prediction -------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> Tuple[Candidates, SpERTPredictions]:
        """Classify the candidate spans of the docs and the pairs of those
        that are entities.

        RETURNS (Tuple[Candidates, SpERTPredictions]): The candidates and the
            entities and relations found among them.
        """
        docs = list(docs)
        self._require_head("predict")
        candidates = self.suggester(docs)
        return candidates, self.model.predict((docs, candidates, self._model_thresholds()))

    def set_annotations(self, docs: Iterable[Doc], scores: Tuple[Candidates, SpERTPredictions]) -> None:
        """Write entities to ``doc.spans[spans_key]`` and relations to
        ``doc._.relations``."""
        candidates, predictions = scores
        docs = list(docs)
        given = [self.suggester.entities(doc) for doc in docs] if candidates.given_entities else None
        write_predictions(
            docs,
            candidates,
            predictions,
            entity_labels=self.entity_labels,
            relation_labels=self.relation_labels,
            spans_key=self.cfg["spans_key"],
            symmetric_relations=self.cfg["symmetric_relations"],
            set_ents=self.cfg["set_ents"],
            given_entities=given,
        )

    def _require_head(self, what: str) -> None:
        if not has_head(self.model):
            raise ValueError(
                f"Cannot {what}: the spert component '{self.name}' is not initialized. "
                "Call nlp.initialize() or load a trained pipeline."
            )

    # Serialization ----------------------------------------------------------
    # to_bytes/to_disk are TrainablePipe's. Loading reads cfg first, then
    # builds the head from it (its sizes are in cfg) before the weights load.

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SpERT":
        super().from_bytes(bytes_data, exclude=[*exclude, "model"])
        if "model" not in exclude:
            self._load_model(srsly.msgpack_loads(bytes_data)["model"])
        self._check_thresholds()
        return self

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "SpERT":
        super().from_disk(path, exclude=[*exclude, "model"])
        if "model" not in exclude:
            self._load_model((Path(path) / "model").read_bytes())
        self._check_thresholds()
        return self

    def _load_model(self, data: bytes) -> None:
        if self.cfg.get("hidden_width") is None:
            raise ValueError(f"Cannot load the spert component '{self.name}': its cfg has no hidden_width.")
        self._build_head()
        self.model.from_bytes(data)
