"""Max-pooling of token ranges over wordpieces (``RangeMax``).

Token vectors are the max over each token's wordpieces; a sparse table of
range maxima then pools any token range with two row reads, so that neither
a spans x wordpieces x hidden tensor nor a Python loop over spans or pairs is
needed. The head pools spans and the contexts between two spans with it.
Training uses ``RangeMax``; inference splits it into ``RangeIndex`` (the
table rows of each range, numpy on the host), ``inference_table`` and
``pool_rows`` (the table and the gathers, on the device).
"""

from typing import Any, Optional, Union

import numpy
import torch

from .. import tuning
from .tensors import as_index, take, take_rows

NEG_INF = float("-inf")


class RangeMax:
    """Max-pool of token ranges from a sparse table of range maxima.

    Token vectors are the max over each token's wordpieces. Level k of the
    table holds the max over 2**k consecutive tokens, so the max over
    [start, end) is max(table[k, start], table[k, end - 2**k]) with
    k = floor(log2(end - start)). A range that is empty or covers no wordpiece
    pools to zeros: it reads the table's last row, which is zero. Levels are
    built up to the longest range that can be asked for (``max_range``), so
    memory is O(N log L x H).

    The ranges and the alignment come as torch tensors (training: the table
    rows are computed on the device) or as numpy arrays (inference: the rows
    are computed on the host, and only the gathers run on the device).

    hidden (torch.Tensor): (R, H) wordpiece vectors.
    align_rows, align_tokens: (A,) the alignment: row of ``hidden`` and
        token of each (token, wordpiece) entry (torch tensors or numpy arrays).
    n_tokens (int): The number of tokens.
    max_range (int): The longest range that will be pooled (<= n_tokens).
    all_covered (bool): Every token has a wordpiece, so that only empty
        ranges need a check (none for ``nonempty`` calls).
    """

    def __init__(self, hidden, align_rows, align_tokens, n_tokens: int, max_range: int, all_covered: bool = False):
        width = hidden.shape[1]
        self.device = hidden.device
        self.grad = torch.is_grad_enabled() and hidden.requires_grad
        host = isinstance(align_tokens, numpy.ndarray)
        # covered[i]: tokens with wordpieces before token i (None: all have);
        # numpy on the host, else a tensor
        self.covered: Optional[Union[numpy.ndarray, torch.Tensor]] = None
        if not all_covered:
            if host:
                self.covered = covered_tokens(align_tokens, n_tokens)
            else:
                has_wp = align_tokens.new_zeros((n_tokens,))
                has_wp[align_tokens] = 1
                self.covered = torch.cat([has_wp.new_zeros((1,)), has_wp.cumsum(0)])
        index = as_index(align_tokens, self.device)
        src = take_rows(hidden, align_rows)
        n_levels = max(1, int(max_range).bit_length())  # 2**k <= max_range
        if self.grad:
            index = index.unsqueeze(1).expand(-1, width)
            tokens = hidden.new_full((n_tokens, width), NEG_INF).scatter_reduce(0, index, src, reduce="amax")
            levels = [tokens]
            for k in range(1, n_levels):
                step = 1 << (k - 1)
                prev = levels[-1]
                levels.append(torch.maximum(prev, torch.cat([prev[step:], prev.new_full((step, width), NEG_INF)])))
            self.table = torch.cat(levels + [hidden.new_zeros((1, width))])
        else:
            self.table = inference_table(hidden, src, index, n_tokens, n_levels, all_covered)
        self.zero_row = self.table.shape[0] - 1
        self.n_tokens = n_tokens
        self.log2 = _floor_log2(n_tokens + 1, None if host else self.device)

    def rows(self, starts, ends, nonempty: bool = False):
        """The two table rows whose maximum is the pool of each range
        [start, end): the zero row (twice) for an empty range or one that
        covers no wordpiece. Works on numpy arrays and on torch tensors alike.

        starts, ends: (S,) the ranges, in the pool's tokens.
        nonempty (bool): The caller guarantees end > start for every range.
        RETURNS (Tuple): (S,) rows a and b, the same kind of array as starts.
        """
        return _table_rows(self, starts, ends, nonempty)

    def __call__(self, starts, ends, nonempty: bool = False) -> torch.Tensor:
        """RETURNS (torch.Tensor): (len(starts), H) the max over [start, end).

        starts, ends: (S,) the ranges, numpy arrays or torch tensors.
        nonempty (bool): The caller guarantees end > start for every range
            (spans), so that no check is needed when every token has wordpieces.
        """
        a, b = self.rows(starts, ends, nonempty)
        if self.grad:
            return torch.maximum(take(self.table, a), take(self.table, b))
        # inference: both rows of every range in one gather
        both = numpy.concatenate([a, b]) if isinstance(a, numpy.ndarray) else torch.cat([a, b])
        return pool_rows(self.table, as_index(both, self.device))


