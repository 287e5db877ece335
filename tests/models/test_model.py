"""The vectorized pieces of the model and the sampler against naive versions."""

import itertools
import warnings

import numpy
import pytest
import torch
from conftest import tiny_head

from spacy_spert.models import tuning
from spacy_spert.models.pairing import pairs_within_groups, top_per_group
from spacy_spert.models.pytorch.range_max import RangeMax
from spacy_spert.models.sampling import max_iou, sample_doc
from spacy_spert.models.suggesters import DocCandidates, enumerate_spans


def random_alignment(rng, n_tokens, n_rows):
    """Each token aligns to 0..3 random rows (0: a whitespace or cut token)."""
    rows, tokens = [], []
    for t in range(n_tokens):
        k = rng.integers(0, 4) if t % 5 else 1  # every 5th token has exactly one
        chosen = rng.choice(n_rows, size=k, replace=False)
        rows.extend(chosen)
        tokens.extend([t] * k)
    return numpy.asarray(rows, dtype="int64"), numpy.asarray(tokens, dtype="int64")


def naive_pool(hidden, rows, tokens, start, end):
    picked = [r for r, t in zip(rows, tokens) if start <= t < end]
    if not picked or end <= start:
        return numpy.zeros(hidden.shape[1])
    return hidden[picked].max(axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["inference", "host", "training"])
def test_range_max_matches_naive_pooling(seed, mode):
    """Every range, also empty, reversed and without wordpieces, pools as the
    naive max does: at inference with torch indices, with numpy indices
    (rows computed on the host) and in training (with autograd)."""
    rng = numpy.random.default_rng(seed)
    n_tokens, n_rows, width = 37, 60, 8
    hidden = torch.tensor(rng.normal(size=(n_rows, width)), requires_grad=mode == "training")
    rows, tokens = random_alignment(rng, n_tokens, n_rows)
    ranges = [(s, e) for s in range(n_tokens + 1) for e in range(n_tokens + 1)]  # includes empty and reversed
    starts = numpy.array([r[0] for r in ranges])
    ends = numpy.array([r[1] for r in ranges])
    if mode == "host":
        pool = RangeMax(hidden, rows, tokens, n_tokens, n_tokens)
        got = pool(starts, ends)
    else:
        pool = RangeMax(hidden, torch.tensor(rows), torch.tensor(tokens), n_tokens, n_tokens)
        got = pool(torch.tensor(starts), torch.tensor(ends))
    expected = numpy.stack([naive_pool(hidden.detach().numpy(), rows, tokens, s, e) for s, e in ranges])
    numpy.testing.assert_allclose(got.detach().numpy(), expected)


def test_range_max_gradient_goes_to_the_max_wordpiece():
    hidden = torch.tensor([[1.0, 5.0], [3.0, 2.0], [0.0, 9.0]], requires_grad=True)
    rows = torch.tensor([0, 1, 2])
    tokens = torch.tensor([0, 1, 2])
    pool = RangeMax(hidden, rows, tokens, 3, 3)
    out = pool(torch.tensor([0, 0]), torch.tensor([2, 3]))  # [0, 2) and [0, 3)
    out.sum().backward()
    # [0,2): max col0 = row1, col1 = row0; [0,3): col0 = row1, col1 = row2
    assert hidden.grad.tolist() == [[0.0, 1.0], [2.0, 0.0], [0.0, 1.0]]


def test_pairs_within_groups_matches_naive():
    segments = numpy.array([0, 0, 1, 1, 1, 0, 2, 1, 3])
    kept = numpy.array([0, 2, 3, 5, 6, 7, 8])
    heads, tails = pairs_within_groups(kept, segments)
    got = sorted(zip(heads.tolist(), tails.tolist()))
    expected = sorted((a, b) for a, b in itertools.permutations(kept.tolist(), 2) if segments[a] == segments[b])
    assert got == expected
    empty = pairs_within_groups(numpy.array([4]), segments)
    assert len(empty[0]) == 0 and len(empty[1]) == 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("levels_by", ["numpy", "torch"])
