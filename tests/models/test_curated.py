"""spert after spaCy's curated transformers (spacy-curated-transformers 0.3,
``pip install -e .[curated]``), with a tiny random BERT built locally.

Training runs two ways: with the curated transformer frozen (its
``frozen = true`` setting, or spaCy's frozen_components with
annotating_components), which works with any numpy, and fine-tuned, which
runs spacy-curated-transformers' own training code: its 0.3.x releases call
float() on a one-element array, which numpy >= 2.4 refuses, so that test is
skipped there and another checks the error that says so.
"""

import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy
import pytest
import spacy
from conftest import make_doc, make_nlp, train_examples, train_step
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import fix_random_seed, load_config
from thinc.api import Adam

from spacy_spert.models.curated import context_windows, curated_to_trf_data, piece_gradient

pytest.importorskip(
    "spacy_curated_transformers", reason='spacy-curated-transformers is not installed (pip install -e ".[curated]")'
)

from spacy_curated_transformers.models.output import DocTransformerOutput
from thinc.types import Ragged

NUMPY_2_4 = tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (2, 4)
REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENER = {"@layers": "spacy-spert.CuratedTransformerListener.v1"}
GERMAN = [
    (
        "Angela Merkel arbeitet für Siemens in München .".split(),
        [(0, 2, "Peop"), (4, 5, "Org"), (6, 7, "Loc")],
        [(0, 1, "Work_For"), (1, 2, "OrgBased_In")],
    ),
    ("Jürgen Groß lebt in Köln .".split(), [(0, 2, "Peop"), (4, 5, "Loc")], [(0, 1, "Live_In")]),
    ("Die Straße war grün .".split(), [], []),
]


def curated_nlp(
    encoder: Path,
    tok2vec: Optional[Dict] = None,
    lang: str = "en",
    frozen: bool = False,
    max_context_tokens: int = 128,
) -> Language:
    """A blank pipeline with a curated_transformer (the tiny BERT in
    ``encoder``) and spert reading it with ``tok2vec`` (default: our curated
    listener)."""
    import json

    config = json.loads((encoder / "config.json").read_text())
    nlp = spacy.blank(lang)
    nlp.add_pipe(
        "curated_transformer",
        config={
            "frozen": frozen,
            "model": {
                "@architectures": "spacy-curated-transformers.BertTransformer.v1",
                "vocab_size": config["vocab_size"],
                "hidden_width": config["hidden_size"],
                "num_hidden_layers": config["num_hidden_layers"],
                "num_attention_heads": config["num_attention_heads"],
                "intermediate_width": config["intermediate_size"],
                "max_position_embeddings": config["max_position_embeddings"],
                "piece_encoder": {"@architectures": "spacy-curated-transformers.BertWordpieceEncoder.v1"},
                "with_spans": {"@architectures": "spacy-curated-transformers.WithStridedSpans.v1"},
            },
        },
    )
    listener = tok2vec or {**LISTENER, "max_context_tokens": max_context_tokens}
    nlp.add_pipe("spert", config={"model": {"@architectures": "spacy-spert.SpERT.v1", "tok2vec": listener}})
    loaders = (
        "spacy-curated-transformers.HFTransformerEncoderLoader.v1",
        "spacy-curated-transformers.HFPieceEncoderLoader.v1",
    )
    nlp.config["initialize"]["components"]["curated_transformer"] = {
        "encoder_loader": {"@model_loaders": loaders[0], "name": str(encoder)},
        "piecer_loader": {"@model_loaders": loaders[1], "name": str(encoder)},
    }
    return nlp