class RangeIndex:
    """The host's part of a block's range-max pooling at inference: which
    rows of the table (``inference_table``) pool each token range, worked
    out with numpy, so that the device only builds the table and gathers
    (``pool_rows``). The same rows as ``RangeMax``'s.

    align_tokens (numpy.ndarray): (A,) the token of each alignment entry.
    n_tokens (int): The number of tokens.
    max_range (int): The longest range that will be pooled (<= n_tokens).
    all_covered (bool): Every token has a wordpiece.
    """

    def __init__(self, align_tokens: numpy.ndarray, n_tokens: int, max_range: int, all_covered: bool = False):
        self.n_tokens = n_tokens
        self.n_levels = max(1, int(max_range).bit_length())  # 2**k <= max_range
        self.zero_row = self.n_levels * n_tokens
        self.covered = None if all_covered else covered_tokens(align_tokens, n_tokens)
        self.log2 = _floor_log2(n_tokens + 1, None)

    def both_rows(self, starts: numpy.ndarray, ends: numpy.ndarray, nonempty: bool = False) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): (2S,) the rows a, then the rows b, of the
        ranges [start, end) (see ``RangeMax.rows``), for ``pool_rows``."""
        a, b = _table_rows(self, starts, ends, nonempty)
        return numpy.concatenate([a, b])

    def all_covering(self, starts: numpy.ndarray, ends: numpy.ndarray) -> bool:
        """RETURNS (bool): Every range (non-empty) holds a token with
        wordpieces, so that none pools to zeros."""
        return self.covered is None or bool(((self.covered[ends] - self.covered[starts]) > 0).all())


def covered_tokens(align_tokens: numpy.ndarray, n_tokens: int) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): (n_tokens + 1,) the number of tokens with
    wordpieces before each token (and in all)."""
    has_wp = numpy.bincount(align_tokens, minlength=n_tokens) > 0
    return numpy.concatenate([[0], numpy.cumsum(has_wp)])


def _table_rows(pool, starts, ends, nonempty: bool):
    """The rows a and b of each range (``RangeMax.rows``) from the pool's
    ``covered``, ``log2``, ``n_tokens`` and ``zero_row``."""
    lengths = ends - starts
    valid = None if nonempty else lengths > 0
    if pool.covered is not None:
        has_wp = (pool.covered[ends] - pool.covered[starts]) > 0
        valid = has_wp if valid is None else valid & has_wp
    if valid is not None:
        invalid = ~valid
        lengths[invalid] = 0  # any level will do: the rows are replaced
    level = pool.log2[lengths]
    base = level * pool.n_tokens
    a = base + starts
    b = base + ends - (1 << level)
    if valid is not None:
        a[invalid] = pool.zero_row
        b[invalid] = pool.zero_row
    return a, b


def inference_table(
    hidden: torch.Tensor, src: torch.Tensor, index: torch.Tensor, n_tokens: int, n_levels: int, all_covered: bool
) -> torch.Tensor:
    """The sparse table of range maxima at inference (no autograd): token
    vectors (the max over each token's wordpieces) and n_levels - 1 levels
    above them, written into one slab in place, and a last row of zeros.
    Only the rows of level k that a range can read (start <= N - 2**k) are
    written; the others are never written nor read.

    hidden (torch.Tensor): (R, H) wordpiece vectors (for the dtype and device).
    src (torch.Tensor): (A, H) the vector of each alignment entry.
    index (torch.Tensor): (A,) the token of each alignment entry.
    n_tokens (int): The number of tokens. n_levels (int): The table's levels.
    all_covered (bool): Every token has a wordpiece.
    RETURNS (torch.Tensor): (n_levels * n_tokens + 1, H) the table.
    """
    width = hidden.shape[1]
    index = index.unsqueeze(1).expand(-1, width)
    table = hidden.new_empty((n_levels * n_tokens + 1, width))
    if all_covered:
        table[:n_tokens].scatter_reduce_(0, index, src, reduce="amax", include_self=False)
    else:
        table[:n_tokens].fill_(NEG_INF).scatter_reduce_(0, index, src, reduce="amax")
    # A short block's levels on the CPU are written through numpy, whose
    # slices of the same memory cost a fraction of torch's (a sentence's
    # levels take less time to compute than torch takes to slice them);
    # longer ones by torch, which uses all threads.
    small = table.device.type == "cpu" and n_tokens * width <= tuning.NUMPY_LEVELS_MAX_VALUES
    slab: Any = table.numpy() if small else table
    maximum: Any = numpy.maximum if small else torch.maximum
    slab[-1] = 0.0
    for k in range(1, n_levels):
        step, rows = 1 << (k - 1), n_tokens - (1 << k) + 1
        prev = (k - 1) * n_tokens
        maximum(
            slab[prev : prev + rows],
            slab[prev + step : prev + step + rows],
            out=slab[k * n_tokens : k * n_tokens + rows],
        )
    return table


def pool_rows(table: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
    """RETURNS (torch.Tensor): (S, H) the max of the table rows a and b of
    each range, from ``both`` (2S,): the rows a, then the rows b (one gather)."""
    n = both.shape[0] // 2
    pair = table.index_select(0, both)
    return torch.maximum(pair[:n], pair[n:], out=pair[:n])


_LOG2_TABLES: dict = {}


def _floor_log2(n: int, device: Optional[torch.device]):
    """(n,) floor(log2(length)) for lengths 0..n-1 (0 -> 0), from a table
    kept per device (None: a numpy array on the host) and grown by doubling,
    so that inference does not build it per batch.
    RETURNS (Union[torch.Tensor, numpy.ndarray]): int64 view of the table."""
    table = _LOG2_TABLES.get(device)
    if table is None or table.shape[0] < n:
        size = max(n, 1024, 2 * (0 if table is None else table.shape[0]))
        lengths = numpy.maximum(numpy.arange(size), 1)
        table = (numpy.frexp(lengths.astype("float64"))[1] - 1).astype("int64")
        if device is not None:
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in training too
                table = torch.from_numpy(table).to(device)
        _LOG2_TABLES[device] = table
    return table[:n]
