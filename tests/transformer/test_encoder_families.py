"""spert with the common encoder families (tests/encoder_families.py: tiny
random models with locally trained tokenizers): the alignment gives no token
a wordpiece of another token whatever the tokenizer's offset convention, each
family overfits the small corpus of the BERT control with the same settings,
long and odd texts run, the [CLS]-equivalent and each encoder's maximum
length are respected, pipelines save and load, and ``predict`` runs.

The alignment numbers of docs/encoders.md come from ``test_alignment_clean``
(print them with ``-s``)."""

import logging
import pickle
import warnings

import numpy
import pytest
import spacy
import srsly
from conftest import (
    TRAIN_DATA,
    TRAIN_TEXTS,
    WINDOWS,
    doc_annotations,
    gold_annotations,
    make_nlp,
    overfit,
    train_examples,
)
from encoder_families import ALIGNMENT_TEXT, FAMILIES, SPECS, family_dir, record_examples, relation_corpus
from spacy.util import fix_random_seed
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import forward as spacy_transformers_forward

from spacy_spert.apps.predict import predict
from spacy_spert.models.wordpieces import wordpiece_features
from spacy_spert.transformer.alignment import (
    NO_LIMIT,
    aligned_forward,
    alignment_report,
    check_alignment,
    first_piece_is_special,
    max_wordpieces,
    tokenize_windows,
    warn_alignment,
)

# Families whose tokenizer's offsets include the space before a piece:
# spacy-transformers' own alignment gives their tokens the next token's piece.
LEADING_SPACE_OFFSETS = {"modernbert", "xlmr_spm", "deberta_v2", "deberta_v3"}
MAX_LENGTH = {name: 8192 if name == "modernbert" else 512 for name in FAMILIES}
LONG_TOKEN = "/".join(["ab"] * 1000)  # one spaCy token of 2,999 characters
ODD_TEXTS = [
    "Zoe 😀👍🏽 Ferreira works for Acme 🚀 Corp .",
    "control\x00chars\x07and\u200bzero\u200dwidth\ufeff here",
    "שלום Mary Smith مرحبا works for Acme Corp in Paris .",
    "Tabs\tand\n\n\nnewlines   and    spaces .",
    "e\u0301 combining a\u0308ccents , ﬁ ligature , ＦＵＬＬ width",
    f"A very long token : {LONG_TOKEN} ends here .",
    "",
    "   ",
    "x",
]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """(name, folder) of each family's tiny encoder."""
    return request.param, family_dir(request.param, tmp_path_factory)


def initialized(path, **kwargs):
    """make_nlp(path, **kwargs), initialized on the TRAIN_DATA examples."""
    nlp = make_nlp(path, **kwargs)
    nlp.initialize(lambda: train_examples(nlp))
    return nlp


def spert_warnings(records):
    return [str(w.message) for w in records if "[spacy-spert] The transformer" in str(w.message)]


def reports(nlp, doc):
    """(before, after, upstream): spacy-transformers' own alignment of the
    doc's windows and the one the pipeline gave the doc, measured against the
    pieces' characters, and spacy-transformers' alignment itself."""
    model = nlp.get_pipe("transformer").model
    spans = model.attrs["get_spans"]([doc])[0]
    offsets = tokenize_windows(model.tokenizer, [span.text for span in spans])["offset_mapping"]
    upstream = get_alignment_via_offset_mapping(spans, offsets)
    trf = doc._.trf_data
    before = alignment_report(spans, offsets, upstream, offsets.shape[1])
    after = alignment_report(spans, offsets, trf.align, int(trf.wordpieces.input_ids.shape[1]))
    return before, after, upstream


