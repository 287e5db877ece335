"""The worker of the ``serve`` API: one thread (:class:`Extractor`) runs the
pipeline over the texts that requests queue, in batches of bounded size
taken fairly across requests, and answers each request with its own records
(:func:`~spacy_spert.io.records.output_record`, as ``predict`` writes a JSONL
line)."""

import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language

from ...io.records import output_record, spert_spans_key
from .requests import Item

__all__ = ["DEFAULT_BATCH_CHARS", "DEFAULT_BATCH_SIZE", "Extractor"]

DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_CHARS = 10_000


class _Job:
    """One request's texts: which have been taken into a batch, their records
    so far, and the characters of its texts taken (its place in the fair
    order)."""

    def __init__(self, items: List[Item], served: int, seq: int) -> None:
        self.items, self.served, self.seq = items, served, seq
        self.next = 0  # the first text not yet taken into a batch
        self.records: List[Optional[Dict[str, Any]]] = [None] * len(items)
        self.left = len(items)  # texts not yet answered
        self.failed = False
        self.future: Future[List[Dict[str, Any]]] = Future()

    def key(self) -> Tuple[int, int, int]:
        # Fewest characters served first; then the request with fewer texts
        # taken (a new one before one that is running); then arrival.
        return self.served, self.next, self.seq


class Extractor:
    """Runs a pipeline in one worker thread over the texts that requests
    queue, in batches of at most ``batch_size`` texts and ``batch_chars``
    characters (a longer text is a batch of its own: it cannot be split
    without changing its result).

    The batches are fair: each next text is taken from the request that has
    had the fewest characters run so far (a new request starts level with
    the others, not behind them), so a small request waits for at most about
    the batch in progress, however large the requests queued before it.
    Texts of a request whose future is cancelled (its client has gone) are
    dropped before they run.

    nlp (Language): The pipeline, used by the worker thread only.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    batch_size (int): The most texts of one batch.
    batch_chars (int): The most characters of one batch.
    """

    def __init__(
        self,
        nlp: Language,
        spans_key: Optional[str] = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_chars: int = DEFAULT_BATCH_CHARS,
    ) -> None:
        if batch_size < 1 or batch_chars < 1:
            raise ValueError(f"the batch size and characters must be at least 1, got {batch_size} and {batch_chars}")
        self.nlp, self.batch_size, self.batch_chars = nlp, batch_size, batch_chars
        self.spans_key = spans_key if spans_key is not None else spert_spans_key(nlp)
        self._jobs: List[_Job] = []  # unanswered, in arrival order
        self._seq = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="spacy-spert-extractor", daemon=True)
        self._thread.start()

    def submit(self, items: List[Item]) -> "Future[List[Dict[str, Any]]]":
        """Queue (text, fields) pairs.

        items (List[Tuple[str, Dict]]): The texts and the fields their records carry.
        RETURNS (Future): Gives their records, in order. Cancelling it drops
            its texts that have not run.
        """
        with self._cond:
            if self._closing:
                raise RuntimeError("the extractor is closed")
            waiting = [job.served for job in self._jobs if job.next < len(job.items)]
            self._seq += 1
            job = _Job(list(items), min(waiting, default=0), self._seq)
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    def queued(self) -> int:
        """The number of requests not yet answered (and not cancelled)."""
        with self._cond:
            return sum(1 for job in self._jobs if not job.future.cancelled())

    def extract(self, items: List[Item]) -> List[Dict[str, Any]]:
        """Queue (text, fields) pairs and wait for their records."""
        return self.submit(items).result()

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> List[Tuple[_Job, int]]:
        """The next batch: (job, index of a text) pairs, fairly (see the class)."""
        self._jobs = [job for job in self._jobs if not job.future.cancelled()]  # their clients have gone
        batch: List[Tuple[_Job, int]] = []
        chars = 0
        full: List[_Job] = []  # jobs whose next text does not fit this batch: the others may still
        while len(batch) < self.batch_size:
            waiting = [job for job in self._jobs if job.next < len(job.items) and job not in full]
            if not waiting:
                break
            job = min(waiting, key=_Job.key)
            size = len(job.items[job.next][0])
            if batch and chars + size > self.batch_chars:
                full.append(job)
                continue
            batch.append((job, job.next))
            job.next += 1
            job.served += size
            chars += size
        return batch

    def _run(self, batch: List[Tuple[_Job, int]]) -> None:
        docs = self.nlp.pipe([job.items[i][0] for job, i in batch], batch_size=len(batch))
        # each text's record as predict writes its JSONL line
        records = [output_record(doc, job.items[i][1], self.spans_key) for doc, (job, i) in zip(docs, batch)]
        for (job, i), record in zip(batch, records):
            job.records[i] = record
            job.left -= 1

    def _run_each_job(self, batch: List[Tuple[_Job, int]]) -> None:
        # one request's failure must not fail the others: run them one by one
        for job in dict.fromkeys(job for job, _ in batch):
            try:
                self._run([(j, i) for j, i in batch if j is job])
            except Exception as e:
                job.failed = True
                _settle(job.future, exception=e)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not any(job.next < len(job.items) for job in self._jobs):
                    self._cond.wait()
                batch = self._take()
                if not batch and self._closing:
                    return
            if not batch:
                continue
            try:
                self._run(batch)
            except Exception:
                self._run_each_job(batch)
            with self._cond:
                for job in dict.fromkeys(job for job, _ in batch):
                    if not job.failed and job.left == 0:
                        _settle(job.future, result=job.records)
                self._jobs = [job for job in self._jobs if not job.failed and job.left > 0]


def _settle(future: "Future[Any]", result: Any = None, exception: Optional[BaseException] = None) -> None:
    """Answer a future unless it was cancelled meanwhile (its client has gone)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
