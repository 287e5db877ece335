"""Tests of the SpERT scorer (spacy_spert/pipeline/scorer.py): hand-computed numbers."""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

import spacy_spert  # noqa: F401  (registers doc._.relations and the scorer)
from spacy_spert.pipeline.scorer import (
    SCORE_KEYS,
    SCORE_NAMES,
    boundaries_key,
    prf_from_counts,
    prf_from_sets,
    score_keys,
    score_name,
    score_spert,
)

VOCAB = spacy.blank("en").vocab


def make_doc(
    words: Sequence[str],
    ents: Sequence[Tuple[int, int, str]] = (),
    rels: Sequence[Dict[str, Any]] = (),
    spaces: Optional[Sequence[bool]] = None,
    spans_key: Optional[str] = "sc",
) -> Doc:
    doc = Doc(VOCAB, words=list(words), spaces=list(spaces) if spaces is not None else None)
    if spans_key is not None:
        doc.spans[spans_key] = [Span(doc, s, e, label=label) for s, e, label in ents]
    doc._.relations = list(rels)
    return doc


def rel(
    head: Tuple[int, int],
    tail: Tuple[int, int],
    label: str,
    head_label: Optional[str] = None,
    tail_label: Optional[str] = None,
    score: float = 1.0,
) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "head_start": head[0],
        "head_end": head[1],
        "tail_start": tail[0],
        "tail_end": tail[1],
        "label": label,
        "score": score,
    }
    if head_label is not None:
        out["head_label"] = head_label
    if tail_label is not None:
        out["tail_label"] = tail_label
    return out


def prf(p: float, r: float, f: float) -> Dict[str, Any]:
    return {"p": pytest.approx(p), "r": pytest.approx(r), "f": pytest.approx(f)}


def assert_mode(scores: Dict[str, Any], prefix: str, micro, macro, per_type) -> None:
    keys = score_keys(prefix)
    assert (scores[keys["p"]], scores[keys["r"]], scores[keys["f"]]) == pytest.approx(micro)
    assert (
        scores[keys["macro_p"]],
        scores[keys["macro_r"]],
        scores[keys["macro_f"]],
    ) == pytest.approx(macro)
    assert scores[keys["per_type"]] == {t: prf(*v) for t, v in per_type.items()}


# ---------------------------------------------------------------------------
# The hand-computed two-doc example
# ---------------------------------------------------------------------------

WORDS1 = "John Smith works for Acme Corp in New York .".split()
#          0    1     2     3   4    5    6  7   8    9
WORDS2 = "Mary lives in Paris and Bob knows Mary .".split()
#          0    1     2  3     4   5   6     7    8


