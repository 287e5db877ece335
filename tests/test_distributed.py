"""`predict --engine ray` (spacy_spert/distributed.py) on a local Ray cluster
of 2 CPUs that the tests start and shut down: the output equals
single-process `predict` (JSONL and Parquet, with 1 and 2 actors), an actor
killed in mid-run still gives every doc exactly once, invalid lines give
`predict`'s errors, and the CLI. Needs the `ray` extra (the `test` extra
installs it)."""
import json
import os
import sys
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

from spacy_spert.cli import app
from spacy_spert.predict import InvalidInput, predict

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'spacy-spert[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'spacy-spert[ray]'")

from spacy_spert.distributed import RayPredictor, predict_ray  # noqa: E402

TEXTS = [
    "Mary Smith works for Acme Corp in Paris .",
    "",
    "John Doe lives in London .",
    "Globex , a firm in Berlin , hired Anna Lee .",
    "The weather was nice .",
    "Anna Lee works for Globex in Berlin and John Doe lives in Paris .",
    "Mary Smith lives in London .",
]
# Enough docs for several tasks per actor (rows_per_task below).
N_DOCS = 120


@pytest.fixture(scope="module")
def model_dir(tiny_bert, tmp_path_factory) -> Path:
    """A small pipeline overfitted on the conftest examples, saved."""
    from conftest import make_nlp, overfit
    from spacy.util import fix_random_seed

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    overfit(nlp, n_steps=60, learn_rate=3e-3)
    path = tmp_path_factory.mktemp("ray_model") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs for this module, shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(model_dir, tmp_path_factory):
    """A JSONL input (with an id and another field, blank lines between) and
    what single-process `predict` writes for it."""
    folder = tmp_path_factory.mktemp("ray_corpus")
    lines = [json.dumps({"id": f"doc-{i}", "text": TEXTS[i % len(TEXTS)], "meta": {"n": i}}) for i in range(N_DOCS)]
    path = folder / "in.jsonl"
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n", encoding="utf8")
    expected = folder / "expected.jsonl"
    predict(spacy.load(model_dir), path, expected)
    return path, expected.read_bytes()


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


def assert_same_lines(got, want):
    """The same fields, entities and relations; scores to float tolerance."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("entities", "relations"):
            assert [{**x, "score": None} for x in g[key]] == [{**x, "score": None} for x in w[key]], g["text"]
            assert [x["score"] for x in g[key]] == pytest.approx([x["score"] for x in w[key]], abs=1e-5)
        assert {k: v for k, v in g.items() if k not in ("entities", "relations")} == \
            {k: v for k, v in w.items() if k not in ("entities", "relations")}


def test_two_actors_give_what_predict_gives(cluster, model_dir, corpus, tmp_path):
    """Two actors, small tasks: the JSONL output is predict's, line for line
    (ids, carried fields, entities, relations, input order), and the report
    counts match."""
    path, expected = corpus
    report = predict_ray(model_dir, path, tmp_path / "out.jsonl", num_actors=2, rows_per_task=16, batch_size=4)
    want = [json.loads(line) for line in expected.decode("utf8").splitlines()]
    got = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in got] == [f"doc-{i}" for i in range(N_DOCS)]
    assert_same_lines(got, want)
    assert report.n_docs == N_DOCS and report.n_actors == 2 and report.duplicates == 0 and not report.skipped
    assert report.n_entities == sum(len(line["entities"]) for line in want) > 0
    assert report.n_relations == sum(len(line["relations"]) for line in want) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


class CrashOnce(RayPredictor):
    """An actor whose process exits (as in a crash: no exception, no cleanup)
    on its third batch, once per run: the marker file says it happened."""

    marker: str = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 3 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


def test_killed_actor_every_doc_exactly_once(cluster, model_dir, corpus, tmp_path):
    """An actor process dies in mid-run: Ray restarts it and redoes its batch;
    the output still has every doc exactly once and equals predict's."""
    path, expected = corpus
    marker = tmp_path / "crashed"
    crashing = type("CrashOnceHere", (CrashOnce,), {"marker": str(marker)})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        report = predict_ray(model_dir, path, tmp_path / "out.jsonl", num_actors=2, rows_per_task=16, batch_size=4,
                             predictor_class=crashing)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists(), "the actor should have crashed once"
    got = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in got] == [f"doc-{i}" for i in range(N_DOCS)]
    assert_same_lines(got, [json.loads(line) for line in expected.decode("utf8").splitlines()])
    assert report.n_docs == N_DOCS


