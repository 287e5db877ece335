"""The worker of the ``serve`` API: one thread (:class:`Extractor`) runs the
pipeline over the texts that requests queue, in batches, and answers each
request with its own records (:func:`~spacy_spert.io.records.output_record`,
as ``predict`` writes a JSONL line)."""
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from spacy.language import Language

from ...io.records import output_record, spert_spans_key
from .requests import Item

__all__ = ["DEFAULT_BATCH_SIZE", "Extractor"]

DEFAULT_BATCH_SIZE = 32


@dataclass
class _Job:
    items: List[Item]
    future: "Future[List[Dict[str, Any]]]" = field(default_factory=Future)


class Extractor:
    """Runs a pipeline in one worker thread over the texts that requests
    queue, in batches of up to ``batch_size`` texts (whole requests; a
    request with more texts is one batch of its own).

    nlp (Language): The pipeline, used by the worker thread only.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    batch_size (int): The most texts of one batch.
    """

    def __init__(self, nlp: Language, spans_key: Optional[str] = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {batch_size}")
        self.nlp, self.batch_size = nlp, batch_size
        self.spans_key = spans_key if spans_key is not None else spert_spans_key(nlp)
        self._queue: queue.Queue[Optional[_Job]] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="spacy-spert-extractor", daemon=True)
        self._thread.start()

    def submit(self, items: List[Item]) -> "Future[List[Dict[str, Any]]]":
        """Queue (text, fields) pairs; the future gives their records, in order."""
        job = _Job(list(items))
        self._queue.put(job)
        return job.future

    def extract(self, items: List[Item]) -> List[Dict[str, Any]]:
        """Queue (text, fields) pairs and wait for their records."""
        return self.submit(items).result()

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._thread.join()

    def _run(self, jobs: List[_Job]) -> None:
        texts = [text for job in jobs for text, _ in job.items]
        docs = iter(self.nlp.pipe(texts, batch_size=len(texts)))
        results = []
        for job in jobs:
            # each text's record as predict writes its JSONL line
            results.append([output_record(next(docs), fields, self.spans_key) for _, fields in job.items])
        for job, records in zip(jobs, results):
            job.future.set_result(records)

    def _work(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                return
            jobs, n = [job], len(job.items)
            while n < self.batch_size:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                n += len(more.items)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            try:
                self._run(jobs)
            except Exception:  # one request's failure must not fail the others: run them one by one
                for j in jobs:
                    if j.future.done():
                        continue
                    try:
                        self._run([j])
                    except Exception as e:
                        j.future.set_exception(e)