def two_doc_examples() -> List[Example]:
    # Entities. Gold: 5 = d1 {(0,2,Peop), (4,6,Org), (7,9,Loc)}, d2 {(0,1,Peop), (3,4,Loc)}.
    # Predicted: 5 distinct (one duplicate, counted once):
    #   d1 (0,2,Peop) correct (predicted twice), (4,6,Loc) right boundaries, wrong type
    #   (one FP and one FN), (7,9,Loc) correct;
    #   d2 (0,1,Peop) correct, (5,6,Peop) spurious. (3,4,Loc) is missed.
    gold_ents1 = [(0, 2, "Peop"), (4, 6, "Org"), (7, 9, "Loc")]
    gold_ents2 = [(0, 1, "Peop"), (3, 4, "Loc")]
    pred_ents1 = [(0, 2, "Peop"), (0, 2, "Peop"), (4, 6, "Loc"), (7, 9, "Loc")]
    pred_ents2 = [(0, 1, "Peop"), (5, 6, "Peop")]
    # Relations. Gold (4), without head_label/tail_label: the entity types come
    # from the gold span group.
    #   d1 Work_For   (0,2 Peop) -> (4,6 Org)
    #   d1 Located_In (4,6 Org)  -> (7,9 Loc)
    #   d1 Live_In    (0,2 Peop) -> (7,9 Loc)
    #   d2 Live_In    (0,1 Peop) -> (3,4 Loc)
    gold_rels1 = [
        rel((0, 2), (4, 6), "Work_For"),
        rel((4, 6), (7, 9), "Located_In"),
        rel((0, 2), (7, 9), "Live_In"),
    ]
    gold_rels2 = [rel((0, 1), (3, 4), "Live_In")]
    # Predicted (3 distinct):
    #   d1 Work_For (0,2)->(4,6) without types: the predicted span group gives
    #      (Peop, Loc), so strict is wrong (gold tail is Org), boundaries right.
    #   d1 Live_In (0,2 Peop)->(7,9 Loc), correct; predicted twice (counted once).
    #   d2 Kill (5,6 Peop)->(7,8 Peop): a type only in predictions.
    pred_rels1 = [
        rel((0, 2), (4, 6), "Work_For", score=0.9),
        rel((0, 2), (7, 9), "Live_In", "Peop", "Loc", score=0.8),
        rel((0, 2), (7, 9), "Live_In", "Peop", "Loc", score=0.7),
    ]
    pred_rels2 = [rel((5, 6), (7, 8), "Kill", "Peop", "Peop", score=0.6)]
    return [
        Example(make_doc(WORDS1, pred_ents1, pred_rels1), make_doc(WORDS1, gold_ents1, gold_rels1)),
        Example(make_doc(WORDS2, pred_ents2, pred_rels2), make_doc(WORDS2, gold_ents2, gold_rels2)),
    ]


# The scores of two_doc_examples, worked out by hand: by test id, (prefix,
# micro P R F, macro P R F, per type, the F1 of the macro P and R where it
# differs from the macro F).
ZERO = (0, 0, 0)
TWO_DOC_SCORES = {
    # micro: tp 3, fp 2, fn 2 -> P = R = F = 3/5
    # Peop: gold {d1 0-2, d2 0-1}, pred {d1 0-2, d2 0-1, d2 5-6}: tp 2 fp 1 fn 0
    #       -> P 2/3, R 1, F 2*(2/3)/(5/3) = 0.8
    # Org:  tp 0 fp 0 fn 1 -> 0, 0, 0
    # Loc:  gold {d1 7-9, d2 3-4}, pred {d1 4-6, d1 7-9}: tp 1 fp 1 fn 1 -> 1/2, 1/2, 1/2
    # macro: P (2/3 + 0 + 1/2)/3 = 7/18, R (1 + 0 + 1/2)/3 = 1/2, F (0.8 + 0 + 0.5)/3 = 13/30
    # (F1 of the macro P and R would be 7/16 = 0.4375, not 13/30 = 0.4333.)
    "entities": (
        "spert_ent",
        (0.6, 0.6, 0.6),
        (7 / 18, 0.5, 13 / 30),
        {"Peop": (2 / 3, 1.0, 0.8), "Org": ZERO, "Loc": (0.5, 0.5, 0.5)},
        7 / 16,
    ),
    # strict: tp 1 (d1 Live_In), fp 2 (Work_For with tail type Loc, Kill),
    # fn 3 (Work_For, Located_In, d2 Live_In)
    #   -> P 1/3, R 1/4, F 2*(1/12)/(7/12) = 2/7
    # Work_For:   tp 0 fp 1 fn 1 -> 0, 0, 0
    # Located_In: tp 0 fp 0 fn 1 -> 0, 0, 0
    # Live_In:    tp 1 fp 0 fn 1 -> 1, 1/2, 2/3
    # Kill:       tp 0 fp 1 fn 0 -> 0, 0, 0   (only predicted, still averaged)
    # macro: P 1/4, R 1/8, F (2/3)/4 = 1/6 (here the F1 of P and R too)
    "relations_strict": (
        "spert_rel",
        (1 / 3, 1 / 4, 2 / 7),
        (1 / 4, 1 / 8, 1 / 6),
        {"Work_For": ZERO, "Located_In": ZERO, "Live_In": (1, 0.5, 2 / 3), "Kill": ZERO},
        None,
    ),
    # boundaries: Work_For is now correct. tp 2, fp 1 (Kill), fn 2 (Located_In, d2 Live_In)
    #   -> P 2/3, R 1/2, F 2*(1/3)/(7/6) = 4/7
    # Work_For 1, 1, 1; Located_In 0, 0, 0; Live_In 1, 1/2, 2/3; Kill 0, 0, 0
    # macro: P 2/4 = 1/2, R 1.5/4 = 3/8, F (1 + 2/3)/4 = 5/12
    # (F1 of macro P and R would be 3/7 = 0.4286, not 5/12 = 0.4167.)
    "relations_boundaries": (
        "spert_rel_bound",
        (2 / 3, 1 / 2, 4 / 7),
        (1 / 2, 3 / 8, 5 / 12),
        {"Work_For": (1, 1, 1), "Located_In": ZERO, "Live_In": (1, 0.5, 2 / 3), "Kill": ZERO},
        3 / 7,
    ),
}