def test_range_max_at_inference_when_every_token_has_wordpieces(seed, levels_by, monkeypatch):
    """Inference (in-place table, its levels written by numpy for a short
    block on the CPU or by torch, no check of tokens without wordpieces,
    ``nonempty`` spans without any check) pools as the naive max does."""
    monkeypatch.setattr(tuning, "NUMPY_LEVELS_MAX_VALUES", 10**9 if levels_by == "numpy" else 0)
    maximum = {"numpy": numpy.maximum, "torch": torch.maximum}[levels_by]
    calls = []
    monkeypatch.setattr(
        {"numpy": numpy, "torch": torch}[levels_by], "maximum", lambda *a, **k: calls.append(1) or maximum(*a, **k)
    )
    rng = numpy.random.default_rng(seed)
    n_tokens, width = 23, 6
    lengths = rng.integers(1, 4, size=n_tokens)
    tokens = numpy.repeat(numpy.arange(n_tokens), lengths)
    rows = numpy.arange(len(tokens))
    hidden = rng.normal(size=(len(tokens), width)).astype("float32")
    spans = [(s, e) for s in range(n_tokens) for e in range(s + 1, min(n_tokens, s + 10) + 1)]
    ranges = [(s, e) for s in range(n_tokens + 1) for e in range(n_tokens + 1)]
    with torch.inference_mode():
        pool = RangeMax(
            torch.tensor(hidden), torch.tensor(rows), torch.tensor(tokens), n_tokens, n_tokens, all_covered=True
        )
        got_spans = pool(torch.tensor([s for s, _ in spans]), torch.tensor([e for _, e in spans]), nonempty=True)
        got_ranges = pool(torch.tensor([s for s, _ in ranges]), torch.tensor([e for _, e in ranges]))
    assert len(calls) >= 4  # the levels (2**k <= 23) are written by the one asked for
    for got, want in ((got_spans, spans), (got_ranges, ranges)):
        expected = numpy.stack([naive_pool(hidden, rows, tokens, s, e) for s, e in want])
        numpy.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_pairs_within_groups_dense_and_general_paths_agree(monkeypatch):
    """The dense path (few kept spans) gives the general path's pairs in the
    same order, for kept spans ordered by group (as candidates are)."""
    groups = numpy.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])
    kept = numpy.array([0, 2, 1, 3, 4, 5, 9, 6, 8, 10])  # by group; by score within a group
    dense = pairs_within_groups(kept, groups)
    monkeypatch.setattr(tuning, "DENSE_PAIRS_MAX", 0)
    general = pairs_within_groups(kept, groups)
    assert dense[0].tolist() == general[0].tolist() and dense[1].tolist() == general[1].tolist()
    assert len(dense[0]) == 3 * 2 + 2 * 1 + 3 * 2  # groups 0, 1 and 3 (2 and 4 have one span)


def test_pairs_within_groups_of_one_group_are_every_ordered_pair():
    """The kept spans of one group (a sentence) pair as the dense path pairs
    them: every ordered pair, by head, then tail; the same again on a second
    call (the pairs of a count are cached) and for another count."""
    groups = numpy.full((9,), 4)
    for kept in (numpy.array([7, 1, 4, 8]), numpy.array([3, 0, 5, 2]), numpy.array([6, 2, 1])):
        for _ in range(2):
            heads, tails = pairs_within_groups(kept, groups)
            assert list(zip(heads.tolist(), tails.tolist())) == [
                (a, b) for a in kept.tolist() for b in kept.tolist() if a != b
            ]


def test_top_per_group():
    segments = numpy.array([0, 0, 0, 1, 1, 1])
    kept = numpy.array([0, 1, 2, 3, 4, 5])
    scores = numpy.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    chosen = top_per_group(kept, scores, segments, numpy.array([2, 1]))
    assert sorted(chosen.tolist()) == [1, 2, 5]


