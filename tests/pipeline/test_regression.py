"""Refactoring guard: a fixed-seed short training gives the same predictions
and scores as the code before the "one home per concern" refactor.

``tests/data/regression_golden.json`` was written by ``run_regression()`` with
the code of commit 45668b3 (before the refactor):

    PYTHONPATH=<checkout of 45668b3> python -c "from tests.test_regression import \
        write_golden; write_golden()"

Both SpERT and SpERT.MT are trained from the same seed on 8 sentences of the
demo corpus (assets/demo) with a tiny random BERT whose vocabulary is built
from that corpus, then predict those 8 and 8 dev sentences. Entities,
relations (labels and offsets) must be identical and scores equal to float
tolerance; the spaCy scores too.
"""

import json
from pathlib import Path
from typing import Any, Dict

import numpy
import pytest
from conftest import SPECIAL_TOKENS, make_nlp, save_tiny_bert
from spacy.training import Example
from thinc.api import fix_random_seed

import spacy_spert  # noqa: F401
from spacy_spert.io.spert_json import records_to_docs
from spacy_spert.training.optimizers import create_adamw

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parents[1] / "data" / "regression_golden.json"
DEMO = REPO_ROOT / "assets" / "demo"
N_TRAIN, N_DEV, N_STEPS = 8, 8, 100
LR = 3e-3

SETTINGS = {
    "spert": {},
    "spert_mt": {
        "threshold": 0.85,
        "neg_entity_count": 120,
        "neg_relation_count": 120,
        "model": {
            "@architectures": "spacy-spert.SpERTMT.v1",
            "tok2vec": {"@layers": "spacy-spert.WordpieceListener.v1", "upstream": "*"},
        },
    },
}


def run_regression(tmp_dir: Path) -> Dict[str, Any]:
    """Train each setting of SETTINGS for N_STEPS and return its predictions
    (entities with scores, relations) and spaCy scores on train and dev docs."""
    train = json.loads((DEMO / "train.json").read_text(encoding="utf8"))[:N_TRAIN]
    dev = json.loads((DEMO / "dev.json").read_text(encoding="utf8"))[:N_DEV]
    words = [w for rec in train + dev for w in rec["tokens"]]
    # (the tokenizer without a model_max_length, as the golden run had it)
    bert = save_tiny_bert(tmp_dir / "bert", SPECIAL_TOKENS + sorted({w.lower() for w in words}), max_positions=128)
    out: Dict[str, Any] = {}
    for name, spert_config in SETTINGS.items():
        fix_random_seed(0)
        nlp = make_nlp(bert, spert_config, window={"@span_getters": "spacy-spert.sentence_windows.v1"})
        gold_train = records_to_docs(train, nlp.vocab)
        gold_dev = records_to_docs(dev, nlp.vocab)
        examples = [Example(nlp.make_doc(d.text), d) for d in gold_train]
        optimizer = create_adamw(learn_rate=LR)
        nlp.initialize(lambda examples=examples: examples, sgd=optimizer)
        for step in range(N_STEPS):
            batch = examples[(step * 4) % N_TRAIN : (step * 4) % N_TRAIN + 4]
            nlp.update(batch, sgd=optimizer, drop=0.1)
        result = {}
        for split, golds in (("train", gold_train), ("dev", gold_dev)):
            preds = list(nlp.pipe([nlp.make_doc(d.text) for d in golds]))
            result[split] = {
                "docs": [
                    {
                        "ents": [[s.start, s.end, s.label_] for s in d.spans["sc"]],
                        "ent_scores": [float(x) for x in d.spans["sc"].attrs["scores"]],
                        "rels": [
                            [
                                r["head_start"],
                                r["head_end"],
                                r["tail_start"],
                                r["tail_end"],
                                r["label"],
                                r["head_label"],
                                r["tail_label"],
                            ]
                            for r in d._.relations
                        ],
                        "rel_scores": [float(r["score"]) for r in d._.relations],
                    }
                    for d in preds
                ],
                "scores": {
                    k: v
                    for k, v in nlp.evaluate([Example(p, g) for p, g in zip(preds, golds)]).items()
                    if isinstance(v, float) and k.startswith("spert_")
                },
            }
        out[name] = result
    return out


def write_golden() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(run_regression(Path(tmp)), indent=1) + "\n", encoding="utf8")


@pytest.mark.slow
def test_short_training_matches_pre_refactor_golden(tmp_path):
    golden = json.loads(GOLDEN.read_text(encoding="utf8"))
    got = run_regression(tmp_path)
    n_ents = n_rels = 0
    for name in SETTINGS:
        for split in ("train", "dev"):
            want, have = golden[name][split], got[name][split]
            assert len(have["docs"]) == len(want["docs"])
            for i, (w, h) in enumerate(zip(want["docs"], have["docs"])):
                where = f"{name} {split} doc {i}"
                assert [tuple(e) for e in h["ents"]] == [tuple(e) for e in w["ents"]], where
                assert [tuple(r) for r in h["rels"]] == [tuple(r) for r in w["rels"]], where
                numpy.testing.assert_allclose(h["ent_scores"], w["ent_scores"], rtol=1e-4, atol=1e-5, err_msg=where)
                numpy.testing.assert_allclose(h["rel_scores"], w["rel_scores"], rtol=1e-4, atol=1e-5, err_msg=where)
                n_ents += len(w["ents"])
                n_rels += len(w["rels"])
            assert have["scores"].keys() == want["scores"].keys()
            for key, value in want["scores"].items():
                assert have["scores"][key] == pytest.approx(value, abs=1e-9), f"{name} {split} {key}"
    # The check means something only if the models predict entities and relations.
    assert n_ents > 30 and n_rels > 10