@pytest.mark.parametrize(
    "prefix,micro,macro,per_type,f1_of_macro", list(TWO_DOC_SCORES.values()), ids=list(TWO_DOC_SCORES)
)
def test_two_docs_scores(prefix, micro, macro, per_type, f1_of_macro):
    """Entities, strict relations and relations by boundaries of the two
    docs: micro, macro (the mean of the per-type F1) and per-type scores."""
    scores = score_spert(two_doc_examples())
    assert_mode(scores, prefix, micro=micro, macro=macro, per_type=per_type)
    if f1_of_macro is not None:
        assert scores[f"{prefix}_macro_f"] != pytest.approx(f1_of_macro)


def test_returned_keys_exact():
    scores = score_spert(two_doc_examples())
    expected = set()
    for prefix in ("spert_ent", "spert_rel", "spert_rel_bound"):
        for suffix in ("p", "r", "f", "macro_p", "macro_r", "macro_f", "per_type"):
            expected.add(f"{prefix}_{suffix}")
    assert set(scores) == expected == set(SCORE_KEYS)
    for key, value in scores.items():
        if key.endswith("per_type"):
            assert isinstance(value, dict)
        else:
            assert isinstance(value, float) and 0.0 <= value <= 1.0


def test_tuples_in_relations_like_docbin():
    examples = two_doc_examples()
    for eg in examples:
        for doc in (eg.reference, eg.predicted):
            doc._.relations = tuple(doc._.relations)
    scores = score_spert(examples)
    assert scores["spert_rel_f"] == pytest.approx(2 / 7)
    assert scores["spert_rel_bound_f"] == pytest.approx(4 / 7)


def test_docbin_roundtrip_gives_same_scores():
    from spacy.tokens import DocBin

    examples = two_doc_examples()
    before = score_spert(examples)
    docbin = DocBin(store_user_data=True)
    for eg in examples:
        docbin.add(eg.reference)
        docbin.add(eg.predicted)
    docs = list(DocBin(store_user_data=True).from_bytes(docbin.to_bytes()).get_docs(VOCAB))
    roundtripped = [Example(docs[i + 1], docs[i]) for i in range(0, len(docs), 2)]
    assert score_spert(roundtripped) == before


# ---------------------------------------------------------------------------
# Symmetric relations
# ---------------------------------------------------------------------------


def symmetric_example(label: str) -> Example:
    words = "Acme and Bolt merged .".split()
    ents = [(0, 1, "Org"), (2, 3, "Misc")]
    # Gold stored tail-first, prediction head-first (with the types swapped along).
    gold = make_doc(words, ents, [rel((2, 3), (0, 1), label, "Misc", "Org")])
    pred = make_doc(words, ents, [rel((0, 1), (2, 3), label, "Org", "Misc", score=0.7)])
    return Example(pred, gold)


def test_reversed_symmetric_relation_is_correct():
    scores = score_spert([symmetric_example("Merge")], symmetric_relations=["Merge"])
    for prefix in ("spert_rel", "spert_rel_bound"):
        assert_mode(scores, prefix, (1, 1, 1), (1, 1, 1), {"Merge": (1, 1, 1)})


