"""The `seeds` protocol: one benchmark run per seed, then mean and sample
standard deviation of every headline score."""

import json
import math
import sys
from pathlib import Path

import pytest
import srsly
from spacy.tokens import DocBin
from thinc.api import Config
from typer.testing import CliRunner

from research import seeds as seeds_module
from research.cli import app
from research.seeds import run_seeds, seed_results, summarize, summary_path
from spacy_spert.pipeline.scorer import SCORE_NAMES

ROOT = Path(__file__).parents[2]


def fake_results(seed: int, ner_f: float, rel_f: float, overrides=()) -> dict:
    metrics = {score.name: {"p": 50.0, "r": 50.0, "f": 50.0} for score in SCORE_NAMES}
    metrics["ner_micro"] = {"p": ner_f - 1, "r": ner_f + 1, "f": ner_f}
    metrics["rel_strict_micro"] = {"p": rel_f, "r": rel_f, "f": rel_f}
    metrics["ner_per_type"] = {"Peop": {"p": 1.0, "r": 1.0, "f": 1.0}}
    return {
        "config": "c.cfg",
        "train": "tr.spacy",
        "test": "te.spacy",
        "epochs": 20,
        "seed": seed,
        "overrides": ["--training.eval_frequency", "577", *overrides],
        "command": f"bench {seed}",
        "metrics": metrics,
    }


def test_summary_mean_and_sample_std_by_hand(tmp_path):
    per_seed = {0: fake_results(0, 80.0, 60.0), 1: fake_results(1, 82.0, 63.0), 2: fake_results(2, 84.0, 63.0)}
    summary = summarize(per_seed, tmp_path / "r")
    # NER F1 80, 82, 84: mean 82, sample std sqrt((4 + 0 + 4) / 2) = 2
    assert summary["mean"]["ner_micro"] == {"p": 81.0, "r": 83.0, "f": 82.0}
    assert summary["std"]["ner_micro"]["f"] == 2.0
    # RE 60, 63, 63: mean 62, std sqrt((4 + 1 + 1) / 2) = sqrt(3)
    assert summary["mean"]["rel_strict_micro"]["f"] == 62.0
    assert summary["std"]["rel_strict_micro"]["f"] == round(math.sqrt(3), 2) == 1.73
    assert summary["std"]["ner_macro"] == {"p": 0.0, "r": 0.0, "f": 0.0}
    assert summary["seeds"] == [0, 1, 2]
    assert summary["per_seed"]["1"] == {
        "results": str(tmp_path / "r-seed1.json"),
        "command": "bench 1",
        "metrics": {s.name: per_seed[1]["metrics"][s.name] for s in SCORE_NAMES},
    }
    table = seeds_module.markdown(summary | {"command": "seeds ..."})
    assert "| ner_micro | 82.00 +- 2.00 | 81.00 +- 2.00 | 83.00 +- 2.00 | 80.00 | 82.00 | 84.00 |" in table
    assert "| rel_strict_micro | 62.00 +- 1.73 |" in table


@pytest.fixture
def fake_benchmark(monkeypatch):
    """run_logged replaced: each 'run' writes a results file whose NER F1 is
    80 + 2 x seed and records the command."""
    commands = []

    def fake_run(cmd, log_path, echo):
        commands.append((list(cmd), log_path, echo))
        args = cmd[cmd.index("benchmark") + 1 :]
        seed = int(args[args.index("--seed") + 1])
        overrides = args[args.index("--skip-speed") + 1 :] if "--skip-speed" in args else []
        results = fake_results(seed, 80.0 + 2 * seed, 60.0, overrides) | {
            "config": args[0],
            "train": args[args.index("--train") + 1],
            "test": args[args.index("--test") + 1],
            "epochs": int(args[args.index("--epochs") + 1]),
        }
        srsly.write_json(args[args.index("--results") + 1], results)

    monkeypatch.setattr(seeds_module, "run_logged", fake_run)
    return commands


