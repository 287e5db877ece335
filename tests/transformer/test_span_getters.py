"""Span getters bounded in wordpieces (``spacy-spert.sentence_windows.v2``):
with a character-level tokenizer every word splits into many wordpieces, so
windows of 128 tokens overflow the encoder at once."""

import itertools
import pickle
import string
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy
import pytest
import spacy
from conftest import SPECIAL_TOKENS, TRAIN_DATA, make_doc, make_nlp, overfit, save_tiny_bert, train_examples
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_spert.transformer.span_getters import SentenceWindows, WordpieceWindows, bind_wordpiece_windows

# The character-level encoder's maximum length, [CLS] and [SEP] included.
CHAR_MAX_LENGTH = 128
URLS = [
    "http://example.com/path/to/page?id=12345",
    "user_name_42@mail.example.org",
    "https://docs.example.net/v2/api#section-7",
]
# spaCy keeps a URL as one token; BERT's pre-tokenizer splits it at every
# punctuation character, so it is about 1,000 wordpieces with any BERT vocab.
LONG_URL = "http://example.com/" + "/".join(["ab"] * 330)


@pytest.fixture(scope="session")
def char_bert(tmp_path_factory) -> Path:
    """A tiny random BERT whose vocab has single characters only (and their
    ## continuations): every word is as many wordpieces as it has characters."""
    chars = string.ascii_lowercase + string.digits
    vocab = SPECIAL_TOKENS + list(chars) + list(".,;:/-_?=&%#@()'\"!") + ["##" + c for c in chars]
    path = tmp_path_factory.mktemp("char_bert")
    return save_tiny_bert(path, vocab, max_positions=CHAR_MAX_LENGTH, model_max_length=CHAR_MAX_LENGTH)


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def bounds(windows):
    return [(w.start, w.end) for w in windows]


def noisy_text(n_urls: int, seed: int = 0) -> str:
    rng = numpy.random.default_rng(seed)
    words = []
    for i in range(n_urls):
        words += ["see", URLS[int(rng.integers(len(URLS)))], "and"]
        if i % 7 == 3:
            words += " ".join(TRAIN_DATA[0][0]).split()
    return " ".join(words)


def test_v2_without_a_tokenizer_is_v1():
    """Unbound (no transformer yet), v2 cuts the windows of v1."""
    nlp = spacy.blank("en")
    for n in (1, 127, 128, 129, 1000):
        doc = nlp.make_doc(" ".join(["w"] * n))
        assert bounds(WordpieceWindows(16, 12).doc_windows(doc)) == bounds(SentenceWindows(16, 12).doc_windows(doc))


def test_v2_is_v1_where_the_wordpieces_fit(tiny_bert):
    """With the word-level tiny BERT no window comes near 512 wordpieces:
    exactly v1's windows, with and without sentence boundaries."""
    v2 = WordpieceWindows(128, 96)
    v2.bind(SimpleNamespace(tokenizer=tokenizer_of(tiny_bert)))
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    texts = [" ".join(["the"] * 300), "a b c d .  " + " ".join(["paris"] * 199) + " .", ""]
    for doc in [nlp(text) for text in texts] + [nlp.make_doc(text) for text in texts]:
        assert bounds(v2.doc_windows(doc)) == bounds(SentenceWindows(128, 96).doc_windows(doc))


@pytest.mark.parametrize("n_urls", [4, 20, 200])
def test_windows_fit_the_encoder_in_wordpieces(char_bert, n_urls):
    """Every window, tokenized as the transformer tokenizes it (its text, with
    [CLS] and [SEP]), fits the encoder; the windows cover every token, and
    each reaches past the end of the one before."""
    tokenizer = tokenizer_of(char_bert)
    v2 = WordpieceWindows(128, 96)
    v2.bind(SimpleNamespace(tokenizer=tokenizer))
    doc = spacy.blank("en").make_doc(noisy_text(n_urls))
    windows = v2.doc_windows(doc)
    lengths = [len(ids) for ids in tokenizer([w.text for w in windows])["input_ids"]]
    assert max(lengths) <= CHAR_MAX_LENGTH
    assert max(lengths) > CHAR_MAX_LENGTH - 40  # cut by wordpieces, not by tokens
    covered = numpy.zeros(len(doc), dtype=int)
    for w in windows:
        covered[w.start : w.end] += 1
    assert covered.min() >= 1
    assert all(b.end > a.end and b.start > a.start for a, b in itertools.pairwise(windows))
    # v1 makes windows the encoder cannot hold
    v1_lengths = [
        len(ids) for ids in tokenizer([w.text for w in SentenceWindows(128, 96).doc_windows(doc)])["input_ids"]
    ]
    assert max(v1_lengths) > CHAR_MAX_LENGTH


