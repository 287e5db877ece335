"""Small tensor helpers of the head's inference: gathers of rows at indices
that come as numpy arrays (worked out on the host) or as torch tensors, and
``IndexStage``, which moves the numpy indices of a phase of inference to the
head's device together."""

from typing import List, Optional, Tuple, Union

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


def run_of(rows: numpy.ndarray) -> Optional[Tuple[int, int]]:
    """RETURNS (Optional[Tuple[int, int]]): (first, end) when the indices are
    one increasing run of more than one row (a doc's wordpieces in one
    window), so that a slice reads them; else None."""
    if len(rows) > 1:
        first, last = int(rows[0]), int(rows[-1])
        if last - first == len(rows) - 1 and not numpy.count_nonzero(rows[1:] - rows[:-1] - 1):
            return first, last + 1
    return None


def take_rows(x: torch.Tensor, rows: Indices) -> torch.Tensor:
    """RETURNS (torch.Tensor): The rows of x at the indices, as a view when
    they are one increasing run of numpy indices (a doc's wordpieces in one
    window), else gathered."""
    if isinstance(rows, numpy.ndarray):
        run = run_of(rows)
        if run is not None:
            return x[run[0] : run[1]]
    return take(x, rows)


class IndexStage:
    """The numpy index arrays of a phase of inference, moved to the device
    together: ``add`` registers an array (worked out on the host) and returns
    its handle, ``send`` moves every array added since the last send, and
    ``stage.tensors[handle]`` (or ``stage[handle]``) is then the array as a
    tensor on the device.

    On the CPU each array becomes a tensor that shares its memory (no copy);
    on an accelerator (or with ``pack``) the arrays are packed into one int64
    buffer and moved in one copy, from pinned memory and without waiting on
    CUDA, so that neither the host nor the device waits for the other, and
    the tensors are views of that buffer.

    device (torch.device): The head's device.
    pack (bool): Pack the arrays on the CPU too (the accelerators' path,
        so that tests on the CPU run it).
    """

    def __init__(self, device: torch.device, pack: bool = False):
        self.device = device
        self.pack = pack or device.type != "cpu"
        self.transfers = 0  # sends that moved arrays (for tests)
        self._pending: List[numpy.ndarray] = []
        self.tensors: List[torch.Tensor] = []  # the sent arrays, at their handles
        self._unsent = False

    def add(self, array: numpy.ndarray) -> int:
        """array (numpy.ndarray): 1d integer indices.
        RETURNS (int): Its handle, valid after the next ``send``."""
        if not self.pack:  # (no copy: the tensor shares the array's memory)
            self.tensors.append(torch.from_numpy(array))
            self._unsent = True
            return len(self.tensors) - 1
        self._pending.append(array)
        return len(self.tensors) + len(self._pending) - 1

    def send(self) -> None:
        """Move the arrays added since the last send to the device."""
        if not self.pack:
            self.transfers += self._unsent
            self._unsent = False
            return
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self.transfers += 1
        flat = numpy.concatenate(pending) if len(pending) > 1 else pending[0]
        host = torch.from_numpy(numpy.ascontiguousarray(flat, dtype="int64"))
        if self.device.type == "cuda":
            # a copy from pinned memory returns at once; the caching host
            # allocator keeps the pinned buffer until the copy is done
            moved = host.pin_memory().to(self.device, non_blocking=True)
        else:
            moved = host.to(self.device)
        self.tensors.extend(torch.split(moved, [len(a) for a in pending]))

    def __getitem__(self, handle: int) -> torch.Tensor:
        """RETURNS (torch.Tensor): The array of the handle, on the device (sent)."""
        return self.tensors[handle]
