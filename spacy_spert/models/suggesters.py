"""Candidate generation: which spans the model scores and which of them it
may pair.

Everything here works on token offsets with numpy and has no model state.
Three words name the units candidates live in:

* scope: the unit that candidate spans and relation pairs never cross, a
  sentence (``scope="sentence"``, when the doc has sentence boundaries) or the
  whole doc (``scope_ids``);
* pairing group: a scope cut into pieces of at most ``max_group_length``
  tokens; relation candidates are the pairs of spans that start in the same
  group, so pairs grow linearly with the length of a text
  (``pairing.pairing_groups``);
* block: at inference, consecutive whole pairing groups that the model pools
  and classifies together, to bound its memory (``Candidates.blocks``).

The pieces:

* ``Suggester``: the protocol of what the ``spert`` component asks of a
  suggester, which the two below implement.
* ``SpanCandidates`` (registered as ``spacy-spert.span_candidates.v1``): the
  default suggester. It gives every span of 1..max_width tokens inside a
  scope, not starting or ending on a whitespace token, and the pairing group
  of each token; training samples from these candidates and inference scores
  them.
* ``GivenEntities`` (``spacy-spert.given_entities.v1``): the suggester for
  relation extraction over entities that are already there (``doc.ents`` or a
  span group): they are the candidates, and only relations are classified.
* ``DocCandidates`` and ``Candidates``: the candidate spans of one doc, and
  of a batch of docs in global token offsets, the model's input at inference.

SpERT's training sample drawn from the candidates is in ``sampling.py``; the
pairing groups and the pairs they allow in ``pairing.py``.
"""

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy
from spacy.tokens import Doc, Span
from spacy.util import registry

from . import tuning
from .pairing import pairing_groups

Ints1d = numpy.ndarray

SCOPES = ("doc", "sentence")


def enumerate_spans(
    n_tokens: int,
    max_width: int,
    scopes: Optional[Ints1d] = None,
    skip: Optional[Ints1d] = None,
) -> Tuple[Ints1d, Ints1d]:
    """All spans of ``1..max_width`` tokens of a doc, vectorized.

    n_tokens (int): The number of tokens in the doc.
    max_width (int): The widest span, in tokens.
    scopes (Optional[Ints1d]): A scope id per token (``scope_ids``, e.g. the
        sentence index); spans never cross a scope boundary. None: one scope.
    skip (Optional[Ints1d]): A bool per token; spans that start or end on such a
        token (e.g. whitespace) are left out.
    RETURNS (Tuple[Ints1d, Ints1d]): starts and (exclusive) ends, int64, ordered
        by start, then width.
    """
    if n_tokens == 0 or max_width < 1:
        empty = numpy.zeros((0,), dtype="int64")
        return empty, empty.copy()
    if skip is not None and not numpy.count_nonzero(skip):  # (count_nonzero: a fraction of any's cost)
        skip = None
    if scopes is None and skip is None and n_tokens <= tuning.SPAN_GRID_CACHE_TOKENS:
        return _span_grid(n_tokens, max_width)
    return _enumerate_spans(n_tokens, max_width, scopes, skip)


@lru_cache(maxsize=512)
def _span_grid(n_tokens: int, max_width: int) -> Tuple[Ints1d, Ints1d]:
    """RETURNS (Tuple[Ints1d, Ints1d]): ``enumerate_spans(n_tokens,
    max_width)``, read-only (the arrays are shared by every call)."""
    starts, ends = _enumerate_spans(n_tokens, max_width, None, None)
    starts.flags.writeable = False
    ends.flags.writeable = False
    return starts, ends


