"""Max-pooling of token ranges over wordpieces (``RangeMax``).

Token vectors are the max over each token's wordpieces; a sparse table of
range maxima then pools any token range with two row reads, so that neither
a spans x wordpieces x hidden tensor nor a Python loop over spans or pairs is
needed. The head pools spans and the contexts between two spans with it.
"""

from typing import Optional, Union

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
        # covered[i]: tokens with wordpieces before token i (None: all have)
        # Tokens with wordpieces before each token: numpy on the host, else a tensor.
        self.covered: Optional[Union[numpy.ndarray, torch.Tensor]] = None
        if not all_covered:
            if host:
                has_wp = numpy.bincount(align_tokens, minlength=n_tokens) > 0
                self.covered = numpy.concatenate([[0], numpy.cumsum(has_wp)])
            else:
                has_wp = align_tokens.new_zeros((n_tokens,))
                has_wp[align_tokens] = 1
                self.covered = torch.cat([has_wp.new_zeros((1,)), has_wp.cumsum(0)])
        index = as_index(align_tokens, self.device).unsqueeze(1).expand(-1, width)
        src = take_rows(hidden, align_rows)
        n_levels = max(1, int(max_range).bit_length())  # 2**k <= max_range
        if self.grad:
            tokens = hidden.new_full((n_tokens, width), NEG_INF).scatter_reduce(0, index, src, reduce="amax")
            levels = [tokens]
            for k in range(1, n_levels):
                step = 1 << (k - 1)
                prev = levels[-1]
                levels.append(torch.maximum(prev, torch.cat([prev[step:], prev.new_full((step, width), NEG_INF)])))
            self.table = torch.cat(levels + [hidden.new_zeros((1, width))])
        else:
            # Inference: the levels are written into one slab in place, and
            # only the rows of level k that a range can read (start <=
            # N - 2**k); the others are never written nor read.
            table = hidden.new_empty((n_levels * n_tokens + 1, width))
            if all_covered:
                table[:n_tokens].scatter_reduce_(0, index, src, reduce="amax", include_self=False)
            else:
                table[:n_tokens].fill_(NEG_INF).scatter_reduce_(0, index, src, reduce="amax")
            # A short block's levels on the CPU are written through numpy,
            # whose slices of the same memory cost a fraction of torch's (a
            # sentence's levels take less time to compute than torch takes to
            # slice them); longer ones by torch, which uses all threads.
            small = table.device.type == "cpu" and n_tokens * width <= tuning.NUMPY_LEVELS_MAX_VALUES
            slab, maximum = (table.numpy(), numpy.maximum) if small else (table, torch.maximum)
            slab[-1] = 0.0
            for k in range(1, n_levels):
                step, rows = 1 << (k - 1), n_tokens - (1 << k) + 1
                prev = (k - 1) * n_tokens
                maximum(
                    slab[prev : prev + rows],
                    slab[prev + step : prev + step + rows],
                    out=slab[k * n_tokens : k * n_tokens + rows],
                )
            self.table = table
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
        lengths = ends - starts
        valid = None if nonempty else lengths > 0
        if self.covered is not None:
            has_wp = self._has_wordpieces(starts, ends)
            valid = has_wp if valid is None else valid & has_wp
        if valid is not None:
            invalid = ~valid
            lengths[invalid] = 0  # any level will do: the rows are replaced
        level = self.log2[lengths]
        base = level * self.n_tokens
        a = base + starts
        b = base + ends - (1 << level)
        if valid is not None:
            a[invalid] = self.zero_row
            b[invalid] = self.zero_row
        return a, b

    def _has_wordpieces(self, starts, ends):
        """RETURNS: bool (S,), the ranges that hold a token with wordpieces
        (only when some token has none: ``covered`` is set)."""
        return (self.covered[ends] - self.covered[starts]) > 0

    def all_covering(self, starts: numpy.ndarray, ends: numpy.ndarray) -> bool:
        """RETURNS (bool): Every range (numpy, non-empty) holds a token with
        wordpieces, so that none pools to zeros."""
        return self.covered is None or bool(self._has_wordpieces(starts, ends).all())

    def __call__(self, starts, ends, nonempty: bool = False) -> torch.Tensor:
        """RETURNS (torch.Tensor): (len(starts), H) the max over [start, end).

        starts, ends: (S,) the ranges, numpy arrays or torch tensors.
        nonempty (bool): The caller guarantees end > start for every range
            (spans), so that no check is needed when every token has wordpieces.
        """
        a, b = self.rows(starts, ends, nonempty)
        if self.grad:
            return torch.maximum(take(self.table, a), take(self.table, b))
        n = len(a)  # inference: both rows of every range in one gather
        both = take(self.table, numpy.concatenate([a, b]) if isinstance(a, numpy.ndarray) else torch.cat([a, b]))
        return torch.maximum(both[:n], both[n:], out=both[:n])


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
