"""Shared fixtures and helpers: a tiny random BERT built locally (no network),
small annotated sentences with entities and relations, and the pipelines,
heads and training loop that the tests build from them."""

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, SpanGroup
from spacy.training import Example

from spacy_spert.models.architectures import head_module
from spacy_spert.relations import make_relation, relation_key  # (and with it doc._.relations)

# Benchmark data (CoNLL04 etc. in SpERT's JSON) is not part of the repository.
# The tests that need it look in $SPERT_DATASETS, else in ../shared/datasets
# next to the repository, and skip (saying how to enable them) without it.
DATASETS_ENV = "SPERT_DATASETS"


def benchmark_datasets() -> Path:
    """The folder of the benchmark datasets, one subfolder each (``conll04/``
    with SpERT's ``conll04_train.json`` etc.).

    RETURNS (Path): ``$SPERT_DATASETS`` if set, else ``shared/datasets`` in the
        folder above the repository.
    """
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def benchmark_file(dataset: str, name: str) -> Path:
    """A file of a benchmark dataset, or skip the calling test if it is missing.

    dataset (str): The dataset's folder, e.g. "conll04".
    name (str): The file in it, e.g. "conll04_dev.json".
    RETURNS (Path): The file's path under :func:`benchmark_datasets`.
    """
    path = benchmark_datasets() / dataset / name
    if not path.exists():
        pytest.skip(
            f"no {path}: set {DATASETS_ENV} to a folder holding {dataset}/ (SpERT's JSON files) to run this test"
        )
    return path


# (words, entities [(start, end, label)], relations [(head_entity, tail_entity, label)])
TRAIN_DATA = [
    (
        "Mary Smith works for Acme Corp in Paris .".split(),
        [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc")],
        [(0, 1, "Work_For"), (1, 2, "OrgBased_In")],
    ),
    (
        "John Doe lives in London .".split(),
        [(0, 2, "Peop"), (4, 5, "Loc")],
        [(0, 1, "Live_In")],
    ),
    (
        "Globex , a firm in Berlin , hired Anna Lee .".split(),
        [(0, 1, "Org"), (5, 6, "Loc"), (8, 10, "Peop")],
        [(0, 1, "OrgBased_In"), (2, 0, "Work_For")],
    ),
    (
        "The weather was nice .".split(),
        [],
        [],
    ),
]

# The texts of TRAIN_DATA, one string each.
TRAIN_TEXTS = [" ".join(words) for words, _, _ in TRAIN_DATA]

EXTRA_WORDS = "the a an of and to is was he she it . , ; : ( ) new york times river".split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_doc(vocab, words: List[str], entities, relations, spans_key: str = "sc") -> Doc:
    """A doc with gold entities in doc.spans[spans_key] and relations in doc._.relations."""
    doc = Doc(vocab, words=words)
    spans = [doc[s:e] for s, e, _ in entities]
    for span, (_, _, label) in zip(spans, entities):
        span.label_ = label
    spans = [doc.char_span(sp.start_char, sp.end_char, label=lab) for sp, (_, _, lab) in zip(spans, entities)]
    doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=spans)
    doc._.relations = [make_relation(spans[h], spans[t], label) for h, t, label in relations]
    return doc


def save_tiny_bert(path: Path, vocab: List[str], max_positions: int = 512, **tokenizer_settings) -> Path:
    """Save a 2-layer, 32-wide random BERT (torch seed 0) and a lowercasing
    fast WordPiece tokenizer over ``vocab`` to ``path``.

    path (Path): The folder (created if missing).
    vocab (List[str]): The wordpieces, special tokens first.
    max_positions (int): The encoder's ``max_position_embeddings``.
    tokenizer_settings: More arguments of ``BertTokenizerFast`` (e.g.
        ``model_max_length``).
    RETURNS (Path): ``path``, for a transformer's ``name``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, **tokenizer_settings)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level vocab, saved locally."""
    words = set(EXTRA_WORDS)
    for sent, _, _ in TRAIN_DATA:
        words.update(w.lower() for w in sent)
    words.update("michael berlin london paris works lives hired firm corp".split())
    vocab = SPECIAL_TOKENS + sorted(words) + ["##s", "##ed", "##ing"]
    # model_max_length as real BERT tokenizers have it: longer windows are
    # truncated by spacy-transformers (the encoder has 512 positions).
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), vocab, model_max_length=512)


# The span getters a test names by key (``window`` of make_nlp).
WINDOWS = {
    "doc": {"@span_getters": "spacy-spert.doc_spans.v1"},
    "strided": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 16, "stride": 12},
    "sentence": {"@span_getters": "spacy-spert.sentence_windows.v1", "max_tokens": 128, "stride": 96},
    "wordpiece": {"@span_getters": "spacy-spert.sentence_windows.v2", "max_tokens": 128, "stride": 96},
}


