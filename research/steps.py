"""A training step as ``spacy train`` runs it, in the parts that ``speed``,
``memory`` and ``optimizer-speed`` time and weigh: the resolved
``[training]`` section (:func:`training_section`), the transformer's own
forward and backward pass (:func:`transformer_step`), the update
(:func:`update`) and the optimizer step (:func:`optimizer_step`)."""

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, cast

from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Optimizer


def training_section(nlp: Language, train_path: Optional[Path] = None) -> Dict[str, Any]:
    """The pipeline's ``[training]`` section, resolved (batcher, optimizer,
    dropout, ...).

    nlp (Language): The pipeline, with its training config.
    train_path (Optional[Path]): The training corpus: the learning-rate
        schedule counts its docs (default: the config's paths.train).
    RETURNS (Dict[str, Any]): The resolved section.
    """
    from spacy import util

    config = nlp.config.copy()
    if train_path is not None:
        config["paths"]["train"] = str(train_path)
    # interpolated: the schedule refers to other sections (batch size, epochs)
    return util.registry.resolve({"t": config.interpolate()["training"]}, validate=False)["t"]


def trainable(nlp: Language) -> List[TrainablePipe]:
    """The components ``spacy train`` calls ``finish_update`` on.

    nlp (Language): The pipeline.
    RETURNS (List[TrainablePipe]): The components.
    """
    return [
        cast(TrainablePipe, proc)
        for _, proc in nlp.pipeline
        if getattr(proc, "is_trainable", False) and getattr(proc, "model", None) not in (True, False, None)
    ]


def update(nlp: Language, batch: Iterable[Example], dropout: float) -> None:
    """The update of a ``spacy train`` step: forward and backward pass of the
    whole pipeline (each component's dropout set), the gradients kept for
    :func:`optimizer_step`.

    nlp (Language): The pipeline. batch (Iterable[Example]): The batch.
    dropout (float): The config's dropout.
    """
    # sgd=False (no optimizer call) is what spacy train passes; Language.update's hint allows only an Optimizer
    nlp.update(batch, drop=dropout, sgd=False, losses={})  # type: ignore[arg-type]


def optimizer_step(nlp: Language, optimizer: Optimizer) -> None:
    """The optimizer step that ends a ``spacy train`` step: ``finish_update``
    of every trainable component, then ``step_schedules`` (which applies the
    step, with global clipping, for ``spacy-spert.AdamW.v1``).

    nlp (Language): The pipeline. optimizer (Optimizer): The config's optimizer.
    """
    for proc in trainable(nlp):
        proc.finish_update(optimizer)
    optimizer.step_schedules()


def transformer_step(trf: Any, docs: List[Doc]) -> None:
    """The transformer's own forward and backward pass on a batch, with a
    gradient for last_hidden_state as the spert listener sends it. (Reaches
    into spacy-transformers' model output: ``doc_data``, ``unsplit_by_doc``.)

    trf (Transformer): The ``transformer`` component. docs (List[Doc]): The batch.
    """
    outputs, backprop = trf.model.begin_update(docs)
    d_tensors = []
    for data in outputs.doc_data:
        lhs = data.model_output.last_hidden_state
        d_tensors.append([trf.model.ops.xp.full(lhs.shape, 1e-6, dtype="float32")])
    backprop(outputs.unsplit_by_doc(d_tensors))