@pytest.fixture(scope="module")
def tiny_bert_de(tmp_path_factory) -> Path:
    """A tiny random BERT with a German word vocab (lowercased, accents
    stripped, as BertTokenizerFast does with do_lower_case)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert_de")
    words = "angela merkel arbeitet fur siemens in munchen . jurgen groß gross lebt koln die straße strasse war grun"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words.split())) + ["##s", "##en"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(str(path))
    return path


def german_examples(nlp: Language) -> List[Example]:
    return [Example(nlp.make_doc(" ".join(w)), make_doc(nlp.vocab, w, e, r)) for w, e, r in GERMAN]


def found(doc: Doc):
    entities = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
    relations = sorted((r["head_start"], r["tail_start"], r["label"]) for r in doc._.relations)
    return entities, relations


def assert_overfitted(nlp: Language, examples: List[Example]) -> None:
    for eg in examples:
        assert found(nlp(eg.reference.text)) == found(eg.reference), eg.reference.text


def train(nlp: Language, examples: List[Example], n_steps: int, learn_rate: float = 1e-2, **update):
    """Initialize and train ``n_steps`` (with ``update``: nlp.update's
    keyword arguments, else as spaCy's loop does). RETURNS the optimizer."""
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    steps(nlp, examples, optimizer, n_steps, **update)
    return optimizer


def steps(nlp: Language, examples: List[Example], optimizer, n_steps: int, **update) -> None:
    for _ in range(n_steps):
        if update:
            nlp.update(examples, sgd=optimizer, **update)
        else:
            train_step(nlp, examples, optimizer)


# Alignment and the context vector ---------------------------------------------------------


def test_rows_are_curated_pieces_of_each_token_and_context_is_the_sentence_max(tiny_bert):
    nlp = curated_nlp(tiny_bert, max_context_tokens=4)
    nlp.initialize(lambda: train_examples(nlp))
    words = "Mary Smith works for Acme Corp in Paris . \n John Doe lives in London .".split(" ")
    sent_starts = [True] + [False] * 9 + [True] + [False] * 5
    doc = nlp.get_pipe("curated_transformer")(Doc(nlp.vocab, words=words, sent_starts=sent_starts))
    pieces = doc._.trf_data.last_hidden_layer_state
    assert pieces.lengths.tolist()[9] == 0 and min(pieces.lengths.tolist()[:9]) >= 1  # only "\n" has no piece
    listener = nlp.get_pipe("spert").model.get_ref("tok2vec")
    (trf,), _ = listener([doc], False)
    lhs = trf.model_output.last_hidden_state
    flat = lhs.reshape(-1, lhs.shape[-1])
    starts = numpy.concatenate(([0], numpy.cumsum(pieces.lengths)))
    rows = trf.align.dataXd
    for i in range(len(doc)):  # each token's rows hold its own pieces, in order
        own = rows[starts[i] : starts[i + 1]]
        numpy.testing.assert_array_equal(flat[own], pieces.dataXd[starts[i] : starts[i + 1]])
    # sentences [0, 10) and [10, 16), cut into windows of at most 4 tokens
    windows = context_windows(doc, "sentence", 4)
    assert windows == [(0, 4), (4, 8), (8, 10), (10, 14), (14, 16)]
    assert lhs.shape[0] == len(windows)
    for w, (s, e) in enumerate(windows):
        numpy.testing.assert_array_equal(lhs[w, 0], pieces.dataXd[starts[s] : starts[e]].max(0))
    assert context_windows(doc, "doc", 0) == [(0, 16)]


def test_pieces_match_the_hugging_face_tokenizer_with_umlauts(tiny_bert_de):
    """Curated's piece encoder, loaded from the same folder, cuts German words
    (umlauts, ß, accents stripped as the HF tokenizer does) into the same pieces."""
    from transformers import AutoTokenizer

    nlp = curated_nlp(tiny_bert_de, lang="de")
    nlp.initialize(lambda: german_examples(nlp))
    doc = nlp.make_doc("Jürgen Groß lebt in Köln , die Straße war grün . Münchens")
    ids = nlp.get_pipe("curated_transformer").model.get_ref("piece_encoder").predict([doc])[0]
    lengths = ids.lengths[1:-1]  # without BOS and EOS
    curated = numpy.split(ids.dataXd[1:-1], numpy.cumsum(lengths)[:-1])
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_de))
    assert [c.tolist() for c in curated] == [tokenizer(t.text, add_special_tokens=False)["input_ids"] for t in doc]
    assert curated[-1].tolist() == tokenizer.convert_tokens_to_ids(["munchen", "##s"])