def test_reversed_non_symmetric_relation_is_fp_and_fn():
    # "Merge" is symmetric, the relation is "Owns": one FP and one FN.
    scores = score_spert([symmetric_example("Owns")], symmetric_relations=["Merge"])
    for prefix in ("spert_rel", "spert_rel_bound"):
        assert_mode(scores, prefix, (0, 0, 0), (0, 0, 0), {"Owns": (0, 0, 0)})


def test_symmetric_duplicates_in_both_directions_count_once():
    words = "Acme and Bolt merged .".split()
    ents = [(0, 1, "Org"), (2, 3, "Org")]
    gold = make_doc(words, ents, [rel((0, 1), (2, 3), "Merge")])
    pred = make_doc(words, ents, [rel((0, 1), (2, 3), "Merge"), rel((2, 3), (0, 1), "Merge")])
    scores = score_spert([Example(pred, gold)], symmetric_relations=("Merge",))
    assert (scores["spert_rel_p"], scores["spert_rel_r"]) == pytest.approx((1.0, 1.0))
    # without the symmetry the reversed copy is a false positive: P 1/2, R 1
    scores = score_spert([Example(pred, gold)])
    assert (scores["spert_rel_p"], scores["spert_rel_r"]) == pytest.approx((0.5, 1.0))


# ---------------------------------------------------------------------------
# Entity types of relation endpoints
# ---------------------------------------------------------------------------


def test_endpoint_types_fall_back_to_span_group_labels():
    words = "Ann met Bob".split()
    gold = make_doc(words, [(0, 1, "Peop"), (2, 3, "Peop")], [rel((0, 1), (2, 3), "Meet")])
    # explicit types that agree with the gold span group: strict match
    pred_ok = make_doc(words, [], [rel((0, 1), (2, 3), "Meet", "Peop", "Peop")])
    # no explicit types, predicted span group says Org for the tail: strict miss
    pred_bad = make_doc(words, [(0, 1, "Peop"), (2, 3, "Org")], [rel((0, 1), (2, 3), "Meet")])
    # explicit types win over the span group
    pred_explicit = make_doc(words, [(0, 1, "Org"), (2, 3, "Org")], [rel((0, 1), (2, 3), "Meet", "Peop", "Peop")])
    ok = score_spert([Example(pred_ok, gold)])
    bad = score_spert([Example(pred_bad, gold)])
    explicit = score_spert([Example(pred_explicit, gold)])
    assert ok["spert_rel_f"] == pytest.approx(1.0)
    assert bad["spert_rel_f"] == pytest.approx(0.0)
    assert bad["spert_rel_bound_f"] == pytest.approx(1.0)
    assert explicit["spert_rel_f"] == pytest.approx(1.0)


def test_endpoint_without_any_type_is_none_on_both_sides():
    words = "Ann met Bob".split()
    # No span groups at all: both endpoint types are None in gold and prediction.
    gold = make_doc(words, rels=[rel((0, 1), (2, 3), "Meet")], spans_key=None)
    pred = make_doc(words, rels=[rel((0, 1), (2, 3), "Meet")], spans_key=None)
    scores = score_spert([Example(pred, gold)])
    assert scores["spert_rel_f"] == pytest.approx(1.0)
    assert scores["spert_ent_per_type"] == {}
    # ... but a typed prediction is a strict miss against an untyped gold relation
    pred_typed = make_doc(words, rels=[rel((0, 1), (2, 3), "Meet", "Peop", "Peop")], spans_key=None)
    scores = score_spert([Example(pred_typed, gold)])
    assert scores["spert_rel_f"] == pytest.approx(0.0)
    assert scores["spert_rel_bound_f"] == pytest.approx(1.0)