def transformer_nlp(
    name: Union[Path, str, Dict], window: Union[str, Dict] = "doc", lang: str = "en", **model_settings
) -> Language:
    """A blank pipeline with one component, a spacy-transformers ``transformer``
    (TransformerModel.v3, fast tokenizer).

    name (Union[Path, str, Dict]): The encoder: a folder, or a config block
        that resolves to one (e.g. ``spacy-spert.installed_model_path.v1``).
    window (Union[str, Dict]): A key of WINDOWS, or a span getter's config block.
    lang (str): The language of the blank pipeline.
    model_settings: More settings of the model (``mixed_precision``,
        ``grad_scaler_config``, ``tokenizer_config`` to replace the default).
    RETURNS (Language): The pipeline, not initialized.
    """
    nlp = spacy.blank(lang)
    model = {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": name if isinstance(name, dict) else str(name),
        "get_spans": WINDOWS[window] if isinstance(window, str) else window,
        "tokenizer_config": {"use_fast": True},
        **model_settings,
    }
    nlp.add_pipe("transformer", config={"model": model})
    return nlp


def make_nlp(
    encoder: Union[Path, str, Dict],
    spert_config: Optional[Dict] = None,
    window: Union[str, Dict] = "doc",
    lang: str = "en",
    **model_settings,
) -> Language:
    """A blank pipeline with a transformer (:func:`transformer_nlp`: the tiny
    BERT or any encoder folder) and spert.

    encoder (Union[Path, str, Dict]): The ``name`` of transformer_nlp.
    spert_config (Optional[Dict]): The spert component's config (default: none).
    window, lang, model_settings: as :func:`transformer_nlp`'s.
    RETURNS (Language): The pipeline, not initialized.
    """
    nlp = transformer_nlp(encoder, window, lang, **model_settings)
    nlp.add_pipe("spert", config=spert_config or {})
    return nlp


def head_of(nlp: Language, name: str = "spert"):
    """The PyTorch head (``SpERTHead``) of a spert component."""
    return head_module(nlp.get_pipe(name).model)


def tiny_head(
    n_entity_outputs: int = 4,
    n_relation_outputs: int = 3,
    *,
    seed: Optional[int] = 0,
    weight_std: Optional[float] = None,
    mt: bool = False,
    **settings,
):
    """A ``SpERTHead`` over 16-wide hidden states with small settings.

    n_entity_outputs, n_relation_outputs (int): The logits' columns.
    seed (Optional[int]): torch's seed before the head is built (None: go on
        from torch's current random state).
    weight_std (Optional[float]): Draw every parameter from N(0, weight_std)
        (after building it), for logits far from zero; None: the head's own
        initialization.
    mt (bool): SpERT.MT's ``identification_heads`` and (unless given in
        ``settings``) its ``entity_logits_in_relation``.
    settings: More or other arguments of SpERTHead (``dropout`` 0.1 and
        ``pair_batch_size`` 4096 unless given).
    RETURNS (SpERTHead): The head, in training mode unless weight_std is given
        (then in eval mode).
    """
    import torch

    from spacy_spert.models.pytorch.head import SpERTHead

    arguments = dict(
        width_embedding_size=5,
        max_width_embeddings=100,
        dropout=0.1,
        pair_batch_size=4096,
        max_pair_entities_per_token=0.5,
        entity_logits_in_relation=mt,
        identification_heads=mt,
    )
    arguments.update(settings)
    if seed is not None:
        torch.manual_seed(seed)
    head = SpERTHead(16, n_entity_outputs, n_relation_outputs, **arguments)
    if weight_std is None:
        return head
    for param in head.parameters():
        torch.nn.init.normal_(param, std=weight_std)
    return head.eval()


def train_examples(nlp: Language) -> List[Example]:
    """The TRAIN_DATA examples: the text tokenized by ``nlp``, gold entities in
    the reference's doc.spans["sc"] and relations in its doc._.relations."""
    return [
        Example(nlp.make_doc(" ".join(words)), make_doc(nlp.vocab, words, ents, rels))
        for words, ents, rels in TRAIN_DATA
    ]


def gold_ents_docs(vocab) -> List[Doc]:
    """The TRAIN_DATA docs with their entities in doc.ents as well as in
    doc.spans["sc"] (for spert after ner, or ``given_entities.v1`` on "ents")."""
    docs = []
    for words, ents, rels in TRAIN_DATA:
        doc = make_doc(vocab, words, ents, rels)
        doc.ents = list(doc.spans["sc"])
        docs.append(doc)
    return docs


def gold_ents_examples(nlp: Language) -> List[Example]:
    """The examples of :func:`gold_ents_docs`: the text tokenized by ``nlp``."""
    return [Example(nlp.make_doc(doc.text), doc) for doc in gold_ents_docs(nlp.vocab)]