def test_enumerate_spans():
    starts, ends = enumerate_spans(4, 2)
    assert list(zip(starts.tolist(), ends.tolist())) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]
    seg = numpy.array([0, 0, 1, 1])
    skip = numpy.array([False, False, True, False])
    starts, ends = enumerate_spans(4, 3, seg, skip)
    assert list(zip(starts.tolist(), ends.tolist())) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    assert len(enumerate_spans(0, 10)[0]) == 0
    assert len(enumerate_spans(120, 10)[0]) == sum(min(10, 120 - i) for i in range(120))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enumerate_spans_matches_naive(seed):
    """Every span of 1..max_width tokens inside one scope that neither starts
    nor ends on a skipped token, ordered by start, then width."""
    rng = numpy.random.default_rng(seed)
    n, width = 23, 5
    scopes = numpy.cumsum(rng.random(n) < 0.2)
    skip = rng.random(n) < 0.2
    expected = [
        (s, e)
        for s in range(n)
        for e in range(s + 1, min(n, s + width) + 1)
        if scopes[s] == scopes[e - 1] and not skip[s] and not skip[e - 1]
    ]
    starts, ends = enumerate_spans(n, width, scopes, skip)
    assert list(zip(starts.tolist(), ends.tolist())) == expected
    assert starts.dtype == ends.dtype == numpy.int64


def test_max_iou():
    iou = max_iou(numpy.array([0, 2, 5, 8]), numpy.array([2, 4, 6, 9]), numpy.array([0, 3]), numpy.array([2, 6]))
    # [0,2) = gold; [2,4) vs [3,6): 1/4; [5,6) inside [3,6): 1/3; [8,9): 0
    numpy.testing.assert_allclose(iou, [1.0, 0.25, 1 / 3, 0.0], rtol=1e-6)


def test_sample_doc_follows_spert():
    rng = numpy.random.default_rng(0)
    entities = [(0, 2, 1), (3, 4, 2), (5, 17, 1), (6, 7, 3)]  # one wider than max_width
    relations = [(0, 1, 0), (0, 1, 2), (2, 3, 1), (1, 3, 1)]  # relation 1 is symmetric
    sample = sample_doc(
        DocCandidates.all_spans(20, 10),
        entities,
        relations,
        n_relation_labels=3,
        neg_entity_count=100,
        neg_relation_count=100,
        rng=rng,
        symmetric={1},
    )
    n_candidates = sum(min(10, 20 - i) for i in range(20))
    gold = {(s, e) for s, e, _ in entities}
    spans = list(zip(sample.starts.tolist(), sample.ends.tolist()))
    assert spans[:4] == [(s, e) for s, e, _ in entities]
    assert sample.entity_labels[:4].tolist() == [1, 2, 1, 3]
    assert (sample.entity_labels[4:] == 0).all()
    assert len(spans) == 4 + min(100, n_candidates - 3)  # (5, 17) is not a candidate
    assert not gold & set(spans[4:]) and len(set(spans)) == len(spans)
    pairs = list(zip(sample.pair_heads.tolist(), sample.pair_tails.tolist()))
    rows = {p: sample.relation_labels[i].tolist() for i, p in enumerate(pairs)}
    assert rows[(0, 1)] == [1.0, 0.0, 1.0]  # multi-label
    assert rows[(2, 3)] == [0.0, 1.0, 0.0]
    # strong negatives: all other ordered pairs of gold entities, except the
    # reverse of a symmetric gold pair
    negatives = {p for p, r in rows.items() if sum(r) == 0}
    expected = {(a, b) for a in range(4) for b in range(4) if a != b} - {(0, 1), (2, 3), (1, 3), (3, 2), (3, 1)}
    assert negatives == expected
    assert sample.entity_iou[:4].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_sample_doc_strong_negatives_stay_in_pairing_groups():
    """Inference pairs only spans that start in one pairing group, so the
    strong negatives are drawn the same way; gold relations across groups
    stay positives."""
    entities = [(0, 1, 1), (2, 3, 1), (5, 6, 2), (7, 8, 2)]
    relations = [(0, 2, 0)]  # across the two groups
    candidates = DocCandidates.all_spans(10, 3, max_group_length=5)
    assert candidates.token_groups.tolist() == [0] * 5 + [1] * 5
    sample = sample_doc(
        candidates,
        entities,
        relations,
        n_relation_labels=1,
        neg_entity_count=0,
        neg_relation_count=100,
        rng=numpy.random.default_rng(0),
    )
    pairs = set(zip(sample.pair_heads.tolist(), sample.pair_tails.tolist()))
    assert pairs == {(0, 2), (0, 1), (1, 0), (2, 3), (3, 2)}
    assert sample.relation_labels.sum(axis=1).tolist()[0] == 1.0


