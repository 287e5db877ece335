"""int8 dynamic quantization of the encoder (spacy_spert/transformer/quantize.py, and
``predict --quantize``)."""

import json

import pytest
import spacy
import torch
from conftest import TRAIN_DATA, TRAIN_TEXTS, head_of
from typer.testing import CliRunner

from spacy_spert import quantize
from spacy_spert.apps.predict import predict
from spacy_spert.cli import app


def found(doc):
    return (
        sorted((s.start, s.end, s.label_) for s in doc.spans["sc"]),
        sorted((r["head_start"], r["tail_start"], r["label"]) for r in doc._.relations),
    )


def linear_layers(module: torch.nn.Module):
    return [m for m in module.modules() if type(m) is torch.nn.Linear]


def test_quantize_replaces_the_encoders_linear_layers(model_dir):
    nlp = spacy.load(model_dir)
    encoder = nlp.get_pipe("transformer").model.transformer
    n_linear = len(linear_layers(encoder))
    head_linear = len(linear_layers(head_of(nlp)))
    assert n_linear > 0 and head_linear > 0
    assert quantize(nlp) is nlp
    quantized = [m for m in encoder.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == n_linear and not linear_layers(encoder)
    assert len(linear_layers(head_of(nlp))) == head_linear  # the head stays float32
    assert quantize(nlp) is nlp  # twice: nothing more to do


def test_quantized_pipeline_finds_what_the_float_one_finds(model_dir):
    """On the sentences it was overfit on, int8 weights change the scores a
    little and the entities and relations not at all."""
    nlp = spacy.load(model_dir)
    expected = [found(doc) for doc in nlp.pipe(TRAIN_TEXTS)]
    assert any(rels for _, rels in expected)
    float_scores = [doc.spans["sc"].attrs["scores"] for doc in nlp.pipe(TRAIN_TEXTS)]
    quantize(nlp)
    docs = list(nlp.pipe(TRAIN_TEXTS))
    assert [found(doc) for doc in docs] == expected
    for doc, scores in zip(docs, float_scores):
        assert abs(doc.spans["sc"].attrs["scores"] - scores).max(initial=0.0) < 0.1


def test_quantize_needs_a_transformer():
    with pytest.raises(ValueError, match="no spacy-transformers 'transformer' component"):
        quantize(spacy.blank("en"))


def test_predict_quantize(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TRAIN_TEXTS), encoding="utf8")
    predict(model_dir, source, tmp_path / "float.jsonl")
    predict(model_dir, source, tmp_path / "int8.jsonl", quantize=True)

    def records(name):
        lines = (tmp_path / name).read_text(encoding="utf8").splitlines()
        return [[(e["start"], e["end"], e["label"]) for e in json.loads(line)["entities"]] for line in lines]

    assert records("int8.jsonl") == records("float.jsonl")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(model_dir), str(source), str(tmp_path / "cli.jsonl"), "--quantize"])
    assert result.exit_code == 0, result.output
    assert records("cli.jsonl") == records("float.jsonl")
    result = runner.invoke(
        app, ["predict", str(model_dir), str(source), str(tmp_path / "gpu.jsonl"), "--quantize", "--gpu-id", "0"]
    )
    assert result.exit_code == 1 and "for CPU inference" in result.output
    assert not (tmp_path / "gpu.jsonl").exists()


def test_quantization_experiment_writes_speed_and_delta_f1(model_dir, tmp_path):
    from conftest import make_doc
    from spacy.tokens import DocBin

    from research.quantization import run_quantization

    nlp = spacy.load(model_dir)
    corpus = tmp_path / "test.spacy"
    DocBin(store_user_data=True, docs=[make_doc(nlp.vocab, *data) for data in TRAIN_DATA]).to_disk(corpus)
    results = run_quantization(model_dir, corpus, tmp_path / "q.json", batch_sizes=[2], repeats=1, threads=1)
    assert set(results["speed"]["2"]) == {"float32_docs_per_s", "int8_docs_per_s", "speedup"}
    assert results["metrics"]["float32"]["ner_micro"]["f"] == 100.0  # overfit on these sentences
    assert results["delta_f1"]["ner_micro"] == results["metrics"]["int8"]["ner_micro"]["f"] - 100.0
    assert "| ner_micro | 100.0 |" in (tmp_path / "q.md").read_text(encoding="utf8")
