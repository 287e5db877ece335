"""Output files that are complete or absent: what ``convert`` and ``predict``
write goes to a temporary file next to the output and is renamed into place at
the end, so that a reader (or a rerun that checks whether the output exists)
never sees a half-written file."""

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Collection, Iterator, Optional, Union


@contextmanager
def atomic_output(output_path: Union[str, "os.PathLike[str]"]) -> Iterator[BinaryIO]:
    """Open ``OUTPUT.tmp-XXXXXXXX`` next to ``output_path`` for writing
    (binary) and, when the block ends without an exception, flush it to disk
    and rename it to ``output_path`` (replacing an existing file). On any
    exception, KeyboardInterrupt included, the temporary file is removed and
    an existing output file is left unchanged. The output's folder is created
    if missing; the file gets the usual permissions (0o666 less the umask).

    output_path (str / Path): The file to write.
    YIELDS (BinaryIO): The temporary file, open for writing.
    RAISES: IsADirectoryError if ``output_path`` is a folder; OSError if the
        file cannot be written.
    """
    output_path = Path(output_path)
    if output_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(output_path))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f"{output_path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(data: bytes, output_path: Path) -> None:
    """Write ``data`` to ``output_path`` through :func:`atomic_output`:
    readers never see a partial file."""
    with atomic_output(output_path) as f:
        f.write(data)


def check_output_path(
    output_path: Union[str, "os.PathLike[str]"], *input_paths: Any, read_suffixes: Optional[Collection[str]] = None
) -> None:
    """Refuse an output that is one of the inputs, before anything is read:
    the same path, another path to the same file (a symbolic or hard link,
    ``..``), checked by the files' device and inode where both exist. Every
    command that writes a file calls this first, so that no output replaces
    its own input (a gold corpus, an annotation export, predictions).

    An input that is a folder stands for the files the command reads in it
    (at any depth): with ``read_suffixes``, the files with one of these
    suffixes (``.txt`` of a folder of texts, ``.ann`` and ``.txt`` of brat),
    so an output with such a suffix inside the folder is refused even before
    it exists (a rerun would read it); without, every file in it (a pipeline
    folder: its config, weights, vocab), so an existing file inside is
    refused and a new one is not.

    output_path (str / Path): The file to write.
    input_paths: The files (or folders) the command reads; None and inputs
        that are not local paths (e.g. a Ray URI or a package name) are skipped.
    read_suffixes (Optional[Collection[str]]): The suffixes of the files the
        command reads in an input folder; None: every file.
    RAISES: ValueError naming both paths.
    """
    output = Path(output_path)
    resolved = output.resolve()
    for input_path in input_paths:
        if input_path is None or not isinstance(input_path, (str, os.PathLike)) or "://" in str(input_path):
            continue
        source = Path(input_path)
        same = resolved == source.resolve()
        if not same and output.exists() and source.exists():
            same = os.path.samefile(output, source)
        if same:
            raise ValueError(f"{_same_file(output, source)}: choose another output path, nothing was written")
        if source.is_dir():
            _check_folder(output, resolved, source, read_suffixes)


def _same_file(output: Path, source: Path) -> str:
    return f"the output {output} is the input {source} (the same file)"


def _check_folder(output: Path, resolved: Path, folder: Path, read_suffixes: Optional[Collection[str]]) -> None:
    """Refuse an output that is a file ``check_output_path`` counts as read in
    the input ``folder`` (``resolved``: the output's resolved path)."""

    def read(path: Path) -> bool:
        return read_suffixes is None or path.suffix in read_suffixes

    inside = resolved.is_relative_to(folder.resolve())
    same = None
    if output.is_file():
        if inside:
            same = resolved if read(resolved) else None
        elif output.stat().st_nlink > 1:  # a hard link to a file of the folder?
            same = next((p for p in folder.rglob("*") if read(p) and p.is_file() and os.path.samefile(output, p)), None)
    if same is not None:
        raise ValueError(
            f"{_same_file(output, same)}, in the input folder {folder}: choose another output path, nothing was written"
        )
    if inside and read_suffixes is not None and read(resolved):
        raise ValueError(
            f"the output {output} is inside the input folder {folder}, whose {resolved.suffix} files are read "
            "(as input by the next run): choose another output path, nothing was written"
        )
