"""Small tensor helpers of the head's inference: gathers of rows at indices
that come as numpy arrays (worked out on the host) or as torch tensors."""

from typing import Union

import numpy
import torch

Indices = Union[numpy.ndarray, torch.Tensor]


def as_index(rows: Indices, device: torch.device) -> torch.Tensor:
    """RETURNS (torch.Tensor): Indices (a numpy array or a tensor) as a
    tensor on the device (on the CPU sharing the numpy array's memory)."""
    if isinstance(rows, numpy.ndarray):
        rows = torch.from_numpy(rows)
    return rows if rows.device == device else rows.to(device)


def take(x: torch.Tensor, rows: Indices) -> torch.Tensor:
    """RETURNS (torch.Tensor): The rows of x at the indices (numpy or torch)."""
    return x.index_select(0, as_index(rows, x.device))


def take_rows(x: torch.Tensor, rows: Indices) -> torch.Tensor:
    """RETURNS (torch.Tensor): The rows of x at the indices, as a view when
    they are one increasing run of numpy indices (a doc's wordpieces in one
    window), else gathered."""
    if isinstance(rows, numpy.ndarray) and len(rows) > 1:
        first, last = int(rows[0]), int(rows[-1])
        if last - first == len(rows) - 1 and not numpy.count_nonzero(rows[1:] - rows[:-1] - 1):
            return x[first : last + 1]
    return take(x, rows)
