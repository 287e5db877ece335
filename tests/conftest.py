"""Shared fixtures: a tiny random BERT built locally (no network) and small
annotated sentences with entities and relations."""

import os
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, SpanGroup
from spacy.training import Example

from spacy_spert.models.architectures import head_module
from spacy_spert.relations import make_relation  # (and with it doc._.relations)

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

EXTRA_WORDS = "the a an of and to is was he she it . , ; : ( ) new york times river".split()


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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level vocab, saved locally."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    words = set(EXTRA_WORDS)
    for sent, _, _ in TRAIN_DATA:
        words.update(w.lower() for w in sent)
    words.update("michael berlin london paris works lives hired firm corp".split())
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + ["##s", "##ed", "##ing"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    # model_max_length as real BERT tokenizers have it: longer windows are
    # truncated by spacy-transformers (the encoder has 512 positions).
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(path))
    return path


WINDOWS = {
    "doc": {"@span_getters": "spacy-spert.doc_spans.v1"},
    "strided": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 16, "stride": 12},
    "sentence": {"@span_getters": "spacy-spert.sentence_windows.v1", "max_tokens": 128, "stride": 96},
}


def make_nlp(tiny_bert: Path, spert_config: Optional[Dict] = None, window: str = "doc") -> Language:
    """A blank English pipeline with a transformer (the tiny BERT) and spert;
    ``window`` names the transformer's span getter in WINDOWS."""
    nlp = spacy.blank("en")
    get_spans = WINDOWS[window]
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(tiny_bert),
                "get_spans": get_spans,
                "tokenizer_config": {"use_fast": True},
            }
        },
    )
    nlp.add_pipe("spert", config=spert_config or {})
    return nlp


def head_of(nlp: Language, name: str = "spert"):
    """The PyTorch head (``SpERTHead``) of a spert component."""
    return head_module(nlp.get_pipe(name).model)


def train_examples(nlp: Language) -> List[Example]:
    return [
        Example(nlp.make_doc(" ".join(words)), make_doc(nlp.vocab, words, ents, rels))
        for words, ents, rels in TRAIN_DATA
    ]


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


def overfit(nlp: Language, n_steps: int = 200, learn_rate: float = 1e-3, optimizer=None) -> List[Example]:
    """Initialize on the TRAIN_DATA examples and train on them for n_steps
    (with ``optimizer``, default: the one nlp.initialize returns)."""
    examples = train_examples(nlp)
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