def test_max_wordpieces_bounds_windows_below_the_encoder(tiny_bert):
    tokenizer = tokenizer_of(tiny_bert)
    v2 = WordpieceWindows(128, 96, max_wordpieces=20)
    v2.bind(SimpleNamespace(tokenizer=tokenizer))
    doc = spacy.blank("en").make_doc(" ".join(["paris", "works"] * 50))
    windows = v2.doc_windows(doc)
    lengths = [len(ids) for ids in tokenizer([w.text for w in windows])["input_ids"]]
    assert lengths[:-1] == [20] * (len(windows) - 1) and lengths[-1] <= 20
    assert bounds(windows)[:3] == [(0, 18), (13, 31), (26, 44)]  # stride 96 x 18 // 128 = 13
    assert windows[-1].end == len(doc)
    with pytest.raises(ValueError, match="max_wordpieces"):
        WordpieceWindows(128, 96, max_wordpieces=0)


def test_no_token_loses_its_wordpieces(char_bert):
    """In the pipeline, v1's 128-token windows are truncated (spert warns and
    names v2) and v2's are not: every token has wordpieces."""
    text = noisy_text(60)
    nlp = make_nlp(char_bert, window="sentence")
    nlp.initialize(lambda: train_examples(nlp))
    with pytest.warns(UserWarning, match="got no wordpiece.*sentence_windows.v2"):
        nlp(text)

    nlp = make_nlp(char_bert, window="wordpiece")
    nlp.initialize(lambda: train_examples(nlp))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = nlp(text)
    lengths = numpy.asarray(doc._.trf_data.align.lengths)
    assert len(lengths) == len(doc) and lengths.min() >= 1
    assert doc._.trf_data.model_output.last_hidden_state.shape[1] <= CHAR_MAX_LENGTH


def test_a_token_longer_than_a_window_is_encoded_alone(char_bert):
    """A 1,000-character URL of about 1,000 wordpieces gets a window of its
    own, keeps its first wordpieces and is named in a warning; the tokens
    around it lose nothing."""
    nlp = make_nlp(char_bert, window="wordpiece")
    nlp.initialize(lambda: train_examples(nlp))
    text = "Mary Smith works for Acme Corp in Paris . " + LONG_URL + " John Doe lives in London ."
    doc = nlp.make_doc(text)
    assert len(doc) == 16 and doc[9].text == LONG_URL and len(LONG_URL) > 1000
    with pytest.warns(
        UserWarning,
        match=r"Token 9 of a doc \('http://example.com/ab/ab.*\.\.\.', 1008 characters\) "
        r"splits into 1008 wordpieces, more than a whole transformer window holds \(126",
    ):
        doc = nlp(doc)
    getter = nlp.get_pipe("transformer").model.attrs["get_spans"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bounds(getter([doc])[0]) == [(0, 9), (9, 10), (10, 16)]
    lengths = numpy.asarray(doc._.trf_data.align.lengths)
    assert lengths[9] == CHAR_MAX_LENGTH - 1  # [CLS] and its first 127 wordpieces
    assert lengths.min() >= 1


def test_entities_after_many_wordpieces_are_found(char_bert):
    """An overfit model finds the entities and relations of a sentence that
    follows 150 wordpieces of URLs in one sentence-less doc of 24 tokens: v1
    makes it one window, whose end (the sentence) the transformer cuts."""
    fix_random_seed(0)
    nlp = make_nlp(char_bert, window="wordpiece")
    words, ents, rels = TRAIN_DATA[0]
    prefix = " ".join(["see", URLS[0], "and", URLS[1]] * 2).split()
    words = prefix + words
    ents = [(s + len(prefix), e + len(prefix), label) for s, e, label in ents]
    text = " ".join(words)
    assert len(tokenizer_of(char_bert)(text)["input_ids"]) > CHAR_MAX_LENGTH + 30
    examples = [Example(nlp.make_doc(text), make_doc(nlp.vocab, words, ents, rels))]
    overfit(nlp, n_steps=60, learn_rate=3e-3, examples=examples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = nlp(text)
    assert {(s.start, s.end, s.label_) for s in doc.spans["sc"]} == set(ents)
    assert {r["label"] for r in doc._.relations} == {"Work_For", "OrgBased_In"}


def test_the_spert_factory_binds_the_getter(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.get_pipe("transformer").model.attrs["get_spans"] = getter = WordpieceWindows(128, 96)
    assert getter.tokenizer is None
    assert bind_wordpiece_windows(nlp) == 1
    nlp2 = make_nlp(tiny_bert, window="wordpiece")
    trf = nlp2.get_pipe("transformer").model
    assert trf.attrs["get_spans"]._model is trf


def test_a_pickled_getter_counts_with_the_same_tokenizer(char_bert):
    v2 = WordpieceWindows(128, 96)
    v2.bind(SimpleNamespace(tokenizer=tokenizer_of(char_bert)))
    doc = spacy.blank("en").make_doc(noisy_text(30))
    copy = pickle.loads(pickle.dumps(v2))
    assert copy.tokenizer is not None
    assert bounds(copy.doc_windows(doc)) == bounds(v2.doc_windows(doc))