def test_custom_spans_key():
    words = "Ann met Bob".split()
    gold = make_doc(words, [(0, 1, "Peop")], spans_key="ents_x")
    pred = make_doc(words, [(0, 1, "Peop"), (2, 3, "Peop")], spans_key="ents_x")
    scores = score_spert([Example(pred, gold)], spans_key="ents_x")
    assert (scores["spert_ent_p"], scores["spert_ent_r"]) == pytest.approx((0.5, 1.0))
    # the default key "sc" is missing on both docs: nothing to score
    assert score_spert([Example(pred, gold)])["spert_ent_f"] == 0.0


# ---------------------------------------------------------------------------
# Empty input, registry, extra kwargs
# ---------------------------------------------------------------------------


def test_empty_examples_give_zero():
    words = "Nothing here .".split()
    for examples in ([], [Example(make_doc(words), make_doc(words))]):
        scores = score_spert(examples)
        assert set(scores) == set(SCORE_KEYS)
        for key in SCORE_KEYS:
            if key.endswith("per_type"):
                assert scores[key] == {}
            else:
                assert scores[key] == 0.0


def test_no_predictions_give_zero_precision_and_recall():
    words = "Ann met Bob".split()
    gold = make_doc(words, [(0, 1, "Peop")], [rel((0, 1), (2, 3), "Meet", "Peop", "Peop")])
    scores = score_spert([Example(make_doc(words), gold)])
    assert_mode(scores, "spert_ent", (0, 0, 0), (0, 0, 0), {"Peop": (0, 0, 0)})
    assert_mode(scores, "spert_rel", (0, 0, 0), (0, 0, 0), {"Meet": (0, 0, 0)})


def test_registered_scorer_accepts_extra_kwargs():
    scorer = spacy.registry.scorers.get("spacy-spert.spert_scorer.v1")()
    assert scorer is score_spert
    examples = [symmetric_example("Merge")]
    # what Pipe.score passes: the component cfg plus labels
    scores = scorer(
        examples,
        labels=["Merge"],
        threshold=0.4,
        spans_key="sc",
        symmetric_relations=["Merge"],
        max_span_width=10,
    )
    assert scores["spert_rel_f"] == pytest.approx(1.0)
    assert scorer(examples, symmetric_relations=None, labels=("Merge",))["spert_rel_f"] == 0.0


# ---------------------------------------------------------------------------
# Differing tokenization
# ---------------------------------------------------------------------------


def acme_doc(split: bool, org_end: int) -> Doc:
    """The doc of "John Smith works for Acme-Corp." with "Acme-Corp" as one
    token or ``split`` into 3: entities John Smith (0-2, Peop) and
    4-``org_end`` (Org), a Work_For relation between them."""
    words = ["John", "Smith", "works", "for"] + (["Acme", "-", "Corp"] if split else ["Acme-Corp"]) + ["."]
    spaces = [True] * 4 + [False] * (len(words) - 4)
    return make_doc(
        words, [(0, 2, "Peop"), (4, org_end, "Org")], [rel((0, 2), (4, org_end), "Work_For")], spaces=spaces
    )


def test_differing_tokenization_maps_offsets():
    # reference splits "Acme-Corp" into 3 tokens, the prediction keeps one token
    gold = acme_doc(split=True, org_end=7)
    pred = acme_doc(split=False, org_end=5)
    assert gold.text == pred.text
    scores = score_spert([Example(pred, gold)])
    # with raw offsets (4,5) != (4,7) would be wrong; mapped, everything is right
    for prefix in ("spert_ent", "spert_rel", "spert_rel_bound"):
        assert scores[f"{prefix}_p"] == pytest.approx(1.0)
        assert scores[f"{prefix}_r"] == pytest.approx(1.0)