def test_run_seeds_runs_benchmark_per_seed_and_resumes(tmp_path, fake_benchmark):
    prefix = tmp_path / "results" / "conll04-spert"
    (tmp_path / "results").mkdir()
    kwargs = dict(seeds=[0, 1, 2], epochs=20, jobs=2, batch_sizes=(), overrides=["--x.y", "1"])

    def run(**changes):
        paths = (Path("c.cfg"), Path("tr.spacy"), Path("te.spacy"), tmp_path / "out", prefix)
        return run_seeds(*paths, **(kwargs | changes))

    summary = run()
    assert sorted(cmd[cmd.index("--seed") + 1] for cmd, _, _ in fake_benchmark) == ["0", "1", "2"]
    cmd, log, echo = next(c for c in fake_benchmark if c[0][c[0].index("--seed") + 1] == "1")
    assert cmd[:4] == [sys.executable, "-m", "research", "benchmark"]
    assert cmd[cmd.index("--output-dir") + 1] == str(tmp_path / "out" / "seed1")
    assert cmd[cmd.index("--results") + 1] == str(seed_results(prefix, 1)) == str(prefix) + "-seed1.json"
    assert cmd[-3:] == ["--skip-speed", "--x.y", "1"] and log == tmp_path / "out" / "seed1.log" and not echo
    assert summary["mean"]["ner_micro"]["f"] == 82.0 and summary["std"]["ner_micro"]["f"] == 2.0
    assert summary["machine"]["jobs"] == 2
    written = json.loads(summary_path(prefix).read_text())
    assert written["mean"] == summary["mean"] and summary_path(prefix).with_suffix(".md").exists()

    # --resume: nothing runs again; a new seed runs alone
    fake_benchmark.clear()
    run(resume=True, seeds=[0, 1, 2, 3])
    assert [cmd[cmd.index("--seed") + 1] for cmd, _, _ in fake_benchmark] == ["3"]
    # ... but not results made with other settings
    with pytest.raises(
        ValueError,
        match=r"conll04-spert-seed0.json: made with overrides = \['--x.y', '1'\], this run has \['--x.y', '2'\]",
    ):
        run(resume=True, overrides=["--x.y", "2"])


def test_seeds_cli_errors(tmp_path):
    runner = CliRunner()
    args = [
        "seeds",
        "c.cfg",
        "--train",
        "t",
        "--test",
        "t",
        "--output-dir",
        str(tmp_path),
        "--results-prefix",
        str(tmp_path / "r"),
    ]
    result = runner.invoke(app, [*args, "--seeds", "1,1"])
    assert result.exit_code == 1 and "give one or more different seeds, got [1, 1]" in result.stderr
    result = runner.invoke(app, [*args, "--jobs", "0"])
    assert result.exit_code == 1 and "jobs must be at least 1, got 0" in result.stderr
    result = runner.invoke(app, [*args, "--seeds", "a"])
    assert result.exit_code == 1 and "expected comma-separated integers, got 'a'" in result.stderr


@pytest.mark.slow
def test_seeds_end_to_end_on_a_tiny_corpus(tiny_bert, tmp_path):
    """Two seeds of a tiny BERT config, one epoch each, two at once: per-seed
    results, their logs with the training table, and the summary."""
    import spacy
    from conftest import TRAIN_DATA, make_doc

    nlp = spacy.blank("en")
    docs = [make_doc(nlp.vocab, w, e, r) for w, e, r in TRAIN_DATA]
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "train.spacy")
    config = Config().from_disk(ROOT / "configs" / "spert.cfg", interpolate=False)
    config["encoder"]["name"] = str(tiny_bert)
    config.to_disk(tmp_path / "tiny.cfg")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "seeds",
            str(tmp_path / "tiny.cfg"),
            "--train",
            str(tmp_path / "train.spacy"),
            "--test",
            str(tmp_path / "train.spacy"),
            "--output-dir",
            str(tmp_path / "runs"),
            "--results-prefix",
            str(tmp_path / "res" / "tiny"),
            "--seeds",
            "3,4",
            "--epochs",
            "1",
            "--jobs",
            "2",
            "--skip-speed",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "res" / "tiny-seeds.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["epochs"] == 1
    for seed in (3, 4):
        per_seed = json.loads((tmp_path / "res" / f"tiny-seed{seed}.json").read_text())
        assert per_seed["seed"] == seed
        assert summary["per_seed"][str(seed)]["metrics"]["ner_micro"] == per_seed["metrics"]["ner_micro"]
        assert "SPERT_ENT_F" in (tmp_path / "runs" / f"seed{seed}.log").read_text()
    assert (tmp_path / "runs" / "seed3" / "model-last").is_dir()
    assert "| ner_micro |" in result.stdout