def _enumerate_spans(
    n_tokens: int, max_width: int, scopes: Optional[Ints1d], skip: Optional[Ints1d]
) -> Tuple[Ints1d, Ints1d]:
    """``enumerate_spans`` of a non-empty doc, computed."""
    # (start, width - 1) grid; nonzero reads it in (start, width) order
    last = numpy.arange(n_tokens, dtype="int64")[:, None] + numpy.arange(max_width, dtype="int64")[None, :]
    keep = last < n_tokens
    last = numpy.minimum(last, n_tokens - 1)
    if scopes is not None:
        keep &= scopes[:, None] == scopes[last]
    if skip is not None:
        keep &= ~skip[:, None] & ~skip[last]
    starts, widths = numpy.nonzero(keep)
    return starts, starts + widths + 1


def scope_ids(doc: Doc, scope: str) -> Optional[Ints1d]:
    """The scope of each token: None (one scope) for ``scope="doc"`` or a doc
    without sentence boundaries, else the sentence index. Candidate spans and
    relation pairs never cross a scope boundary.

    doc (Doc): The doc.
    scope (str): "doc" or "sentence".
    RETURNS (Optional[Ints1d]): (n_tokens,) int64 ids, or None.
    """
    if scope not in SCOPES:
        raise ValueError(f"Unknown candidate scope '{scope}': use 'doc' or 'sentence'.")
    if scope == "doc" or len(doc) == 0:
        return None
    if not (doc.has_annotation("SENT_START") or doc.has_annotation("DEP")):
        return None
    if doc.has_annotation("SENT_START"):
        starts = doc.to_array("SENT_START") == 1
    else:
        starts = numpy.asarray([t.is_sent_start for t in doc], dtype=bool)
    starts[0] = True
    return numpy.cumsum(starts) - 1


def whitespace_mask(doc: Doc) -> Ints1d:
    """A bool per token: True for whitespace-only tokens."""
    return doc.to_array("IS_SPACE").astype(bool) if len(doc) else numpy.zeros((0,), dtype=bool)


@dataclass
class DocCandidates:
    """The candidate spans of one doc, in the doc's token offsets.

    starts, ends: (S,) the spans (end exclusive), ordered by start, then width.
    token_groups: (n_tokens,) the pairing group of each token.
    """

    starts: Ints1d
    ends: Ints1d
    token_groups: Ints1d

    @classmethod
    def all_spans(
        cls,
        n_tokens: int,
        max_width: int,
        scopes: Optional[Ints1d] = None,
        skip: Optional[Ints1d] = None,
        max_group_length: int = 0,
    ) -> "DocCandidates":
        """Every span of 1..max_width tokens within a scope (see
        ``enumerate_spans``) and the pairing groups (see ``pairing_groups``)."""
        starts, ends = enumerate_spans(n_tokens, max_width, scopes, skip)
        return cls(starts, ends, pairing_groups(n_tokens, scopes, max_group_length))


def doc_offsets(docs: Sequence[Doc]) -> Ints1d:
    """RETURNS (Ints1d): (n_docs + 1,) the global offset of each doc's first
    token, and the total number of tokens last."""
    if len(docs) == 1:
        return numpy.asarray([0, len(docs[0])], dtype="int64")
    offsets = numpy.zeros((len(docs) + 1,), dtype="int64")
    offsets[1:] = [len(doc) for doc in docs]
    return numpy.cumsum(offsets, out=offsets)


