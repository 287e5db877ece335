"""`predict --engine ray` (spacy_spert/apps/predict_ray.py) on a local Ray cluster
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
import torch
from typer.testing import CliRunner

from spacy_spert.apps.predict import predict
from spacy_spert.cli import app
from spacy_spert.io.jsonl import InvalidInput

# Every test here shares a local Ray cluster and actors (tens of seconds in all).
pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'spacy-spert[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'spacy-spert[ray]'")

from spacy_spert.apps.predict_ray import RayPredictor, predict_ray  # noqa: E402

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


def assert_same_lines(got, want, tolerance=1e-5):
    """The same fields, entities and relations; scores within ``tolerance``."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("entities", "relations"):
            assert [{**x, "score": None} for x in g[key]] == [{**x, "score": None} for x in w[key]], g["text"]
            assert [x["score"] for x in g[key]] == pytest.approx([x["score"] for x in w[key]], abs=tolerance)
        assert {k: v for k, v in g.items() if k not in ("entities", "relations")} == {
            k: v for k, v in w.items() if k not in ("entities", "relations")
        }


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
        report = predict_ray(
            model_dir,
            path,
            tmp_path / "out.jsonl",
            num_actors=2,
            rows_per_task=16,
            batch_size=4,
            predictor_class=crashing,
        )
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

    _, expected = corpus
    want = [json.loads(line) for line in expected.decode("utf8").splitlines()]
    rows = [{"id": line["id"], "text": line["text"]} for line in want]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:50]), tmp_path / "in" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[50:]), tmp_path / "in" / "part-1.parquet")
    report = predict_ray(
        model_dir, tmp_path / "in", tmp_path / "out.parquet", num_actors=1, rows_per_task=64, id_key="id"
    )
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert report.n_docs == N_DOCS and report.n_files == 2
    assert_same_lines(got, [{k: v for k, v in line.items() if k != "meta"} for line in want])


def test_invalid_lines_as_predict_reports_them(cluster, model_dir, tmp_path):
    """Invalid lines get predict's errors, naming file and line; with
    skip_invalid they are listed and the other docs written. (Without it the
    driver raises the first: test_collector_checks_every_doc_once.)"""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "Anna Lee ."}\n{"txt": "typo"}\n\n{"text": 3}\n{"text": "John Doe ."}\n')
    local = predict(model_dir, path, tmp_path / "local.jsonl", skip_invalid=True)
    report = predict_ray(model_dir, path, tmp_path / "out.jsonl", num_actors=1, skip_invalid=True)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert (
        [str(e) for e in report.skipped]
        == [str(e) for e in local.skipped]
        == [
            f"{path}: line 2: no field 'text' (the text key; fields: txt)",
            f"{path}: line 4: field 'text' must be a string, got a number",
        ]
    )


def chunk(file, lines, kinds, outputs=None, ids=None, n=None):
    """An output chunk row of the actors, as the driver receives it."""
    k = len(lines)
    return {
        "file": [file],
        "line": [lines],
        "kind": [kinds],
        "n": [n or [0] * k],
        "output": [outputs or [json.dumps({"text": str(x)}) for x in lines]],
        "id": [ids or [""] * k],
        "n_entities": [[1] * k],
        "n_relations": [[0] * k],
    }


class NoBar:
    def update(self, n):
        pass


def collector(tmp_path, id_key=None):
    """The driver's collector for two files writing JSONL to out.jsonl."""
    from spacy_spert.apps.predict_ray import RayPredictReport
    from spacy_spert.apps.ray_output import Collector, JsonlSink

    f = (tmp_path / "out.jsonl").open("wb")
    report = RayPredictReport()
    return Collector(["a.jsonl", "b.jsonl"], "jsonl", JsonlSink(f), report, False, id_key, NoBar()), f, report


