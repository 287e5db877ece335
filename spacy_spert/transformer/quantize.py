"""Faster CPU inference: int8 dynamic quantization of the encoder.

:func:`quantize` replaces every ``torch.nn.Linear`` of the Hugging Face model
inside each ``transformer`` component of a loaded pipeline with PyTorch's
dynamically quantized linear layer (``torch.ao.quantization.quantize_dynamic``,
int8 weights, activations quantized per batch at run time, the x86/fbgemm CPU
kernels). The linear layers hold nearly all of a BERT-like encoder's
arithmetic, so a CPU pipeline runs faster at a small cost in accuracy (see
docs/serving-and-scale.md for the measured docs/s and F1 on CoNLL04). The spert head stays in
float32: it is a small share of the time and its outputs are the scores.

A quantized pipeline is for inference on the CPU only: its transformer cannot
be trained, and it must not be saved (``nlp.to_disk`` would write int8
weights that a pipeline loads as float32). Quantize after loading, e.g.
``predict(..., quantize=True)`` or ``python -m spacy_spert predict --quantize``.

PyTorch marks ``torch.ao.quantization`` as deprecated in favour of the
separate ``torchao`` package, but still ships and tests it (2.13); its
deprecation warnings are silenced here, once, for this call.
"""

import warnings
from typing import Any, List

import torch
from spacy.language import Language

__all__ = ["QUANTIZED_ATTR", "quantize"]

# Set in the transformer model's attrs once its encoder is quantized.
QUANTIZED_ATTR = "spacy_spert_quantized"


def _transformer_models(nlp: Language) -> List[Any]:
    """The spacy-transformers ``TransformerModel`` of each component that has one."""
    models = []
    for _, component in nlp.pipeline:
        model = getattr(component, "model", None)
        if (
            model is not None
            and hasattr(model, "attrs")
            and "get_spans" in model.attrs
            and hasattr(model, "transformer")
        ):
            models.append(model)
    return models


def quantize(nlp: Language) -> Language:
    """Quantize the linear layers of every transformer component's encoder to
    int8 (dynamic quantization) for faster CPU inference, in place.

    nlp (Language): A loaded pipeline, on the CPU, with at least one
        spacy-transformers ``transformer`` component (initialized or loaded).
    RETURNS (Language): The same pipeline, quantized (quantizing twice is a no-op).
    RAISES: ValueError if the pipeline has no transformer, its encoder is not
        loaded, or it is on a GPU (int8 dynamic quantization runs on the CPU only).
    """
    models = _transformer_models(nlp)
    if not models:
        raise ValueError(
            "quantize: the pipeline has no spacy-transformers 'transformer' component whose encoder could be "
            f"quantized (components: {', '.join(nlp.pipe_names) or 'none'})."
        )
    for model in models:
        if model.attrs.get(QUANTIZED_ATTR):
            continue
        encoder = model.transformer
        if encoder is None:
            raise ValueError(
                "quantize: the transformer is not initialized or loaded yet: load a trained pipeline first."
            )
        devices = {p.device.type for p in encoder.parameters()}
        if devices - {"cpu"}:
            raise ValueError(
                f"quantize: the transformer is on the GPU ({', '.join(sorted(devices - {'cpu'}))}); int8 dynamic "
                "quantization is for CPU inference. Load the pipeline without --gpu-id / spacy.require_gpu()."
            )
        encoder.eval()
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning
            )
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated", category=UserWarning)
            torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        model.attrs[QUANTIZED_ATTR] = True
    return nlp