@dataclass
class Candidates:
    """The candidate spans of a batch of docs, the model's input at inference.

    Offsets are global: token i of doc d is ``doc_offsets[d] + i``.

    doc_offsets: (n_docs + 1,) token offset of each doc.
    starts, ends: (S,) span boundaries (end exclusive), ordered by group.
    groups: (S,) the pairing group of each span, numbered across the batch;
        relation candidates are the pairs of kept spans of one group.
    given_entities: True when every candidate is a given entity
        (``GivenEntities``): all are kept, and only relations are classified.
    """

    doc_offsets: Ints1d
    starts: Ints1d
    ends: Ints1d
    groups: Ints1d
    given_entities: bool = False
    _extents: Optional[Tuple[Ints1d, Ints1d, Ints1d, Ints1d]] = field(
        default=None, init=False, repr=False, compare=False
    )

    def span_docs(self) -> Ints1d:
        """RETURNS (Ints1d): (S,) the doc index of each span."""
        return numpy.searchsorted(self.doc_offsets, self.starts, side="right") - 1

    def max_range(self) -> int:
        """The longest token range the model may pool: the widest pairing
        group (max end - min start of its spans), which holds every span and
        every context between two of its spans."""
        if len(self.starts) == 0:
            return max(1, int(numpy.diff(self.doc_offsets).max(initial=1)))
        _, _, tok_lo, tok_hi = self._group_extents()
        extents = tok_hi - tok_lo
        return max(1, int(extents[0] if len(extents) == 1 else extents.max()))

    def _group_extents(self) -> Tuple[Ints1d, Ints1d, Ints1d, Ints1d]:
        """Per pairing group: its first and end span index, and the first and
        end token its spans cover (computed once)."""
        if self._extents is None:
            self._extents = self._compute_group_extents()
        return self._extents

    def _compute_group_extents(self) -> Tuple[Ints1d, Ints1d, Ints1d, Ints1d]:
        g = self.groups
        new_group = g[1:] != g[:-1]
        if not numpy.count_nonzero(new_group):  # one group (a sentence)
            return (
                numpy.zeros((1,), dtype="int64"),
                numpy.asarray([len(g)], dtype="int64"),
                self.starts.min(keepdims=True),
                self.ends.max(keepdims=True),
            )
        if (g[1:] < g[:-1]).any():
            raise ValueError("Candidates need spans ordered by pairing group")
        lo = numpy.concatenate([[0], numpy.flatnonzero(new_group) + 1])
        hi = numpy.append(lo[1:], len(g))
        return lo, hi, numpy.minimum.reduceat(self.starts, lo), numpy.maximum.reduceat(self.ends, lo)

    def blocks(self, max_tokens: int) -> List[Tuple[int, int, int, int]]:
        """Consecutive whole pairing groups, each block covering at most
        ``max_tokens`` tokens (or one group, if it alone covers more).

        RETURNS (List[Tuple[int, int, int, int]]): (first span, end span, first
            token, end token) per block; the token range holds all its spans.
        """
        if len(self.starts) == 0:
            return []
        lo, hi, tok_lo, tok_hi = self._group_extents()
        blocks: List[List[int]] = []
        for i in range(len(lo)):
            if blocks and max(blocks[-1][3], tok_hi[i]) - blocks[-1][2] <= max_tokens:
                blocks[-1][1] = int(hi[i])
                blocks[-1][3] = max(blocks[-1][3], int(tok_hi[i]))
            else:
                blocks.append([int(lo[i]), int(hi[i]), int(tok_lo[i]), int(tok_hi[i])])
        return [(b[0], b[1], b[2], b[3]) for b in blocks]


def concat_arrays(arrays: List[numpy.ndarray], dtype: str) -> numpy.ndarray:
    """Concatenate 1d arrays (of the docs of a batch).

    arrays (List[numpy.ndarray]): The arrays, possibly none.
    dtype (str): The dtype of the result, also when there are no arrays.
    RETURNS (numpy.ndarray): The concatenation (no copy for a matching dtype).
    """
    if not arrays:
        return numpy.zeros((0,), dtype=dtype)
    return numpy.concatenate(arrays).astype(dtype, copy=False)