def test_collector_checks_every_doc_once(tmp_path):
    """The driver's side without Ray: a chunk that comes back twice (a
    retried task) is written once; a doc that never comes back, an invalid
    line and a repeated id are errors naming file and line."""
    from spacy_spert.apps.ray_output import DOC, END_OF_FILE, INVALID

    c, f, report = collector(tmp_path)
    for batch in (
        chunk(0, [1, 2], [DOC, DOC]),
        chunk(0, [1, 2], [DOC, DOC]),
        chunk(0, [4], [DOC]),
        chunk(0, [5], [END_OF_FILE], n=[3]),
        chunk(1, [1], [END_OF_FILE], n=[0]),
    ):
        c.add_batch(batch)
    c.finish()
    f.close()
    assert [json.loads(line)["text"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["1", "2", "4"]
    assert report.n_docs == 3 and report.duplicates == 2 and report.n_entities == 3

    c, f, _ = collector(tmp_path)
    c.add_batch(chunk(0, [1, 3], [DOC, DOC]))
    c.add_batch(chunk(0, [4], [END_OF_FILE], n=[3]))  # line 2 never came back
    c.add_batch(chunk(1, [1], [END_OF_FILE], n=[0]))
    with pytest.raises(ValueError, match=r"a\.jsonl: 2 of 3 docs came back .*1 files incomplete"):
        c.finish()
    c, f, _ = collector(tmp_path)
    c.add_batch(chunk(0, [1], [END_OF_FILE], n=[0]))
    with pytest.raises(ValueError, match=r"b\.jsonl: 0 of its docs came back"):  # no end-of-file row
        c.finish()
    c, f, _ = collector(tmp_path)
    with pytest.raises(InvalidInput, match=r"^a\.jsonl: line 2: no field 'text'$"):
        c.add_batch(chunk(0, [1, 2], [DOC, INVALID], outputs=["{}", "no field 'text'"]))
    c, f, _ = collector(tmp_path, id_key="id")
    with pytest.raises(ValueError, match=r"b\.jsonl: line 7: the id \"x\" \('id'\) is also the id of a\.jsonl line 1"):
        c.add_batch(chunk(0, [1], [DOC], ids=['"x"']))
        c.add_batch(chunk(1, [7], [DOC], ids=['"x"']))
    f.close()


def test_cli_engine_ray(cluster, model_dir, corpus, tmp_path):
    """`predict --engine ray` writes predict's output; options of the other
    engine are usage errors."""
    path, expected = corpus
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "predict",
            str(model_dir),
            str(path),
            str(tmp_path / "out.jsonl"),
            "--engine",
            "ray",
            "--num-actors",
            "1",
            "--id-key",
            "id",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote {N_DOCS} docs" in result.stdout and "with 1 Ray actors" in result.stdout
    assert_same_lines(
        read_jsonl(tmp_path / "out.jsonl"), [json.loads(line) for line in expected.decode("utf8").splitlines()]
    )
    result = runner.invoke(
        app, ["predict", str(model_dir), str(path), str(tmp_path / "x.jsonl"), "--engine", "ray", "--n-process", "2"]
    )
    assert result.exit_code == 2 and "--n-process: not with --engine ray" in result.stderr
    result = runner.invoke(app, ["predict", str(model_dir), str(path), str(tmp_path / "x.jsonl"), "--num-actors", "3"])
    assert result.exit_code == 2 and "--num-actors: only with --engine ray" in result.stderr
    result = runner.invoke(
        app, ["predict", str(model_dir), str(tmp_path / "missing.jsonl"), str(tmp_path / "x.jsonl"), "--engine", "ray"]
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "missing.jsonl" in result.stderr
    result = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "no_model"),
            str(path),
            str(tmp_path / "x.jsonl"),
            "--engine",
            "ray",
            "--num-actors",
            "1",
        ],
    )
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: a Ray actor on ") and "could not load the pipeline" in result.stderr
    assert "no_model" in result.stderr and "E050" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_ray_throughput_command_writes_results(cluster, model_dir, tmp_path):
    """`ray-throughput` times predict and the Ray engine on the same docs,
    checks that they agree and writes the results file."""
    from spacy.tokens import DocBin

    nlp = spacy.load(model_dir)
    corpus = tmp_path / "corpus.spacy"
    DocBin(docs=[nlp.make_doc(text) for text in TEXTS]).to_disk(corpus)
    results = tmp_path / "results" / "ray.json"
    from research.cli import app as research_app

    result = CliRunner().invoke(
        research_app,
        [
            "ray-throughput",
            str(model_dir),
            str(corpus),
            "--results",
            str(results),
            "--n-docs",
            "30",
            "--actors",
            "1",
            "--repeats",
            "1",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(results.read_text())
    assert data["n_docs"] == 30 and data["seed"] == 3 and data["ray_num_cpus"] == 2 and list(data["ray"]) == ["1"]
    run = data["ray"]["1"]
    assert run["output"]["same_output"] and run["output"]["n_entities"] > 0
    assert run["docs_per_s"] == pytest.approx(30 / run["seconds"][0], abs=0.06)  # rounded to 0.1
    assert 1 + run["overhead_vs_predict"] == pytest.approx(run["seconds"][0] / data["predict"]["seconds"][0], rel=0.1)
    assert "predict --engine ray, 1 actors" in results.with_suffix(".md").read_text()


def test_actor_runs_with_its_ops_in_another_thread(model_dir):
    """Ray Data may call an actor from another thread than the one that ran
    its __init__, and thinc keeps the current ops in a context variable: the
    actor must run the pipeline with the ops it was loaded with (on a GPU
    actor, CupyOps; this failed there with NumpyOps). No cluster needed."""
    import threading

    from thinc.api import NumpyOps, get_current_ops, set_current_ops

    from spacy_spert.apps.ray_output import DOC, END_OF_FILE

    class MarkedOps(NumpyOps):
        name = "marked"

    seen = []

    class Recording(RayPredictor):
        def process(self, *args):
            seen.append(get_current_ops())
            return super().process(*args)

    before = get_current_ops()
    set_current_ops(MarkedOps())
    try:
        predictor = Recording(str(model_dir), files=["in.jsonl"])
    finally:
        set_current_ops(before)
    raw = json.dumps({"text": TEXTS[0]}).encode("utf8")
    batch = {"file": [0], "line": [[1, 2]], "kind": [[DOC, END_OF_FILE]], "raw": [[raw, b""]], "n": [[0, 1]]}
    result = {}
    thread = threading.Thread(target=lambda: result.update(predictor(batch)))
    thread.start()
    thread.join()
    assert len(seen) == 1 and isinstance(seen[0], MarkedOps), seen
    assert result["kind"] == [[DOC, END_OF_FILE]] and result["n_entities"][0][0] > 0


def test_actor_names_hostile_and_long_lines(model_dir):
    """An actor checks lines as predict does: JSON that could not be written
    back and texts over max_length are invalid lines with predict's
    messages, the others are tagged. No cluster needed."""
    from spacy_spert.apps.ray_output import DOC, INVALID

    predictor = RayPredictor(str(model_dir), files=["in.jsonl"], max_length=20)
    raws = [b'{"text": "Anna Lee ."}', b'{"text": "a", "x": NaN}', b'{"text": "John Doe lives in London ."}']
    out = predictor.process(0, [1, 2, 3], [DOC] * 3, raws)
    assert out["kind"] == [DOC, INVALID, INVALID]
    assert out["output"][1] == "not JSON this reads: NaN is not a JSON value"
    assert out["output"][2].startswith("a text of 26 characters, over the limit of 20")
    assert json.loads(out["output"][0])["text"] == "Anna Lee ." and predictor.nlp.max_length >= 20


class OnGpu(RayPredictor):
    """An actor that fails unless its pipeline ran on a CUDA device: the ops
    of the thread that ran it, and the transformer's weights."""

    def __call__(self, batch):
        from thinc.api import get_current_ops

        out = super().__call__(batch)
        assert type(get_current_ops()).__name__ == "CupyOps", "the actor's pipeline did not run with CupyOps"
        torch_model = self.nlp.get_pipe("transformer").model.get_ref("transformer").shims[0]._model
        assert next(torch_model.parameters()).is_cuda, "the transformer's weights are not on the GPU"
        return out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_actor_gives_what_predict_gives(cluster, model_dir, corpus, tmp_path):
    """One actor with one GPU (Ray sets its CUDA_VISIBLE_DEVICES; the actor
    calls spacy.require_gpu): the output equals CPU predict's, scores to
    1e-4. Skipped without a CUDA device; run with `pytest -m gpu`."""
    assert ray.cluster_resources().get("GPU", 0) >= 1, "Ray should have found the GPU"
    path, expected = corpus
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        report = predict_ray(
            model_dir, path, tmp_path / "out.jsonl", num_actors=1, num_gpus_per_actor=1, predictor_class=OnGpu
        )
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert report.n_docs == N_DOCS
    assert_same_lines(
        read_jsonl(tmp_path / "out.jsonl"),
        [json.loads(line) for line in expected.decode("utf8").splitlines()],
        tolerance=1e-4,
    )