def test_context_max_gradient_matches_finite_differences():
    rng = numpy.random.default_rng(0)
    nlp = spacy.blank("en")
    doc = nlp.make_doc("a b c d e f g")
    lengths = numpy.array([1, 2, 0, 1, 3, 1, 1], dtype="int32")
    layer = Ragged(rng.normal(size=(int(lengths.sum()), 3)).astype("float64"), lengths)
    settings = {"context_window": "doc", "max_context_tokens": 3}
    trf, route = curated_to_trf_data(doc, layer, 3, settings)
    lhs = trf.model_output.last_hidden_state
    d_lhs = rng.normal(size=lhs.shape)
    from transformers.file_utils import ModelOutput

    d_trf = type(trf)(wordpieces=None, model_output=ModelOutput(last_hidden_state=d_lhs), align=trf.align)
    got = piece_gradient(d_trf, layer, route)
    assert got.lengths.tolist() == lengths.tolist()
    eps = 1e-6
    numeric = numpy.zeros_like(layer.dataXd)
    for i in range(numeric.shape[0]):
        for j in range(numeric.shape[1]):
            bumped = layer.dataXd.copy()
            bumped[i, j] += eps
            out, _ = curated_to_trf_data(doc, Ragged(bumped, lengths), 3, settings)
            numeric[i, j] = ((out.model_output.last_hidden_state - lhs) * d_lhs).sum() / eps
    numpy.testing.assert_allclose(got.dataXd, numeric, atol=1e-5)


# Training, inference, save and load ------------------------------------------------------------


@pytest.mark.parametrize("how", ["frozen", "annotating"])
def test_overfits_with_the_transformer_frozen(tiny_bert, how):
    """``frozen = true`` (curated's setting), or spaCy's frozen_components
    with the transformer in annotating_components (nlp.update's exclude and
    annotates): spert reads the docs' output and learns alone."""
    fix_random_seed(0)
    nlp = curated_nlp(tiny_bert, frozen=how == "frozen")
    weights = nlp.get_pipe("curated_transformer").model.get_ref("transformer").shims[0]._model
    examples = train_examples(nlp)
    update = {} if how == "frozen" else {"exclude": ["curated_transformer"], "annotates": ["curated_transformer"]}
    optimizer = train(nlp, examples, 1, **update)
    before = {k: v.clone() for k, v in weights.state_dict().items()}
    steps(nlp, examples, optimizer, 200, **update)
    assert all((before[k] == v).all() for k, v in weights.state_dict().items())
    assert_overfitted(nlp, examples)


@pytest.mark.skipif(NUMPY_2_4, reason="spacy-curated-transformers 0.3.x cannot fine-tune with numpy >= 2.4")
def test_overfits_fine_tuned(tiny_bert):
    fix_random_seed(0)
    nlp = curated_nlp(tiny_bert)
    weights = nlp.get_pipe("curated_transformer").model.get_ref("transformer").shims[0]._model
    examples = train_examples(nlp)
    optimizer = train(nlp, examples, 1, learn_rate=3e-3)
    before = {k: v.clone() for k, v in weights.state_dict().items()}
    steps(nlp, examples, optimizer, 100)
    assert any(not (before[k] == v).all() for k, v in weights.state_dict().items())  # the encoder learned
    assert_overfitted(nlp, examples)


@pytest.mark.skipif(not NUMPY_2_4, reason="numpy < 2.4: curated's training code works (test_overfits_fine_tuned)")
def test_fine_tuning_with_numpy_2_4_says_what_to_do(tiny_bert):
    nlp = curated_nlp(tiny_bert)
    examples = train_examples(nlp)
    with pytest.raises(RuntimeError, match=r"numpy >= 2\.4 refuses.*numpy<2\.4.*frozen = true"):
        train(nlp, examples, 1)


def test_german_overfits_frozen(tiny_bert_de):
    fix_random_seed(0)
    nlp = curated_nlp(tiny_bert_de, lang="de", frozen=True)
    examples = german_examples(nlp)
    train(nlp, examples, 200)
    assert_overfitted(nlp, examples)


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> Path:
    """A curated + spert pipeline overfitted (frozen) and saved."""
    fix_random_seed(0)
    nlp = curated_nlp(tiny_bert, frozen=True)
    train(nlp, train_examples(nlp), 200)
    path = tmp_path_factory.mktemp("curated") / "model"
    nlp.to_disk(path)
    return path