@runtime_checkable
class Suggester(Protocol):
    """What the ``spert`` component asks of its suggester (the
    ``suggester`` setting): the candidates of a batch (``__call__``, at
    inference) and of one doc (``doc_candidates``, to sample from in
    training), and whether the candidates are entities given to the model.
    ``SpanCandidates`` and ``GivenEntities`` implement it.

    gives_entities (bool): False: the candidates are all possible spans and
        the model decides which are entities; True: the candidates are
        entities that an earlier component or the data gives (``entities``),
        and the model only classifies the relations among them.
    where (str): Where the given entities are, for messages ("doc.ents",
        "doc.spans['KEY']"); "" when the suggester gives none.
    """

    gives_entities: bool
    where: str

    def __call__(self, docs: Sequence[Doc]) -> "Candidates":
        """RETURNS (Candidates): The candidates of a batch of docs in global
        token offsets, with pairing groups numbered across the batch
        (``batch_candidates``)."""
        ...

    def doc_candidates(self, doc: Doc) -> DocCandidates:
        """RETURNS (DocCandidates): The candidates of one doc."""
        ...

    def entities(self, doc: Doc) -> List[Span]:
        """RETURNS (List[Span]): The given entities of a doc in candidate
        order, which keep their labels (none when ``gives_entities`` is
        False)."""
        ...


def batch_candidates(
    docs: Sequence[Doc], doc_candidates: Callable[[Doc], DocCandidates], given_entities: bool = False
) -> Candidates:
    """The candidates of a batch of docs, what a suggester returns.

    docs (Sequence[Doc]): The docs.
    doc_candidates (Callable[[Doc], DocCandidates]): The candidates of one doc.
    given_entities (bool): The candidates are given entities (``Candidates``).
    RETURNS (Candidates): The candidates in global token offsets, with pairing
        groups numbered across the batch.
    """
    offsets = doc_offsets(docs)
    parts = []
    n_groups = 0
    for i, doc in enumerate(docs):
        cands = doc_candidates(doc)
        group = cands.token_groups[cands.starts]
        offset = int(offsets[i])
        if offset:
            parts.append((cands.starts + offset, cands.ends + offset, group + n_groups))
        else:  # the first doc: no copies (its spans may be the shared read-only grid)
            parts.append((cands.starts, cands.ends, group))
        n_groups += int(group[-1]) + 1 if len(group) else 1  # groups ascend with the spans
    if len(parts) == 1:
        starts, ends, groups = parts[0]
    else:
        starts, ends, groups = (concat_arrays([part[k] for part in parts], "int64") for k in range(3))
    return Candidates(doc_offsets=offsets, starts=starts, ends=ends, groups=groups, given_entities=given_entities)


def _check_pairing(name: str, scope: str, max_group_length: int) -> None:
    if scope not in SCOPES:
        raise ValueError(f"{name}: scope must be 'doc' or 'sentence', not '{scope}'")
    if max_group_length < 0:
        raise ValueError(f"{name}: max_group_length must be >= 0 (0: no limit), not {max_group_length}")


class SpanCandidates:
    """The default suggester of the ``spert`` component: every span of up to
    ``max_width`` tokens within a scope (not starting or ending on a
    whitespace token) and the pairing groups, the same for training and
    inference.

    max_width (int): The widest candidate span, in tokens (10).
    scope (str): "sentence": spans and pairs stay within a sentence (the whole
        doc when it has no sentence boundaries); "doc": they may cross.
    max_group_length (int): Pairs only among spans that start in the same
        piece of at most this many tokens of a scope (0: no limit).
    """

    gives_entities = False
    where = ""

    def __init__(self, max_width: int = 10, scope: str = "sentence", max_group_length: int = 128):
        if max_width < 1:
            raise ValueError(f"span_candidates: max_width must be at least 1, not {max_width}")
        _check_pairing("span_candidates", scope, max_group_length)
        self.max_width = max_width
        self.scope = scope
        self.max_group_length = max_group_length

    def __call__(self, docs: Sequence[Doc]) -> Candidates:
        """RETURNS (Candidates): The candidates of a batch of docs."""
        return batch_candidates(docs, self.doc_candidates)

    def entities(self, doc: Doc) -> List[Span]:
        """RETURNS (List[Span]): No given entities: the model decides which
        candidates are entities."""
        return []

    def doc_candidates(self, doc: Doc) -> DocCandidates:
        """RETURNS (DocCandidates): The candidates of one doc."""
        return DocCandidates.all_spans(
            len(doc), self.max_width, scope_ids(doc, self.scope), whitespace_mask(doc), self.max_group_length
        )