def test_parquet_in_and_out(cluster, model_dir, corpus, tmp_path):
    """Parquet input (a folder of two files) and Parquet output hold the same
    docs as the JSONL run; one actor."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, expected = corpus
    want = [json.loads(line) for line in expected.decode("utf8").splitlines()]
    rows = [{"id": line["id"], "text": line["text"]} for line in want]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:50]), tmp_path / "in" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[50:]), tmp_path / "in" / "part-1.parquet")
    report = predict_ray(model_dir, tmp_path / "in", tmp_path / "out.parquet", num_actors=1, rows_per_task=64,
                         id_key="id")
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert report.n_docs == N_DOCS and report.n_files == 2
    assert_same_lines(got, [{k: v for k, v in line.items() if k != "meta"} for line in want])


def test_invalid_lines_as_predict_reports_them(cluster, model_dir, tmp_path):
    """A line without the text field stops the run with predict's error
    (naming file and line) and writes nothing; with skip_invalid it is listed;
    a missing or repeated --id-key value is an error naming the line."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "Anna Lee ."}\n{"txt": "typo"}\n\n{"text": 3}\n{"text": "John Doe ."}\n')
    with pytest.raises(InvalidInput) as local:
        predict(model_dir, path, tmp_path / "local.jsonl")
    with pytest.raises(InvalidInput) as distributed:
        predict_ray(model_dir, path, tmp_path / "out.jsonl", num_actors=1)
    assert str(distributed.value) == str(local.value) == f"{path}: line 2: no field 'text' (the text key; fields: txt)"
    report = predict_ray(model_dir, path, tmp_path / "out.jsonl", num_actors=1, skip_invalid=True)
    assert [line["text"] for line in read_jsonl(tmp_path / "out.jsonl")] == ["Anna Lee .", "John Doe ."]
    assert [(e.line, e.problem) for e in report.skipped] == [
        (2, "no field 'text' (the text key; fields: txt)"), (4, "field 'text' must be a string, got a number")]
    (tmp_path / "ids.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n{"id": 1, "text": "c"}\n')
    with pytest.raises(ValueError, match=r"ids\.jsonl: line 3: the id 1 \('id'\) is also the id of .*ids\.jsonl line 1"):
        predict_ray(model_dir, tmp_path / "ids.jsonl", tmp_path / "ids-out.jsonl", num_actors=1, id_key="id")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.jsonl", "in.jsonl", "out.jsonl"]


def test_cli_engine_ray(cluster, model_dir, corpus, tmp_path):
    """`predict --engine ray` writes predict's output; options of the other
    engine are usage errors."""
    path, expected = corpus
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(model_dir), str(path), str(tmp_path / "out.jsonl"), "--engine", "ray",
                                 "--num-actors", "1", "--id-key", "id"])
    assert result.exit_code == 0, result.output
    assert f"Wrote {N_DOCS} docs" in result.stdout and "with 1 Ray actors" in result.stdout
    assert_same_lines(read_jsonl(tmp_path / "out.jsonl"),
                      [json.loads(line) for line in expected.decode("utf8").splitlines()])
    result = runner.invoke(app, ["predict", str(model_dir), str(path), str(tmp_path / "x.jsonl"), "--engine", "ray",
                                 "--n-process", "2"])
    assert result.exit_code == 2 and "--n-process: not with --engine ray" in result.stderr
    result = runner.invoke(app, ["predict", str(model_dir), str(path), str(tmp_path / "x.jsonl"), "--num-actors", "3"])
    assert result.exit_code == 2 and "--num-actors: only with --engine ray" in result.stderr
    result = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "missing.jsonl"), str(tmp_path / "x.jsonl"),
                                 "--engine", "ray"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "missing.jsonl" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()
