"""Raw text of any length: sentence windows, pairing segments, truncation."""

import warnings

import numpy
import pytest
import spacy
from conftest import TRAIN_DATA, head_of, make_nlp, overfit, train_examples
from spacy.util import fix_random_seed

from spacy_spert.models.pairing import pairing_groups
from spacy_spert.models.suggesters import Candidates, scope_ids
from spacy_spert.relations import relation_key
from spacy_spert.transformer.span_getters import SentenceWindows

SENTENCES = [" ".join(words) for words, _, _ in TRAIN_DATA if words[-1] == "."]


def window_bounds(windows):
    return [(w.start, w.end) for w in windows]


@pytest.fixture(scope="module")
def trained_nlp(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window="sentence")
    overfit(nlp)
    return nlp


def test_sentence_windows_without_sentences_are_strided():
    doc = spacy.blank("en").make_doc(" ".join(["w"] * 300))
    assert window_bounds(SentenceWindows(128, 96).doc_windows(doc)) == [(0, 128), (96, 224), (192, 300)]
    assert window_bounds(SentenceWindows(300, 96).doc_windows(doc)) == [(0, 300)]
    assert SentenceWindows(128, 96)([spacy.blank("en").make_doc("")]) == [[]]


def test_sentence_windows_follow_sentences():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("a b c d .  " + " ".join(["w"] * 199) + " .")
    assert [(s.start, s.end) for s in doc.sents] == [(0, 5), (5, 206)]
    assert window_bounds(SentenceWindows(128, 96).doc_windows(doc)) == [(0, 5), (5, 133), (101, 206)]


@pytest.mark.parametrize("n_tokens", [1, 127, 128, 129, 1000])
def test_sentence_windows_cover_every_token(n_tokens):
    doc = spacy.blank("en").make_doc(" ".join(["w"] * n_tokens))
    covered = numpy.zeros(n_tokens, dtype=int)
    for start, end in window_bounds(SentenceWindows(16, 12).doc_windows(doc)):
        assert end - start <= 16
        covered[start:end] += 1
    assert covered.min() == 1 and covered.max() <= 2


def test_sentence_windows_reject_bad_settings():
    with pytest.raises(ValueError, match="stride"):
        SentenceWindows(16, 17)
    with pytest.raises(ValueError, match="max_tokens"):
        SentenceWindows(0, 1)