def test_saved_pipeline_predicts_the_same(trained):
    nlp = spacy.load(trained)
    assert nlp.get_pipe("spert").model.get_ref("tok2vec").get_dim("nO") == 32  # width = null, found and saved
    assert nlp.config["components"]["spert"]["model"]["tok2vec"]["@layers"] == LISTENER["@layers"]
    texts = [eg.reference.text for eg in train_examples(nlp)]
    docs = list(nlp.pipe(texts))
    assert [found(d) for d in docs] == [found(eg.reference) for eg in train_examples(nlp)]
    again = spacy.blank("en").from_config(nlp.config)
    again.from_disk(trained)
    for doc, doc2 in zip(docs, again.pipe(texts)):
        assert found(doc) == found(doc2)
        numpy.testing.assert_array_equal(doc.spans["sc"].attrs["scores"], doc2.spans["sc"].attrs["scores"])


def test_replace_listeners_gives_spert_its_own_transformer(tiny_bert, tmp_path):
    """nlp.replace_listeners (the listener named with @architectures and its
    width, as configs/spert_curated.cfg does): the same predictions with the
    curated_transformer, without it, after save/load, and spert trains on."""
    fix_random_seed(0)
    listener = {"@architectures": LISTENER["@layers"], "width": 32}
    nlp = curated_nlp(tiny_bert, tok2vec=listener, frozen=True)
    examples = train_examples(nlp)
    train(nlp, examples, 200)
    texts = [eg.reference.text for eg in examples]
    want = [found(doc) for doc in nlp.pipe(texts)]
    assert want == [found(eg.reference) for eg in examples]
    nlp.replace_listeners("curated_transformer", "spert", ["model.tok2vec"])
    wrapped = nlp.config["components"]["spert"]["model"]["tok2vec"]
    assert wrapped["@architectures"] == "spacy-curated-transformers.BertTransformer.v1"
    assert wrapped["wrapped_listener"]["@architectures"] == LISTENER["@layers"]
    assert [found(doc) for doc in nlp.pipe(texts)] == want
    nlp.remove_pipe("curated_transformer")
    assert [found(doc) for doc in nlp.pipe(texts)] == want
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert loaded.pipe_names == ["spert"]
    assert [found(doc) for doc in loaded.pipe(texts)] == want
    losses = {}
    loaded.update(examples, sgd=loaded.create_optimizer(), losses=losses)
    assert losses["spert"] > 0


def test_own_copy_of_the_transformer_fine_tunes_with_any_numpy(tiny_bert):
    """After nlp.replace_listeners, spert's copy of the transformer learns
    through curated's wrapped-listener model, not through the
    curated_transformer component's training code, so numpy >= 2.4 works."""
    fix_random_seed(0)
    nlp = curated_nlp(tiny_bert, tok2vec={"@architectures": LISTENER["@layers"], "width": 32})
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    nlp.replace_listeners("curated_transformer", "spert", ["model.tok2vec"])
    nlp.remove_pipe("curated_transformer")
    own_transformer = nlp.get_pipe("spert").model.get_ref("tok2vec").layers[0]  # (transformer, listener)
    (shim,) = [shim for node in own_transformer.walk() for shim in node.shims]
    before = {k: v.clone() for k, v in shim._model.state_dict().items()}
    optimizer = Adam(3e-3)
    for _ in range(100):
        nlp.update(examples, sgd=optimizer)
    assert any(not (before[k] == v).all() for k, v in shim._model.state_dict().items())  # the encoder learned
    assert_overfitted(nlp, examples)


