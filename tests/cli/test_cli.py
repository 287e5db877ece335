"""The `spert` command-line interface (spacy_spert/cli/): registration in
`python -m spacy`, the command list, arguments reaching the library, one-line
errors. (`convert` is tested in test_convert.py.)"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import typer
from spacy.tokens import DocBin
from typer.testing import CliRunner

import research.cli as research_cli
import spacy_spert.cli as cli
from research import kfold, records
from research.runs import train_command
from spacy_spert.cli import app

runner = CliRunner()


RESEARCH = set(typer.main.get_command(research_cli.app).commands)


def invoke(*args: str):
    """Run a command of `python -m spacy_spert`, or of `python -m research`
    for the research tools."""
    target = research_cli.app if str(args[0]) in RESEARCH else app
    return runner.invoke(target, [str(arg) for arg in args])


def assert_one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0]


@pytest.mark.parametrize("module", [cli, research_cli], ids=["spacy_spert", "research"])
def test_module_docstring_lists_every_command(module):
    """The list in the CLI's docstring is the commands' short help, one line each."""
    listed = dict(re.findall(r"^    ([a-z][a-z-]*) +(.+)$", module.__doc__, flags=re.M))
    commands = typer.main.get_command(module.app).commands
    assert list(listed) == list(commands)
    for name, command in commands.items():
        assert listed[name] == command.get_short_help_str(limit=45), name


def test_spacy_cli_has_spert():
    """The `spacy_cli` entry point adds the app to `python -m spacy`."""
    result = subprocess.run([sys.executable, "-m", "spacy", "spert", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m spacy spert [OPTIONS] COMMAND" in result.stdout
    for name in typer.main.get_command(app).commands:
        assert f"  {name} " in result.stdout


def test_command_line_records_module_runs():
    python = Path(sys.executable).name
    main = str(Path("/env/site-packages/spacy_spert/__main__.py"))
    assert records.command_line([main, "benchmark", "a b.cfg"]) == f"{python} -m spacy_spert benchmark 'a b.cfg'"
    spacy_main = str(Path("/env/site-packages/spacy/__main__.py"))
    assert records.command_line([spacy_main, "spert", "speed"]) == f"{python} -m spacy spert speed"
    assert records.command_line(["tool.py", "--x"]) == f"{python} tool.py --x"


def test_command_line_records_a_module_run_with_dash_m(tmp_path):
    """A module run as ``python -m package.module`` is recorded so, not as the
    path of its file."""
    (tmp_path / "pkgx").mkdir()
    (tmp_path / "pkgx" / "__init__.py").write_text("")
    (tmp_path / "pkgx" / "mod.py").write_text("from research.records import command_line\nprint(command_line())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "pkgx.mod", "a b", "--x"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == f"{Path(sys.executable).name} -m pkgx.mod 'a b' --x"


def test_train_command_is_spacy_train():
    """Training is `spacy train` with the overrides as given: the config decides
    the schedule (no step counts are computed)."""
    cmd = train_command("c.cfg", "out", "train.spacy", "dev.spacy", 0, ["--training.max_epochs", "3"])
    assert cmd == [
        sys.executable,
        "-m",
        "spacy",
        "train",
        "c.cfg",
        "--output",
        "out",
        "--gpu-id",
        "0",
        "--paths.train",
        "train.spacy",
        "--paths.dev",
        "dev.spacy",
        "--training.max_epochs",
        "3",
    ]


# convert-dataset, ablation-table, demo-data -------------------------------------


def test_convert_dataset(tmp_path):
    data = tmp_path / "mini"
    data.mkdir()
    record = {
        "tokens": ["Anna", "lives", "in", "Oslo"],
        "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Loc", "start": 3, "end": 4}],
        "relations": [{"type": "Live_In", "head": 0, "tail": 1}],
    }
    (data / "types.json").write_text(json.dumps({"entities": {"Peop": {}, "Loc": {}}, "relations": {"Live_In": {}}}))
    (data / "mini_dev.json").write_text(json.dumps([record, record]))
    result = invoke("convert-dataset", data, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{data / 'mini_dev.json'} -> {tmp_path / 'out' / 'dev.spacy'} (2 docs)\n"
    record["entities"][1]["type"] = "Org"
    (data / "mini_test.json").write_text(json.dumps([record]))
    result = invoke("convert-dataset", data, tmp_path / "out2")
    assert_one_line_error(result, "mini_test.json: record 0: field 'entities[1].type': unknown entity type")
    (data / "types.json").unlink()
    assert_one_line_error(invoke("convert-dataset", data, tmp_path / "out3"), "no mini_types.json or types.json in")


def test_ablation_table(tmp_path):
    spert = tmp_path / "spert.json"
    metrics = {
        name: {"p": 1.0, "r": 1.0, "f": 50.0}
        for name in ("ner_micro", "ner_macro", "rel_strict_micro", "rel_strict_macro", "rel_boundaries_micro")
    }
    spert.write_text(
        json.dumps({"metrics": metrics, "test": "t", "train": "tr", "epochs": 1, "seed": 3, "versions": {}})
    )
    out = tmp_path / "sub" / "table.md"
    result = invoke("ablation-table", "--spert", spert, "--mt-prefix", tmp_path / "mt", "--seed", "3", "--output", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf8")
    assert result.stdout == text + "\n"
    assert "| SpERT | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 |" in text
    assert f"`{tmp_path / 'mt-no_iou_loss-seed3.json'}`" in text


def test_demo_data_options(tmp_path):
    result = invoke("demo-data", "--output", tmp_path, "--n-train", "7", "--n-dev", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "train.json").read_text(encoding="utf8"))) == 7
    assert len(json.loads((tmp_path / "dev.json").read_text(encoding="utf8"))) == 2


# kfold and benchmark run `spacy train` --------------------------------------------


@pytest.fixture
def fold_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("split_0_train", "split_0_test", "split_1_train", "split_1_test"):
        (corpus / f"{name}.spacy").write_bytes(b"")
    return corpus


def test_kfold_runs_train_and_evaluate(fold_corpus, tmp_path, monkeypatch):
    """Each fold: `spacy train` with the config overrides, then `evaluate`;
    the fold scores are aggregated."""
    commands = []

    def fake_run(cmd):
        commands.append(cmd)
        if cmd[2:4] == ["spacy_spert", "evaluate"]:
            score = 0.5 if "fold_0" in cmd[4] else 0.7
            Path(cmd[cmd.index("--output") + 1]).parent.mkdir(parents=True, exist_ok=True)
            Path(cmd[cmd.index("--output") + 1]).write_text(json.dumps({"spert_ent_f": score}))

    monkeypatch.setattr(kfold, "run", fake_run)
    out, metrics = tmp_path / "kf", tmp_path / "metrics.json"
    result = invoke(
        "kfold",
        "c.cfg",
        fold_corpus,
        "--output",
        out,
        "--metrics",
        metrics,
        "--model",
        "best",
        "--training.max_epochs",
        "3",
        "--system.seed",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert commands[0] == train_command(
        "c.cfg",
        out / "fold_0",
        fold_corpus / "split_0_train.spacy",
        fold_corpus / "split_0_test.spacy",
        -1,
        ["--training.max_epochs", "3", "--system.seed", "1"],
    )
    assert commands[1] == [
        sys.executable,
        "-m",
        "spacy_spert",
        "evaluate",
        str(out / "fold_0" / "model-best"),
        str(fold_corpus / "split_0_test.spacy"),
        "--output",
        str(out / "fold_0" / "metrics.json"),
        "--gpu-id",
        "-1",
    ]
    assert len(commands) == 4
    saved = json.loads(metrics.read_text())
    assert saved["folds"] == ["0", "1"] and saved["overrides"] == ["--training.max_epochs", "3", "--system.seed", "1"]
    assert saved["mean"]["spert_ent_f"] == pytest.approx(0.6)
    assert "spert_ent_f                 60.00 +- 14.14" in result.stdout
    # --resume: nothing runs again
    commands.clear()
    assert invoke("kfold", "c.cfg", fold_corpus, "-o", out, "-m", metrics, "--resume").exit_code == 0
    assert commands == []


def test_kfold_errors(fold_corpus, tmp_path):
    args = ["kfold", "c.cfg", fold_corpus, "-o", tmp_path / "o", "-m", tmp_path / "m.json"]
    assert_one_line_error(invoke(*args, "--folds", "0,5"), "unknown folds ['5']; found: ['0', '1']")
    assert_one_line_error(invoke(*args, "--model", "first"), "must be 'last' or 'best', got 'first'")
    assert_one_line_error(invoke(*args[:2], tmp_path, *args[3:]), "no folds in")
    result = invoke(*args, "--training")  # an override needs a section and a key
    assert result.exit_code == 2 and result.stderr == "error: No such option '--training'.\n"


def test_benchmark_trains_with_spacy_train(tmp_path, monkeypatch):
    """A failed training run is one error line naming the command."""
    from research import benchmark

    commands = []

    def failing_run(cmd):
        commands.append(cmd)
        raise subprocess.CalledProcessError(3, cmd)

    monkeypatch.setattr(benchmark, "run", failing_run)
    monkeypatch.setattr(benchmark, "steps_per_epoch", lambda config, train, overrides: 7)
    result = invoke(
        "benchmark",
        "c.cfg",
        "--train",
        "tr.spacy",
        "--test",
        "te.spacy",
        "--output-dir",
        tmp_path / "o",
        "--results",
        tmp_path / "r.json",
        "--epochs",
        "2",
        "--seed",
        "5",
        "--components.spert.model.multitask",
        "false",
    )
    assert commands == [
        train_command(
            "c.cfg",
            tmp_path / "o",
            "tr.spacy",
            "te.spacy",
            -1,
            [
                "--training.max_epochs",
                "2",
                "--system.seed",
                "5",
                "--training.eval_frequency",
                "7",
                "--components.spert.model.multitask",
                "false",
            ],
        )
    ]
    assert_one_line_error(result, "error: exit status 3 from: ", " -m spacy train c.cfg ")
    assert not (tmp_path / "r.json").exists()


def test_benchmark_evaluates_once_per_epoch(tmp_path):
    """steps_per_epoch = ceil(non-empty training docs / the config's batch
    size), with the overrides applied."""
    from spacy.tokens import Doc

    from research.benchmark import steps_per_epoch

    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=["w"] * n) for n in (3, 0, 2, 4, 1, 5)]  # 5 non-empty
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    config = Path(__file__).parents[2] / "configs" / "spert.cfg"
    assert steps_per_epoch(config, tmp_path / "train.spacy") == 3  # batches of 2
    assert steps_per_epoch(config, tmp_path / "train.spacy", ["--training.batcher.size", "8"]) == 1
    assert steps_per_epoch(config, tmp_path / "train.spacy", ["--corpora.train.limit", "2"]) == 1  # as the reader


# evaluate, benchmark and demo on a small trained pipeline -------------------------


@pytest.fixture(scope="module")
def small_model(model_dir, tmp_path_factory):
    """The session's overfitted pipeline (conftest's model_dir, trained once
    for the predict and quantization tests too), copied as DIR/bench/model-last,
    and the conftest examples as DIR/test.spacy."""
    from conftest import train_examples

    path = tmp_path_factory.mktemp("small_model")
    shutil.copytree(model_dir, path / "bench" / "model-last")
    examples = train_examples(spacy.blank("en"))
    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(path / "test.spacy")
    return path


def test_evaluate_prints_spert_table(small_model, tmp_path):
    out = tmp_path / "m" / "scores.json"
    result = invoke("evaluate", small_model / "bench" / "model-last", small_model / "test.spacy", "--output", out)
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert "spert_rel_bound_macro_f" in scores
    lines = result.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.endswith("macro P   macro R  macro F1"))
    rows = lines[header + 2 : header + 5]
    assert [row[:15].strip() for row in rows] == ["NER", "RE strict", "RE boundaries"]
    assert rows[0].split()[3] == f"{100 * scores['spert_ent_f']:.2f}"


def test_benchmark_skip_train_writes_results(small_model, tmp_path):
    results = tmp_path / "results.json"
    result = invoke(
        "benchmark",
        "c.cfg",
        "--train",
        "tr.spacy",
        "--test",
        small_model / "test.spacy",
        "--output-dir",
        small_model / "bench",
        "--results",
        results,
        "--skip-train",
        "--batch-sizes",
        "2",
        "--epochs",
        "4",
        "--seed",
        "7",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(results.read_text())
    assert list(data["metrics"]) == [
        "ner_micro",
        "ner_macro",
        "rel_strict_micro",
        "rel_strict_macro",
        "rel_boundaries_micro",
        "rel_boundaries_macro",
        "ner_per_type",
        "rel_strict_per_type",
    ]
    assert data["seed"] == 7 and data["overrides"] == [] and "spacy" in data["versions"]
    assert data["training"] == {"wall_seconds": None, "seconds_per_epoch": None}
    assert list(data["inference"]["by_batch_size"]) == ["2"]
    table = results.with_suffix(".md").read_text()
    assert table.startswith("| metric | P | R | F1 |\n|---|---|---|---|\n| ner_micro | ")
    assert "(seed 7)" in table and result.stdout == table + "\n"


def test_demo_prints_entities_and_relations(small_model):
    result = invoke(
        "demo",
        small_model / "bench" / "model-last",
        "--text",
        "Mary Smith works for Acme Corp in Paris .",
        "--text",
        "Nothing here .",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    first = lines.index("Mary Smith works for Acme Corp in Paris .")
    assert lines[first + 1].startswith("  entities:  ") and lines[first + 2].startswith("  relations: ")
    assert lines[lines.index("Nothing here .") + 1].startswith("  entities:  ")