def test_sample_doc_caps_and_resamples():
    entities = [(i, i + 1, 1) for i in range(15)]
    kwargs = dict(n_relation_labels=1, neg_entity_count=7, neg_relation_count=5)
    candidates = DocCandidates.all_spans(30, 10)
    a = sample_doc(candidates, entities, [], rng=numpy.random.default_rng(1), **kwargs)
    b = sample_doc(candidates, entities, [], rng=numpy.random.default_rng(2), **kwargs)
    assert len(a.starts) == 15 + 7 and len(a.pair_heads) == 5
    assert (a.relation_labels == 0).all()
    assert a.starts[15:].tolist() != b.starts[15:].tolist() or a.ends[15:].tolist() != b.ends[15:].tolist()


class _KeepAll:
    """An objective that keeps every span (top 10 per group form pairs)."""

    def decode_entities(self, logits, threshold):
        return numpy.ones(len(logits), dtype="int64"), logits[:, 1]


@pytest.mark.parametrize("mt,logits_in_relation", [(False, False), (True, True), (True, False)])
@pytest.mark.parametrize("by_width", [False, True])
@pytest.mark.parametrize("uncovered", [None, "alone", "inside"])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_factorised_inference_matches_training_computation(
    mt, logits_in_relation, by_width, uncovered, chunk, monkeypatch
):
    """At inference each classifier is computed part by part (per window,
    per width, per kept span; span pools gathered per span or, for long
    blocks, width by width; the relations' span pools read again from the
    table or, when the spans fit one chunk, from the entity stage's pools);
    it must equal the training computation on the concatenated inputs
    (without dropout), for every span and every pair."""
    import spacy_spert.models.pytorch.classifiers as classifiers

    monkeypatch.setattr(tuning, "WIDTH_SLICES_MIN_TOKENS", 0 if by_width else 10**9)
    calls = []
    by_width_part = classifiers._span_part_by_width
    monkeypatch.setattr(classifiers, "_span_part_by_width", lambda *a: calls.append(1) or by_width_part(*a))

    head = tiny_head(weight_std=0.5, mt=mt, entity_logits_in_relation=logits_in_relation, pair_batch_size=chunk)
    n_tokens = 12
    hidden = torch.randn(20, 16)
    # a token without wordpieces: none; the last one, a span of its own
    # ("alone"); token 5, which spans may only hold inside ("inside", as a
    # whitespace token)
    lengths = numpy.array([1, 2] * 6)
    lengths[{None: [], "alone": [11], "inside": [5]}[uncovered]] = 0
    align_tokens = numpy.repeat(numpy.arange(n_tokens), lengths)
    align_rows = numpy.arange(1, len(align_tokens) + 1)
    cls_rows = numpy.array([0, 10])  # two windows
    token_windows = numpy.array([0] * 6 + [1] * 6)
    starts, ends = enumerate_spans(n_tokens, 4, skip=numpy.arange(n_tokens) == 5 if uncovered == "inside" else None)
    groups = (starts >= 6).astype("int64")
    inputs = dict(
        align_rows=align_rows,
        align_tokens=align_tokens,
        n_tokens=n_tokens,
        max_range=n_tokens,
        span_starts=starts,
        span_ends=ends,
    )
    with torch.no_grad():
        out = head.predict(
            hidden,
            cls_rows=cls_rows,
            token_windows=token_windows,
            span_groups=groups,
            blocks=[(0, len(starts), 0, n_tokens)],
            objective=_KeepAll(),
            threshold=0.0,
            all_covered=uncovered is None,
            **inputs,
        )
        ent_train, rel_train = head(
            hidden,
            token_cls_rows=torch.tensor(cls_rows[token_windows]),
            pair_heads=torch.tensor(out.pair_heads),
            pair_tails=torch.tensor(out.pair_tails),
            **{k: torch.tensor(v) if isinstance(v, numpy.ndarray) else v for k, v in inputs.items()},
        )
    assert len(out.pair_heads) > 20 and (groups[out.pair_heads] == groups[out.pair_tails]).all()
    # by width only when every span holds a token with wordpieces (the
    # uncovered last token alone is a span that must pool to zeros)
    assert len(calls) == (1 if by_width and uncovered != "alone" else 0)
    torch.testing.assert_close(out.entity_logits, ent_train, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.relation_logits, rel_train, rtol=1e-5, atol=1e-5)