class GivenEntities:
    """The suggester for relation extraction over entities that are already
    there: the spans of ``doc.ents`` or of a span group, set by an earlier
    component (``ner``, ``entity_ruler``, ``span_ruler``, ...) or given in
    the data. They keep their labels; the model only classifies the relations
    among them, and in training learns the relations only.

    source (str): "ents" for ``doc.ents``, or "spans:KEY" for ``doc.spans[KEY]``.
    scope (str), max_group_length (int): Which pairs are classified, as for
        ``SpanCandidates`` (pairs of entities that start in one sentence and
        within max_group_length tokens of each other).
    """

    gives_entities = True

    def __init__(self, source: str = "ents", scope: str = "sentence", max_group_length: int = 128):
        if source != "ents" and not (source.startswith("spans:") and len(source) > len("spans:")):
            raise ValueError(f"given_entities: source must be 'ents' or 'spans:KEY', not '{source}'")
        _check_pairing("given_entities", scope, max_group_length)
        self.source = source
        self.scope = scope
        self.max_group_length = max_group_length

    @property
    def where(self) -> str:
        """RETURNS (str): Where the entities are, for messages: "doc.ents" or
        "doc.spans['KEY']"."""
        return "doc.ents" if self.source == "ents" else f"doc.spans['{self.source[len('spans:') :]}']"

    def entities(self, doc: Doc) -> List[Span]:
        """The given entities of a doc, ordered by (start, end); of several
        with the same boundaries the first is kept. A missing span group
        gives none.

        RETURNS (List[Span]): The entities.
        """
        if self.source == "ents":
            spans = list(doc.ents)
        else:
            spans = list(doc.spans.get(self.source[len("spans:") :], []))
        unique: Dict[Tuple[int, int], Span] = {}
        for span in spans:
            unique.setdefault((span.start, span.end), span)
        return [unique[key] for key in sorted(unique)]

    def __call__(self, docs: Sequence[Doc]) -> Candidates:
        """RETURNS (Candidates): The given entities of a batch of docs."""
        return batch_candidates(docs, self.doc_candidates, given_entities=True)

    def doc_candidates(self, doc: Doc) -> DocCandidates:
        """RETURNS (DocCandidates): The given entities of one doc and the
        pairing groups."""
        spans = self.entities(doc)
        return DocCandidates(
            starts=numpy.asarray([s.start for s in spans], dtype="int64"),
            ends=numpy.asarray([s.end for s in spans], dtype="int64"),
            token_groups=pairing_groups(len(doc), scope_ids(doc, self.scope), self.max_group_length),
        )


@registry.misc("spacy-spert.given_entities.v1")
def build_given_entities(source: str = "ents", scope: str = "sentence", max_group_length: int = 128) -> GivenEntities:
    """The suggester for relations over given entities: the spans of
    ``doc.ents`` (source "ents") or of ``doc.spans[KEY]`` ("spans:KEY").

    source (str): Where the entities are.
    scope (str): "sentence" or "doc": where pairs may reach.
    max_group_length (int): The longest pairing group in tokens (128; 0: none).
    RETURNS (GivenEntities): The suggester.
    """
    return GivenEntities(source, scope, max_group_length)


@registry.misc("spacy-spert.span_candidates.v1")
def build_span_candidates(max_width: int = 10, scope: str = "sentence", max_group_length: int = 128) -> SpanCandidates:
    """The default suggester of ``spert``: every span of 1..max_width tokens
    within a sentence (or doc), pairs within groups of at most
    max_group_length tokens.

    max_width (int): The widest candidate span, in tokens (10, as SpERT).
    scope (str): "sentence" or "doc" (see ``SpanCandidates``).
    max_group_length (int): The longest pairing group in tokens (128; 0: none).
    RETURNS (SpanCandidates): The suggester.
    """
    return SpanCandidates(max_width, scope, max_group_length)