def test_long_text_is_cut_into_context_windows(trained):
    """3,000 tokens without sentence boundaries (over 512 pieces: curated's
    strided windows encode it) and windows of at most 128 tokens for the context."""
    nlp = spacy.load(trained)
    text = " ".join(["Mary Smith works for Acme Corp in Paris ."] * 334)
    doc = nlp.make_doc(text)
    assert len(doc) > 3000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = nlp(text)
    listener = nlp.get_pipe("spert").model.get_ref("tok2vec")
    (trf,), _ = listener([doc], False)
    assert trf.model_output.last_hidden_state.shape[0] == -(-len(doc) // 128)
    ents = doc.spans["sc"]
    assert len(ents) > 0 and all(0 <= s.start < s.end <= len(doc) for s in ents)
    assert {s.label_ for s in ents} <= {"Peop", "Org", "Loc"}


ODD_TEXTS = [
    "",
    " ",
    "\n\n\t ",
    "Mary",
    "Mary Smith 🙂🙂 works for Acme\u200b Corp in Paris !!!",
    "Mary\x00Smith\x07 works \u202eAcme\u202c in Paris",
    "مريم تعمل في باريس . Mary works in Paris .",
    "東京でメアリーが働く 。 Mary works for Acme Corp .",
    "a" * 300 + " works for " + "https://example.com/" + "x" * 500,
    "Mary   Smith\n\nworks \t for Acme Corp",
]


def test_odd_texts_predict(trained):
    nlp = spacy.load(trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        docs = list(nlp.pipe(ODD_TEXTS, batch_size=4))
    for doc in docs:
        for span in doc.spans["sc"]:
            assert 0 <= span.start < span.end <= len(doc)
            assert not span.text.isspace()
        for rel in doc._.relations:
            assert 0 <= rel["head_start"] < rel["head_end"] <= len(doc)
    assert found(docs[4])[0][:1] == [(0, 2, "Peop")]  # the trained sentence survives the emoji


def test_german_text_predicts(trained):
    nlp = spacy.load(trained)
    doc = nlp("Angela Merkel arbeitet für die Siemens AG in München , sagt die Süddeutsche Zeitung .")
    assert all(0 <= s.start < s.end <= len(doc) for s in doc.spans["sc"])


# Misconfiguration: the error names the actual problem ------------------------------------------


def _initialize_error(nlp: Language, examples=None) -> str:
    examples = examples or train_examples(nlp)
    with pytest.raises(ValueError) as err:
        nlp.initialize(lambda: examples)
    return str(err.value)


def test_spacy_transformers_listener_after_curated_names_the_listener_to_use(tiny_bert):
    nlp = curated_nlp(tiny_bert, tok2vec={"@layers": "spacy-spert.WordpieceListener.v1"})
    message = _initialize_error(nlp)
    assert "the pipeline's transformer 'curated_transformer' is a 'curated_transformer'" in message
    assert "use spacy-spert.CuratedTransformerListener.v1" in message
    assert "could not find the width" not in message


def test_curated_listener_after_spacy_transformers_names_the_listener_to_use(tiny_bert):
    nlp = make_nlp(tiny_bert, {"model": {"tok2vec": LISTENER}})
    message = _initialize_error(nlp)
    assert "the pipeline's transformer 'transformer' is a 'transformer' (spacy-transformers)" in message
    assert "use spacy-spert.WordpieceListener.v1" in message


def test_curated_pooling_listener_is_named(tiny_bert):
    pooling = {
        "@architectures": "spacy-curated-transformers.LastTransformerLayerListener.v1",
        "width": 32,
        "pooling": {"@layers": "reduce_mean.v1"},
    }
    message = _initialize_error(curated_nlp(tiny_bert, tok2vec=pooling))
    assert "a spacy-curated-transformers listener that pools the pieces into one vector per token" in message
    assert "spacy-spert.CuratedTransformerListener.v1 after a 'curated_transformer'" in message


def test_width_that_differs_from_the_transformer_is_named(tiny_bert):
    message = _initialize_error(curated_nlp(tiny_bert, tok2vec={**LISTENER, "width": 64}))
    assert "width = 64, but its transformer gives vectors of width 32" in message


def test_cls_context_is_refused_for_curated():
    from spacy_spert.models.curated import build_curated_transformer_listener

    with pytest.raises(ValueError, match="use 'max': curated transformers remove the \\[CLS\\] piece"):
        build_curated_transformer_listener(context="cls")


def test_frozen_components_without_annotating_is_named(tiny_bert):
    nlp = curated_nlp(tiny_bert)
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="must also be in \\[training\\] annotating_components"):
        nlp.update(examples, exclude=["curated_transformer"])


def test_config_file_initializes_and_trains(tiny_bert, tmp_path):
    """configs/spert_curated.cfg with the tiny encoder's shape and folder:
    spert's width is read from the transformer; one step with it frozen."""
    import json

    shape = json.loads((tiny_bert / "config.json").read_text())
    overrides = {
        "encoder.name": str(tiny_bert),
        "encoder.vocab_size": shape["vocab_size"],
        "encoder.hidden_width": shape["hidden_size"],
        "encoder.layers": shape["num_hidden_layers"],
        "encoder.heads": shape["num_attention_heads"],
        "encoder.intermediate_width": shape["intermediate_size"],
        "components.curated_transformer.frozen": True,
    }
    config = load_config(REPO_ROOT / "configs" / "spert_curated.cfg", overrides=overrides, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["curated_transformer", "spert"]
    examples = train_examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-3))  # (the config's schedule reads paths.train)
    assert nlp.get_pipe("spert").cfg["hidden_width"] == 32
    losses = train_step(nlp, examples, optimizer)
    assert losses["spert"] > 0
    doc = nlp("Mary Smith works for Acme Corp in Paris .")
    assert isinstance(doc._.trf_data, DocTransformerOutput)