def test_alignment_clean(family):
    """No token gets a wordpiece with none of its characters; the families
    with leading-space offsets did with spacy-transformers' alignment, the
    others get exactly spacy-transformers' alignment."""
    name, path = family
    nlp = make_nlp(path, window="wordpiece")
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        nlp.initialize(lambda: train_examples(nlp))
    assert spert_warnings(records) == []
    assert nlp.get_pipe("transformer").model._func is aligned_forward
    doc = nlp(ALIGNMENT_TEXT)
    before, after, upstream = reports(nlp, doc)
    print(f"\n{name}: {after.n_tokens} tokens, misaligned before {before.n_foreign}, after {after.n_foreign}")
    assert after.n_foreign == 0, after.foreign[:3]
    if name in LEADING_SPACE_OFFSETS:
        assert before.n_foreign > after.n_tokens // 2, before.foreign[:3]
        assert before.foreign[0][:2] == (0, "Zoe") and before.foreign[0][2].startswith(" F")
    else:
        assert before.n_foreign == 0
        # the same pieces for every word (spaCy's whitespace tokens, "\n" or
        # a second space, get no piece, as with BERT)
        for token in doc:
            if not token.is_space:
                assert doc._.trf_data.align[token.i].dataXd.tolist() == upstream[token.i].dataXd.tolist()
    # every word has a piece (nothing truncated, nothing lost to trimming)
    lengths = numpy.asarray(doc._.trf_data.align.lengths)
    assert all(lengths[t.i] > 0 for t in doc if not t.is_space)


def test_cls_rows_and_max_length(family):
    """Each window's first row is the family's [CLS]-equivalent (<s> for
    RoBERTa and XLM-R), which is what spert reads as the context; windows
    are bounded by the encoder's own maximum length (ModernBERT: 8,192)."""
    name, path = family
    nlp = initialized(path, window={**WINDOWS["wordpiece"], "max_tokens": 3000, "stride": 2000})
    model = nlp.get_pipe("transformer").model
    tokenizer = model.tokenizer
    assert first_piece_is_special(tokenizer)
    assert max_wordpieces(tokenizer, model.transformer) == MAX_LENGTH[name]
    cls_id = tokenizer.convert_tokens_to_ids(SPECS[name].cls_token)
    doc = nlp(" ".join(["Mary Smith works for Acme Corp in Paris and lives in London ,"] * 80))
    trf = doc._.trf_data
    ids = numpy.asarray(trf.wordpieces.input_ids)
    feats = wordpiece_features([doc], [trf], model.get_dim("nO"))
    assert (ids.reshape(-1)[feats.cls_rows] == cls_id).all()
    lengths = numpy.asarray(trf.wordpieces.lengths)
    assert lengths.max() <= MAX_LENGTH[name]
    if name == "modernbert":  # > 512 pieces, one window: its 8,192 positions are used
        assert ids.shape[0] == 1 and lengths[0] > 600
    else:
        assert ids.shape[0] > 1 and lengths.max() > 400
    assert all(n > 0 for n in numpy.asarray(trf.align.lengths))


def test_long_and_odd_texts(family):
    """Texts longer than a window and odd ones (emoji, control characters,
    right-to-left scripts, a 3,000-character token, empty) run; transformers
    does not log that a sequence "will result in indexing errors"."""
    _, path = family
    nlp = initialized(path, window="wordpiece")
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("transformers.tokenization_utils_base")
    handler = Collect()
    logger.addHandler(handler)
    try:
        long_text = " ".join(TRAIN_TEXTS * 150)  # ~3,500 tokens, many windows
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\[spacy-spert\] Token \d+ of a doc")  # the long token
            docs = list(nlp.pipe([long_text, *ODD_TEXTS], batch_size=4))
        assert not [r for r in records if "indexing errors" in r]
        assert not tokenizer.deprecation_warnings.get("sequence-length-is-longer-than-the-specified-maximum")
        for doc in docs:
            for span in doc.spans.get("sc", []):
                assert 0 <= span.start < span.end <= len(doc)
        assert len(docs[0]) > 3000
        # the check can fail: transformers' own call warns about a text over
        # the tokenizer's maximum (DeBERTa's tokenizer has none: never warns)
        if tokenizer.model_max_length < NO_LIMIT:
            tokenizer("ab/" * tokenizer.model_max_length)
            assert [r for r in records if "indexing errors" in r]
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def overfitted(family, tmp_path_factory):
    """Each family overfitted as the BERT control in test_spert.py (one
    window per doc, 200 steps at 1e-3, seed 0), saved."""
    name, path = family
    fix_random_seed(0)
    nlp = make_nlp(path)
    overfit(nlp)
    out = tmp_path_factory.mktemp(f"overfit_{name}") / "model"
    nlp.to_disk(out)
    return name, nlp, out


