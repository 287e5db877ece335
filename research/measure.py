"""How the research tools time and weigh what they measure: complete GPU
timings (:func:`sync`, :func:`stopwatch`), ``nlp.pipe`` runs
(:func:`run_pipe`), the best of repeated runs (:func:`best_of`), and the peak
memory of a case (:func:`reset_peak_memory`, :func:`peak_memory`): torch's
allocation on a GPU, the process's resident memory on the CPU."""

import resource
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

from spacy.language import Language

MB = 2**20


def sync(gpu_id: int) -> None:
    """Wait for the GPU's queued work (nothing on the CPU), so timings are complete."""
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()


@contextmanager
def stopwatch(gpu_id: int, times: List[float]) -> Iterator[None]:
    """Time the block, its GPU work included (:func:`sync` before and after),
    and append its seconds to ``times``.

    gpu_id (int): The GPU, -1 for the CPU. times (List[float]): Where the seconds go.
    """
    sync(gpu_id)
    start = time.perf_counter()
    yield
    sync(gpu_id)
    times.append(time.perf_counter() - start)


def run_pipe(nlp: Language, texts: Sequence[str], batch_size: int, gpu_id: int = -1) -> float:
    """Seconds of ``nlp.pipe`` over the texts (the docs are consumed, not kept).

    nlp (Language): The pipeline. texts (Sequence[str]): The texts.
    batch_size (int): The batch size. gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (float): Seconds.
    """
    times: List[float] = []
    with stopwatch(gpu_id, times):
        for _ in nlp.pipe(texts, batch_size=batch_size):
            pass
    return times[0]


def best_of(timed: Callable[[], float], repeats: int, min_runs: int = 30, budget: float = 1.0) -> float:
    """The best of repeated timings of a call, as ``timeit`` takes them: at
    least ``repeats`` runs, and more for a short call (up to ``min_runs`` runs
    while they take under ``budget`` seconds in all), so that a call of a
    millisecond or two is not timed from a handful of runs.

    timed (Callable[[], float]): Runs the call once, returns its seconds.
    repeats (int): The fewest runs. min_runs (int): Runs a short call gets.
    budget (float): Seconds after which no further runs are added.
    RETURNS (float): The smallest time.
    """
    times: List[float] = []
    while len(times) < repeats or (len(times) < min_runs and sum(times) < budget):
        times.append(timed())
    return min(times)


def median_ms(values: Sequence[float]) -> float:
    """The median in milliseconds, rounded to 0.01.

    values (Sequence[float]): Seconds.
    RETURNS (float): Milliseconds.
    """
    return round(statistics.median(values) * 1000, 2)


def _status_mb(field: str) -> Optional[float]:
    """A memory field of /proc/self/status in MB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _max_rss_mb() -> float:
    """The peak resident memory in MB by ``getrusage`` (Linux: kB), where
    /proc/self/status has none."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def reset_peak_memory(gpu_id: int = -1) -> float:
    """Reset the peak memory to what is in use now, so that loading the model
    does not hide the peak of the run: torch's peak allocation on a GPU, the
    process's peak resident memory on the CPU (where Linux allows it).

    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (float): The memory in use now, in MB.
    """
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / MB
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    current = _status_mb("VmRSS")
    return current if current is not None else _max_rss_mb()


def peak_memory(gpu_id: int = -1) -> float:
    """The peak memory since :func:`reset_peak_memory` (GPU: torch's
    allocation; CPU: the resident memory).

    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (float): MB.
    """
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MB
    peak = _status_mb("VmHWM")
    return peak if peak is not None else _max_rss_mb()