# spert's config for relations among the entities of doc.ents (kept as given).
GIVEN_ENTS = {"suggester": {"@misc": "spacy-spert.given_entities.v1", "source": "ents"}}


def gold_annotations(entities, relations) -> Tuple[List, List]:
    """One TRAIN_DATA annotation in the form of :func:`doc_annotations`.

    entities (list): (start, end, label) per entity.
    relations (list): (head entity, tail entity, label) per relation.
    RETURNS (Tuple[List, List]): The sorted entities and the sorted
        (head_start, head_end, tail_start, tail_end, label) of the relations.
    """
    rels = [(entities[h][0], entities[h][1], entities[t][0], entities[t][1], label) for h, t, label in relations]
    return sorted(entities), sorted(rels)


def doc_annotations(doc: Doc, spans_key: str = "sc") -> Tuple[List, List]:
    """What spert predicted in ``doc`` as plain, order-free values.

    RETURNS (Tuple[List, List]): The sorted (start, end, label) of
        doc.spans[spans_key] and the sorted relation_key of doc._.relations.
    """
    ents = sorted((s.start, s.end, s.label_) for s in doc.spans[spans_key])
    return ents, sorted(relation_key(r) for r in doc._.relations)


def long_texts() -> List[str]:
    """TRAIN_TEXTS and one long doc without sentence boundaries: all their
    words but "." and ",", 30 times (over 400 tokens: several blocks)."""
    words = [w for ws, _, _ in TRAIN_DATA for w in ws if w not in {".", ","}]
    return TRAIN_TEXTS + [" ".join(words * 30)]


def scored_predictions(nlp: Language, texts: List[str], batch_size: Optional[int] = None) -> List[Tuple]:
    """Entities and relations with their scores, per text, for comparing two
    ways of predicting (devices, precisions) decision by decision.

    RETURNS (List[Tuple]): Per doc: its entities (start, end, label) in span
        group order, their scores, the sorted relation keys and their scores.
    """
    out = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        group = doc.spans["sc"]
        rels = sorted(doc._.relations, key=relation_key)
        ents = [(s.start, s.end, s.label_) for s in group]
        out.append(
            (
                ents,
                [float(x) for x in group.attrs["scores"]],
                [relation_key(r) for r in rels],
                [r["score"] for r in rels],
            )
        )
    return out


def train_step(nlp: Language, examples: List[Example], optimizer, losses=None) -> Dict[str, float]:
    """One update as spaCy's training loop does it: all components update,
    then all step (so the transformer gets the listener's gradient in the
    same step), then the optimizer ends the step."""
    losses = nlp.update(examples, sgd=False, losses=losses if losses is not None else {})
    for _, proc in nlp.pipeline:
        if getattr(proc, "is_trainable", False) and proc.model not in (True, False, None):
            proc.finish_update(optimizer)
    optimizer.step_schedules()
    return losses


def overfit(
    nlp: Language,
    n_steps: int = 200,
    learn_rate: float = 1e-3,
    optimizer=None,
    examples: Optional[List[Example]] = None,
) -> List[Example]:
    """Initialize on ``examples`` and train on them for n_steps with
    :func:`train_step`.

    n_steps (int): The number of updates, each on all examples.
    learn_rate (float): The optimizer's learning rate.
    optimizer (Optional[Optimizer]): Default: the one nlp.initialize returns.
    examples (Optional[List[Example]]): Default: :func:`train_examples`.
    RETURNS (List[Example]): The examples.
    """
    examples = examples if examples is not None else train_examples(nlp)
    default = nlp.initialize(lambda: examples)
    optimizer = optimizer if optimizer is not None else default
    optimizer.learn_rate = learn_rate
    for _ in range(n_steps):
        train_step(nlp, examples, optimizer)
    return examples


def save_overfit_model(tiny_bert: Path, path: Path, window: str = "doc") -> Path:
    """A pipeline (tiny BERT + spert) overfitted on TRAIN_DATA for 60 steps
    at 3e-3 from seed 0, saved to ``path``."""
    from spacy.util import fix_random_seed

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window=window)
    overfit(nlp, n_steps=60, learn_rate=3e-3)
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def small_model_dir(tiny_bert, tmp_path_factory) -> Path:
    """save_overfit_model in sentence windows: trained once for the render,
    serve and browser tests."""
    return save_overfit_model(tiny_bert, tmp_path_factory.mktemp("small_model") / "model", window="sentence")


@pytest.fixture(scope="session")
def model_dir(tiny_bert, tmp_path_factory) -> Path:
    """save_overfit_model with the default windows: trained once for the
    predict, Ray and quantization tests."""
    return save_overfit_model(tiny_bert, tmp_path_factory.mktemp("overfit_model") / "model")