def test_overfit_save_load_predict(overfitted, tmp_path):
    name, nlp, out = overfitted
    scores = nlp.evaluate(train_examples(nlp))
    print(f"\n{name}: entity F1 {scores['spert_ent_f']:.3f}, relation F1 {scores['spert_rel_f']:.3f}")
    assert scores["spert_ent_f"] == 1.0 and scores["spert_rel_f"] == 1.0
    for (_, entities, relations), doc in zip(TRAIN_DATA, nlp.pipe(TRAIN_TEXTS)):
        assert doc_annotations(doc) == gold_annotations(entities, relations)
    # save/load: the same predictions and scores, the alignment installed again
    loaded = spacy.load(out)
    assert loaded.get_pipe("transformer").model._func is aligned_forward
    for a, b in zip(nlp.pipe(TRAIN_TEXTS), loaded.pipe(TRAIN_TEXTS)):
        assert doc_annotations(a) == doc_annotations(b)
        numpy.testing.assert_allclose(a.spans["sc"].attrs["scores"], b.spans["sc"].attrs["scores"], rtol=1e-5)
    # predict (the CLI's function) from the saved folder
    srsly.write_jsonl(tmp_path / "in.jsonl", [{"text": text} for text in TRAIN_TEXTS[:2]])
    predict(out, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    rows = list(srsly.read_jsonl(tmp_path / "out.jsonl"))
    expected = [gold_annotations(entities, relations)[0] for _, entities, relations in TRAIN_DATA[:2]]
    assert [sorted((e["start"], e["end"], e["label"]) for e in row["entities"]) for row in rows] == [
        [(doc[s:e].start_char, doc[s:e].end_char, label) for s, e, label in ents]
        for doc, ents in zip(nlp.pipe(TRAIN_TEXTS[:2]), expected)
    ]


def test_pipe_in_two_processes_and_pickle(overfitted):
    """The alignment survives nlp.pipe(n_process=2) and pickling."""
    name, nlp, _ = overfitted
    if name not in {"modernbert", "deberta_v3"}:
        pytest.skip("one family of each tokenizer kind with leading-space offsets is enough")
    single = [doc_annotations(d) for d in nlp.pipe(TRAIN_TEXTS)]
    assert [doc_annotations(d) for d in nlp.pipe(TRAIN_TEXTS, n_process=2, batch_size=2)] == single
    copy = pickle.loads(pickle.dumps(nlp))
    assert copy.get_pipe("transformer").model._func is aligned_forward
    assert [doc_annotations(d) for d in copy.pipe(TRAIN_TEXTS)] == single


@pytest.mark.slow
def test_overfit_32_sentences(family):
    """A larger corpus (32 generated sentences, 3 entity and 3 relation
    types) overfits to exact predictions with every family (300 steps)."""
    name, path = family
    fix_random_seed(0)
    nlp = make_nlp(path)
    examples = overfit(nlp, n_steps=300, examples=record_examples(nlp, relation_corpus(32)))
    scores = nlp.evaluate(examples)
    print(f"\n{name} (32 sentences): entity F1 {scores['spert_ent_f']:.3f}, relation F1 {scores['spert_rel_f']:.3f}")
    assert scores["spert_ent_f"] == 1.0 and scores["spert_rel_f"] == 1.0


# The initialization check ----------------------------------------------------


def _upstream_forward(model, docs, is_train):
    """spacy-transformers' forward behind another function: a transformer
    whose forward spert does not replace."""
    return spacy_transformers_forward(model, docs, is_train)


def test_initialize_warns_about_a_misaligned_transformer(tmp_path_factory):
    path = family_dir("modernbert", tmp_path_factory)
    nlp = make_nlp(path)
    nlp.get_pipe("transformer").model._func = _upstream_forward
    with pytest.warns(UserWarning) as records:
        nlp.initialize(lambda: train_examples(nlp))
    (message,) = spert_warnings(records)
    assert "PreTrainedTokenizerFast" in message
    assert "tokens got a wordpiece whose characters belong to other tokens" in message
    assert "token 0 'Mary' got ' Smith'" in message
    assert "_upstream_forward" in message
    report = check_alignment(nlp.get_pipe("transformer").model, [nlp.make_doc(ALIGNMENT_TEXT)])
    assert report.n_foreign > 100


def test_warns_without_a_cls_token_and_for_slow_tokenizers(tmp_path_factory, tiny_bert):
    nlp = initialized(family_dir("roberta", tmp_path_factory))
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    tokenizer.backend_tokenizer.post_processor = None  # no <s> ... </s>
    assert not first_piece_is_special(tokenizer)
    with pytest.warns(UserWarning, match='adds no special token .* context = "max"'):
        messages = warn_alignment(nlp, "spert", [nlp.make_doc(t) for t in TRAIN_TEXTS])
    assert len(messages) == 1
    assert warn_alignment(nlp, "spert", [nlp.make_doc(t) for t in TRAIN_TEXTS], context="max") == []
    # a slow tokenizer has no offsets: the check cannot run, and says so
    slow = make_nlp(tiny_bert, tokenizer_config={"use_fast": False})
    with pytest.warns(UserWarning, match="slow tokenizer without character offsets.*use_fast = true"):
        slow.initialize(lambda: train_examples(slow))


def test_indistinct_tokens_are_reported(tmp_path_factory):
    """Where spaCy's tokens are finer than the wordpieces (here: one token per
    character, as spaCy's Chinese "char" segmenter makes them), one piece is
    all that several tokens get; the check counts them and names an example."""
    from spacy.tokens import Doc

    nlp = initialized(family_dir("bert", tmp_path_factory))
    docs = [
        Doc(nlp.vocab, words=list(text.replace(" ", "")), spaces=[False] * len(text.replace(" ", "")))
        for text in TRAIN_TEXTS
    ]
    report = check_alignment(nlp.get_pipe("transformer").model, docs)
    assert report.n_foreign == 0 and report.indistinct > report.n_tokens * 0.5
    with pytest.warns(
        UserWarning, match=r"have exactly the wordpieces of a neighbouring token \(e.g. '\w+' is all of \w \| \w"
    ):
        messages = warn_alignment(nlp, "spert", docs)
    assert len(messages) == 1 and "jieba" in messages[0]
    assert warn_alignment(nlp, "spert", [nlp.make_doc(text) for text in TRAIN_TEXTS]) == []


def test_trim_offsets():
    """Whitespace is cut off both ends of a piece's range; a piece of
    whitespace only gets an empty range; special tokens and padding stay (0, 0)."""
    from spacy_spert.transformer.alignment import trim_offsets

    texts = ["Zoe Ferreira", " a\n\n b"]
    offsets = numpy.array(
        [
            [(0, 0), (0, 3), (3, 12), (0, 0), (0, 0)],  # [CLS] "Zoe" " Ferreira" [SEP] [PAD]
            [(0, 0), (0, 2), (2, 4), (4, 6), (0, 0)],  # [CLS] " a" "\n\n" " b" [SEP]
        ]
    )
    trimmed = trim_offsets(texts, offsets)
    assert trimmed.tolist() == [
        [[0, 0], [0, 3], [4, 12], [0, 0], [0, 0]],
        [[0, 0], [1, 2], [4, 4], [5, 6], [0, 0]],
    ]