def test_head_loads_weights_saved_before_the_classifier_modules():
    """Pipelines saved by spacy-spert 0.1.0 name the classifier weights
    entity_classifier.weight, entity_identifier.bias, ...: they still load."""
    saved = tiny_head(mt=True, pair_batch_size=7)
    legacy = {}
    for key, value in saved.state_dict().items():
        key = key.replace("_classifier.identifier.", "_identifier.").replace("_classifier.classes.", "_classifier.")
        legacy[key] = value
    assert "entity_identifier.weight" in legacy and "relation_classifier.weight" in legacy
    loaded = tiny_head(seed=1, mt=True, pair_batch_size=7)
    loaded.load_state_dict(legacy)
    for (name, a), (_, b) in zip(saved.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_spert_objective_decodes_on_the_host_as_softmax_and_sigmoid():
    """Decoding takes numpy logits: the label and probability of the softmax,
    the sigmoid per relation type, without overflow at extreme logits."""
    from spacy_spert.models.objectives import SpERTObjective

    objective = SpERTObjective()
    rng = numpy.random.default_rng(0)
    ent = rng.normal(scale=5.0, size=(7, 4)).astype("float32")
    ent[0] = [200.0, -200.0, 0.0, 0.0]
    rel = rng.normal(scale=5.0, size=(5, 3)).astype("float32")
    rel[0] = [200.0, -200.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels, scores = objective.decode_entities(ent, 0.5)
        rel_scores = objective.decode_relations(rel, 0.5)
    probs = torch.softmax(torch.tensor(ent), dim=1)
    assert labels.tolist() == probs.argmax(dim=1).tolist()
    numpy.testing.assert_allclose(scores, probs.max(dim=1).values.numpy(), rtol=1e-6)
    numpy.testing.assert_allclose(rel_scores, torch.sigmoid(torch.tensor(rel)).numpy(), rtol=1e-6, atol=1e-30)
    assert rel_scores.dtype == numpy.float32


def test_candidates_of_an_empty_batch():
    from spacy_spert.models.suggesters import SpanCandidates

    batch = SpanCandidates()([])
    assert len(batch.starts) == len(batch.ends) == len(batch.groups) == 0
    assert batch.doc_offsets.tolist() == [0] and batch.blocks(4096) == []


def test_take_rows_is_a_view_for_one_run_of_rows_and_a_gather_otherwise():
    """A doc's wordpieces in one window are one increasing run of rows: the
    range-max table reads them as a slice. Anything else is gathered: repeats
    with the same first and last row, gaps, an unordered run, torch indices."""
    from spacy_spert.models.pytorch.tensors import take_rows

    x = torch.arange(40.0).reshape(10, 4)
    for rows, is_view in [
        ([2, 3, 4, 5], True),
        ([1, 2, 2, 4], False),  # last - first + 1 == len, but not one run
        ([2, 4, 5], False),
        ([5, 4, 3], False),
        ([3], False),
    ]:
        got = take_rows(x, numpy.array(rows))
        assert torch.equal(got, x[rows])
        shares_memory = got.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        assert shares_memory == is_view, rows
    assert torch.equal(take_rows(x, torch.tensor([2, 3, 4])), x[2:5])


@pytest.mark.parametrize("all_covered", [True, False])
def test_range_max_reads_one_run_of_wordpieces_as_a_slice(all_covered):
    """Sentence-like alignment ([CLS] at row 0, each token's wordpieces next
    to each other, one after the other): pools as the naive max."""
    rng = numpy.random.default_rng(0)
    lengths = rng.integers(1, 4, size=15)
    if not all_covered:
        lengths[[4, 9]] = 0
    tokens = numpy.repeat(numpy.arange(15), lengths)
    rows = numpy.arange(1, len(tokens) + 1)
    hidden = torch.tensor(rng.normal(size=(len(rows) + 2, 6)))
    with torch.inference_mode():
        pool = RangeMax(hidden, rows, tokens, 15, 15, all_covered=all_covered)
        starts, ends = numpy.triu_indices(16, k=1)
        got = pool(starts, ends)
    expected = numpy.stack([naive_pool(hidden.numpy(), rows, tokens, s, e) for s, e in zip(starts, ends)])
    numpy.testing.assert_allclose(got.numpy(), expected)


def test_enumerate_spans_of_plain_sentences_around_the_cache_bound():
    """Docs without scopes or skipped tokens (an all-False skip mask is
    none), up to and past SPAN_GRID_CACHE_TOKENS long: every span of
    1..max_width tokens, ordered by start, then width; the same on every
    call."""
    for n in (1, 7, tuning.SPAN_GRID_CACHE_TOKENS, tuning.SPAN_GRID_CACHE_TOKENS + 1):
        expected = [(s, e) for s in range(n) for e in range(s + 1, min(n, s + 4) + 1)]
        for skip in (None, numpy.zeros(n, dtype=bool), None):
            starts, ends = enumerate_spans(n, 4, skip=skip)
            assert list(zip(starts.tolist(), ends.tolist())) == expected
            assert starts.dtype == ends.dtype == numpy.int64


def test_suggester_offsets_the_spans_and_groups_of_later_docs():
    """A batch's first doc keeps its spans; the next docs' spans and groups
    are moved by their offsets, and a later batch of the first doc alone
    gets its spans unchanged."""
    import spacy

    from spacy_spert.models.suggesters import SpanCandidates

    nlp = spacy.blank("en")
    docs = [nlp("a b c d"), nlp("e f")]
    suggester = SpanCandidates(max_width=3, scope="doc")
    one = suggester(docs[:1])
    first_starts = [0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert one.starts.tolist() == first_starts and one.groups.tolist() == [0] * 9
    both = suggester(docs)
    assert both.starts.tolist() == first_starts + [4, 4, 5]
    assert both.ends.tolist() == [1, 2, 3, 2, 3, 4, 3, 4, 4, 5, 6, 6]
    assert both.groups.tolist() == [0] * 9 + [1] * 3 and both.doc_offsets.tolist() == [0, 4, 6]
    assert suggester(docs[:1]).starts.tolist() == first_starts


def test_doc_offsets():
    import spacy

    from spacy_spert.models.suggesters import doc_offsets

    nlp = spacy.blank("en")
    docs = [nlp("a b c"), nlp(""), nlp("d e")]
    assert doc_offsets(docs).tolist() == [0, 3, 3, 5]
    assert doc_offsets(docs[:1]).tolist() == [0, 3] and doc_offsets([]).tolist() == [0]
    assert doc_offsets(docs).dtype == numpy.int64 and doc_offsets(docs[:1]).dtype == numpy.int64