def test_pairing_groups_cut_long_scopes():
    assert pairing_groups(10, None, 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert pairing_groups(10, numpy.zeros(10, dtype="int64"), 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    sentences = numpy.asarray([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    assert pairing_groups(10, sentences, 4).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert pairing_groups(10, sentences, 0).tolist() == sentences.tolist()
    assert pairing_groups(3, None, 0).tolist() == [0, 0, 0]


def relations_as_tokens(doc):
    return sorted(relation_key(r) for r in doc._.relations)


def test_many_sentences_give_the_answers_of_each_sentence_alone(trained_nlp):
    """With a sentencizer, a doc of many sentences gets one window per sentence
    and candidates within a sentence: exactly what each sentence gets alone."""
    nlp = trained_nlp
    alone = [nlp(text) for text in SENTENCES]
    assert any(doc._.relations for doc in alone)
    with nlp.select_pipes(enable=["transformer", "spert"]):
        nlp.add_pipe("sentencizer", first=True)
        try:
            doc = nlp(" ".join(SENTENCES * 3))
        finally:
            nlp.remove_pipe("sentencizer")
    expected_ents, expected_rels, offset = [], [], 0
    for _ in range(3):
        for sent in alone:
            expected_ents += [(s.start + offset, s.end + offset, s.label_) for s in sent.spans["sc"]]
            expected_rels += [
                (h0 + offset, h1 + offset, t0 + offset, t1 + offset, label)
                for h0, h1, t0, t1, label in relations_as_tokens(sent)
            ]
            offset += len(sent)
    assert sorted((s.start, s.end, s.label_) for s in doc.spans["sc"]) == sorted(expected_ents)
    assert relations_as_tokens(doc) == sorted(expected_rels)


def test_twenty_thousand_tokens_without_punctuation(trained_nlp):
    """Raw text with no sentence boundaries: strided windows, entities
    anywhere, relation pairs only among spans that start in one 128-token piece."""
    words = []
    while len(words) < 20000:
        for text in SENTENCES:
            words += [w for w in text.split() if w not in {".", ","}]
    doc = trained_nlp.make_doc(" ".join(words[:20000]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no window may be truncated
        doc = trained_nlp(doc)
    assert len(doc) == 20000
    assert doc._.trf_data.model_output.last_hidden_state.shape[0] == 208  # ceil((20000 - 128) / 96) + 1
    ents = doc.spans["sc"]
    assert len(ents) > 1000 and ents[len(ents) - 1].start > 19000
    assert len(doc._.relations) > 100
    pieces = pairing_groups(len(doc), scope_ids(doc, "sentence"), 128)
    for head_start, _, tail_start, _, _ in relations_as_tokens(doc):
        assert pieces[head_start] == pieces[tail_start]


def test_one_long_sentence_and_a_short_one(trained_nlp):
    """An 801-token sentence is cut into windows; the next sentence is its own
    window, and no relation crosses the sentence boundary."""
    nlp = trained_nlp
    long_sentence = " ".join([SENTENCES[0][:-2]] * 100)
    text = long_sentence + " . " + SENTENCES[1]
    with nlp.select_pipes(enable=["transformer", "spert"]):
        nlp.add_pipe("sentencizer", first=True)
        try:
            doc = nlp(text)
        finally:
            nlp.remove_pipe("sentencizer")
    sents = list(doc.sents)
    assert len(sents) == 2 and len(sents[0]) == 801
    # ceil((801 - 128) / 96) + 1 = 9 windows, and one for the short sentence
    assert doc._.trf_data.model_output.last_hidden_state.shape[0] == 10
    boundary = sents[1].start
    for head_start, _, tail_start, _, _ in relations_as_tokens(doc):
        assert (head_start < boundary) == (tail_start < boundary)
    last = nlp(SENTENCES[1])
    assert [(s.start + boundary, s.end + boundary, s.label_) for s in last.spans["sc"]] == [
        (s.start, s.end, s.label_) for s in doc.spans["sc"] if s.start >= boundary
    ]


def test_doc_spans_warns_when_a_doc_is_truncated(tiny_bert):
    """One window per doc cannot hold a 700-token doc: the transformer
    truncates it, and spert says so and how to fix it, instead of failing."""
    nlp = make_nlp(tiny_bert, window="doc")
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    with pytest.warns(UserWarning, match="got no wordpiece.*sentence_windows"):
        doc = nlp(" ".join(["the"] * 700))
    assert len(doc) == 700


def test_chunked_scoring_gives_the_same_output(trained_nlp):
    """Spans and pairs scored in chunks of 5 (features of kept spans computed
    again) give the same entities, relations and scores as in one chunk."""
    head = head_of(trained_nlp)
    text = " ".join(SENTENCES * 2)
    one_chunk = trained_nlp(text)
    assert len(one_chunk) * 10 < head.pair_batch_size  # at most 10 candidates per token: one chunk
    head.pair_batch_size = 5
    try:
        chunked = trained_nlp(text)
    finally:
        head.pair_batch_size = 4096
    assert relations_as_tokens(chunked) == relations_as_tokens(one_chunk) != []
    assert [(s.start, s.end, s.label_) for s in chunked.spans["sc"]] == [
        (s.start, s.end, s.label_) for s in one_chunk.spans["sc"]
    ]
    numpy.testing.assert_allclose(chunked.spans["sc"].attrs["scores"], one_chunk.spans["sc"].attrs["scores"], rtol=1e-5)
    for a, b in zip(sorted(chunked._.relations, key=relation_key), sorted(one_chunk._.relations, key=relation_key)):
        assert a["score"] == pytest.approx(b["score"], rel=1e-5)


def test_blocks_group_whole_pairing_groups():
    batch = Candidates(
        doc_offsets=numpy.asarray([0, 30]),
        starts=numpy.asarray([0, 1, 9, 10, 12, 20, 25]),
        ends=numpy.asarray([2, 11, 10, 13, 14, 22, 26]),
        groups=numpy.asarray([0, 0, 0, 1, 1, 2, 2]),
    )
    # segment 0 covers tokens 0-11, 1 covers 10-14, 2 covers 20-26
    assert batch.blocks(14) == [(0, 5, 0, 14), (5, 7, 20, 26)]
    assert batch.blocks(5) == [(0, 3, 0, 11), (3, 5, 10, 14), (5, 7, 20, 26)]
    assert batch.blocks(100) == [(0, 7, 0, 26)]
    assert batch.max_range() == 11
    one = Candidates(numpy.asarray([0, 30]), batch.starts, batch.ends, numpy.zeros(7, dtype="int64"))
    assert one.blocks(100) == [(0, 7, 0, 26)] and one.max_range() == 26
    unordered = Candidates(numpy.asarray([0, 30]), batch.starts, batch.ends, numpy.asarray([0, 0, 1, 1, 0, 2, 2]))
    with pytest.raises(ValueError, match="ordered by pairing group"):
        unordered.blocks(100)


def test_small_blocks_give_the_same_output(trained_nlp, monkeypatch):
    """The head run one block of ~16 tokens at a time (and a 128-token piece
    split into 32-token pieces) predicts what it predicts in one block."""
    from spacy_spert.models import tuning

    spert = trained_nlp.get_pipe("spert")
    monkeypatch.setattr(spert.suggester, "max_group_length", 32)
    text = " ".join(SENTENCES * 4)
    one_block = trained_nlp(text)
    monkeypatch.setattr(tuning, "INFERENCE_BLOCK_TOKENS", 16)
    blocks = trained_nlp(text)
    assert relations_as_tokens(blocks) == relations_as_tokens(one_block) != []
    assert [(s.start, s.end, s.label_) for s in blocks.spans["sc"]] == [
        (s.start, s.end, s.label_) for s in one_block.spans["sc"]
    ]
    numpy.testing.assert_allclose(blocks.spans["sc"].attrs["scores"], one_block.spans["sc"].attrs["scores"], rtol=1e-5)


def test_two_processes_give_the_same_output(trained_nlp):
    """nlp.pipe(n_process=2) with sentence windows (the getter is pickled to
    the workers) gives what one process gives."""
    texts = [" ".join(SENTENCES * k) for k in range(1, 5)] + [SENTENCES[0]] * 4
    one = [
        (relations_as_tokens(d), [(s.start, s.end, s.label_) for s in d.spans["sc"]]) for d in trained_nlp.pipe(texts)
    ]
    two = [
        (relations_as_tokens(d), [(s.start, s.end, s.label_) for s in d.spans["sc"]])
        for d in trained_nlp.pipe(texts, n_process=2, batch_size=2)
    ]
    assert two == one and any(rels for rels, _ in one)