def test_unaligned_predicted_span_is_false_positive():
    # reference has "Acme-Corp" as one token, the prediction splits it
    gold = acme_doc(split=False, org_end=5)
    # "Acme" alone (pred 4-5) covers part of a reference token: it does not align,
    # although its raw offsets equal the gold ones.
    pred = acme_doc(split=True, org_end=5)
    assert gold.text == pred.text
    scores = score_spert([Example(pred, gold)])
    # entities: tp 1 (John Smith), fp 1 (Acme), fn 1 (Acme-Corp) -> 1/2, 1/2, 1/2
    assert_mode(
        scores,
        "spert_ent",
        micro=(0.5, 0.5, 0.5),
        macro=(0.5, 0.5, 0.5),  # Peop (1, 1, 1), Org (0, 0, 0)
        per_type={"Peop": (1, 1, 1), "Org": (0, 0, 0)},
    )
    for prefix in ("spert_rel", "spert_rel_bound"):
        assert_mode(scores, prefix, (0, 0, 0), (0, 0, 0), {"Work_For": (0, 0, 0)})
    # predicting the whole "Acme - Corp" (pred 4-7) aligns with the reference token
    pred.spans["sc"] = [Span(pred, 0, 2, label="Peop"), Span(pred, 4, 7, label="Org")]
    pred._.relations = [rel((0, 2), (4, 7), "Work_For")]
    scores = score_spert([Example(pred, gold)])
    assert scores["spert_ent_f"] == pytest.approx(1.0)
    assert scores["spert_rel_f"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# The pure counting functions
# ---------------------------------------------------------------------------


def test_prf_from_counts():
    assert prf_from_counts(0, 0, 0) == (0.0, 0.0, 0.0)
    assert prf_from_counts(0, 3, 0) == (0.0, 0.0, 0.0)
    assert prf_from_counts(2, 2, 0) == pytest.approx((0.5, 1.0, 2 / 3))
    assert prf_from_counts(1, 0, 3) == pytest.approx((1.0, 0.25, 0.4))


def test_prf_from_sets_micro_macro_per_type():
    gold = {"A": {1, 2, 3}, "B": {4}, "C": set()}
    pred = {"A": {1, 2, 9}, "D": {5}}
    micro, macro, per_type = prf_from_sets(gold, pred)
    # A: tp 2 fp 1 fn 1 -> 2/3, 2/3, 2/3; B: 0, 0, 0 (fn 1); D: 0, 0, 0 (fp 1);
    # C has no items in either: not a type of the average.
    # micro: tp 2 fp 2 fn 2 -> 1/2, 1/2, 1/2; macro: (2/3)/3 = 2/9 each
    assert micro == pytest.approx((0.5, 0.5, 0.5))
    assert macro == pytest.approx((2 / 9, 2 / 9, 2 / 9))
    assert set(per_type) == {"A", "B", "D"}
    assert per_type["A"] == prf(2 / 3, 2 / 3, 2 / 3)
    assert prf_from_sets({}, {}) == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), {})


def test_boundaries_key_drops_types():
    assert boundaries_key((0, 2, "Peop", 4, 6, "Org", "Work_For")) == (0, 2, 4, 6, "Work_For")


# ---------------------------------------------------------------------------
# The table of score names
# ---------------------------------------------------------------------------


def test_score_names_table():
    """Results files, tables and the CLI name the scores from this one table."""
    assert [s.name for s in SCORE_NAMES] == [
        "ner_micro",
        "ner_macro",
        "rel_strict_micro",
        "rel_strict_macro",
        "rel_boundaries_micro",
        "rel_boundaries_macro",
    ]
    assert [s.label() for s in SCORE_NAMES] == [
        "NER micro F1",
        "NER macro F1",
        "RE strict micro F1",
        "RE strict macro F1",
        "RE boundaries micro F1",
        "RE boundaries macro F1",
    ]
    assert [s.key() for s in SCORE_NAMES] == [
        "spert_ent_f",
        "spert_ent_macro_f",
        "spert_rel_f",
        "spert_rel_macro_f",
        "spert_rel_bound_f",
        "spert_rel_bound_macro_f",
    ]
    assert score_name("rel_strict_macro").key("p") == "spert_rel_macro_p"
    assert score_name("ner_micro").label("r") == "NER micro R"
    keys = {s.key(m) for s in SCORE_NAMES for m in ("p", "r", "f")}
    assert keys == {k for k in SCORE_KEYS if not k.endswith("per_type")}
    with pytest.raises(KeyError, match="unknown score 'ner'"):
        score_name("ner")