@pytest.mark.slow
def test_spacy_train_with_the_config_file(tiny_bert, tmp_path):
    """`python -m spacy train configs/spert_curated.cfg` end to end with the
    tiny encoder (frozen with numpy >= 2.4, see the module docstring); the
    saved pipeline loads and predicts."""
    import json
    import subprocess
    import sys

    from spacy.tokens import DocBin

    shape = json.loads((tiny_bert / "config.json").read_text())
    corpus = tmp_path / "train.spacy"
    db = DocBin(store_user_data=True)
    for eg in train_examples(spacy.blank("en")):
        db.add(eg.reference)
    db.to_disk(corpus)
    args = [
        *("--paths.train", str(corpus), "--paths.dev", str(corpus), "--encoder.name", str(tiny_bert)),
        *("--encoder.vocab_size", str(shape["vocab_size"]), "--encoder.hidden_width", str(shape["hidden_size"])),
        *("--encoder.layers", str(shape["num_hidden_layers"]), "--encoder.heads", str(shape["num_attention_heads"])),
        *("--encoder.intermediate_width", str(shape["intermediate_size"])),
        *("--training.max_epochs", "2", "--training.eval_frequency", "2"),
        *(("--components.curated_transformer.frozen", "true") if NUMPY_2_4 else ()),
    ]
    config = REPO_ROOT / "configs" / "spert_curated.cfg"
    cmd = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(tmp_path / "out"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.pipe_names == ["curated_transformer", "spert"]
    doc = nlp("Mary Smith works for Acme Corp in Paris .")
    assert all(0 <= s.start < s.end <= len(doc) for s in doc.spans["sc"])


def test_predict_command(trained, tmp_path):
    """`python -m spacy_spert predict` on a curated pipeline: JSONL and .spacy
    outputs, the trained sentences found exactly, odd, German and long texts."""
    import json

    from spacy.tokens import DocBin
    from typer.testing import CliRunner

    from spacy_spert.cli import app

    gold = [found(eg.reference) for eg in train_examples(spacy.blank("en"))]
    texts = [eg.reference.text for eg in train_examples(spacy.blank("en"))]
    texts += ODD_TEXTS + [
        "Angela Merkel arbeitet für Siemens in München .",
        " ".join(["John Doe lives in London ."] * 500),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(trained), str(source), str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["id"] for r in records] == list(range(len(texts)))
    for record, (entities, _) in zip(records, gold):
        assert [(e["token_start"], e["token_end"], e["label"]) for e in record["entities"]] == entities
    result = runner.invoke(app, ["predict", str(trained), str(source), str(tmp_path / "out.spacy")])
    assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("en").vocab))
    assert [found(doc)[0] for doc in docs[: len(gold)]] == [entities for entities, _ in gold]
