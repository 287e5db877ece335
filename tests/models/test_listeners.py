"""spert's listeners: the "max" context vector in place of [CLS] (its values
and its gradient) and the errors when spert's listener does not fit the
pipeline's transformer (spacy-transformers here; curated: test_curated.py)."""

import numpy
import pytest
import spacy
from conftest import make_nlp, overfit, train_examples
from spacy.util import fix_random_seed
from spacy_transformers.data_classes import TransformerData
from thinc.types import Ragged
from transformers.file_utils import ModelOutput

from spacy_spert.models.architectures import build_wordpiece_listener
from spacy_spert.models.listeners import backprop_window_max, trf_windows, window_max, with_max_context


def test_window_max_and_its_gradient_match_finite_differences():
    rng = numpy.random.default_rng(0)
    hidden = rng.normal(size=(9, 4)).astype("float64")  # no ties
    windows = [numpy.array([0, 2, 3]), numpy.array([], dtype="int64"), numpy.array([5, 6, 7, 8])]
    maxima, which = window_max(hidden, windows)
    assert numpy.allclose(maxima[0], hidden[[0, 2, 3]].max(0))
    assert numpy.allclose(maxima[1], 0.0)  # an empty window: zeros
    assert numpy.allclose(maxima[2], hidden[5:].max(0))
    d_max = rng.normal(size=maxima.shape)
    d_hidden = numpy.zeros_like(hidden)
    backprop_window_max(d_hidden, d_max, which)
    eps = 1e-6
    numeric = numpy.zeros_like(hidden)
    for i in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            bumped = hidden.copy()
            bumped[i, j] += eps
            numeric[i, j] = ((window_max(bumped, windows)[0] - maxima) * d_max).sum() / eps
    numpy.testing.assert_allclose(d_hidden, numeric, atol=1e-5)
    assert not d_hidden[[1, 4]].any()  # rows in no window get nothing


def _trf_data(rng, n_windows=2, seq_len=5, width=3):
    """Two windows: [CLS] t0 t1 [SEP] pad / [CLS] t1 t2 t3 [SEP] (t1 in both)."""
    lhs = rng.normal(size=(n_windows, seq_len, width)).astype("float32")
    rows = numpy.array([1, 2, 6, 7, 8], dtype="int32")
    lengths = numpy.array([1, 2, 1, 1], dtype="int32")
    return TransformerData(
        wordpieces=None, model_output=ModelOutput(last_hidden_state=lhs), align=Ragged(rows, lengths)
    )


class _FakeListener:
    """Stands in for a spacy-transformers listener: returns the given output
    and records the gradient it gets back."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.received = None

    def __call__(self, docs, is_train):
        def backprop(d):
            self.received = d
            return []

        return self.outputs, backprop


def test_max_context_replaces_cls_with_the_window_max_and_routes_its_gradient():
    rng = numpy.random.default_rng(1)
    trf = _trf_data(rng)
    original = trf.model_output.last_hidden_state.copy()
    assert [w.tolist() for w in trf_windows(trf)] == [[1, 2], [6, 7, 8]]
    fake = _FakeListener([trf])
    model = with_max_context(build_wordpiece_listener())
    model.layers[0] = fake  # (the wrapper calls its first layer)
    (out,), backprop = model._func(model, [None], True)
    lhs = out.model_output.last_hidden_state
    flat = original.reshape(-1, 3)
    numpy.testing.assert_allclose(lhs[0, 0], flat[[1, 2]].max(0))
    numpy.testing.assert_allclose(lhs[1, 0], flat[[6, 7, 8]].max(0))
    numpy.testing.assert_array_equal(lhs[:, 1:], original[:, 1:])
    numpy.testing.assert_array_equal(trf.model_output.last_hidden_state, original)  # the doc's output is untouched
    d_lhs = rng.normal(size=lhs.shape).astype("float32")
    backprop([TransformerData(wordpieces=None, model_output=ModelOutput(last_hidden_state=d_lhs), align=trf.align)])
    got = fake.received[0].model_output.last_hidden_state.reshape(-1, 3)
    expected = d_lhs.reshape(-1, 3).copy()
    expected[[0, 5]] = 0.0  # [CLS] was not used
    for w, rows in enumerate(([1, 2], [6, 7, 8])):
        arg = numpy.asarray(rows)[flat[rows].argmax(0)]
        expected[arg, numpy.arange(3)] += d_lhs[w, 0]
    numpy.testing.assert_allclose(got, expected, rtol=1e-6)


def test_unknown_context_is_refused():
    with pytest.raises(ValueError, match="Unknown spert listener context 'mean': use 'cls' or 'max'"):
        build_wordpiece_listener(context="mean")


@pytest.mark.parametrize("window", ["doc", "strided"])
def test_max_context_overfits(tiny_bert, window):
    fix_random_seed(0)
    config = {
        "model": {
            "@architectures": "spacy-spert.SpERT.v1",
            "tok2vec": {"@layers": "spacy-spert.WordpieceListener.v1", "context": "max"},
        }
    }
    nlp = make_nlp(tiny_bert, config, window=window)
    examples = overfit(nlp, n_steps=60, learn_rate=3e-3)
    for eg in examples:
        doc = nlp(eg.reference.text)
        gold = eg.reference
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [
            (s.start, s.end, s.label_) for s in gold.spans["sc"]
        ]
        key = lambda r: (r["head_start"], r["tail_start"], r["label"])  # noqa: E731
        assert sorted(map(key, doc._.relations)) == sorted(map(key, gold._.relations))


# Listener and pipeline that do not fit: the error names the actual problem --------------


def _initialize_error(nlp) -> str:
    examples = train_examples(nlp)
    with pytest.raises(ValueError) as err:
        nlp.initialize(lambda: examples)
    return str(err.value)


def test_no_transformer_is_named():
    nlp = spacy.blank("en")
    nlp.add_pipe("spert")
    message = _initialize_error(nlp)
    assert "has no 'transformer' component to listen to: add a 'transformer'" in message and "['spert']" in message


def test_transformer_after_spert_is_named(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.remove_pipe("transformer")
    nlp.add_pipe("transformer", config={"model": {"name": str(tiny_bert), "tokenizer_config": {"use_fast": True}}})
    message = _initialize_error(nlp)
    assert "comes before its transformer 'transformer'" in message


def test_other_upstream_name_is_named(tiny_bert):
    nlp = make_nlp(
        tiny_bert, {"model": {"tok2vec": {"@layers": "spacy-spert.WordpieceListener.v1", "upstream": "encoder"}}}
    )
    message = _initialize_error(nlp)
    assert "listens to the component 'encoder'" in message and "'transformer'" in message


def test_pooling_listener_is_named(tiny_bert):
    pooling = {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "pooling": {"@layers": "reduce_mean.v1"},
    }
    nlp = make_nlp(tiny_bert, {"model": {"tok2vec": pooling}})
    message = _initialize_error(nlp)
    assert "pools the wordpieces into one vector per token" in message
    assert "spacy-spert.WordpieceListener.v1" in message
