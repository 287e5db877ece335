"""The ``spert`` command-line interface, on spaCy's own tooling (typer, wasabi).

Run it as ``python -m spacy_spert COMMAND`` or, through the ``spacy_cli``
entry point, as ``python -m spacy spert COMMAND``. ``--help`` after a command
shows its arguments.

Commands (each line is the first sentence of the command's help):
    convert          Convert a SpERT JSON file to a .spacy file.
    import           Import Prodigy, brat or Label Studio data.
    evaluate         Score a pipeline; print SpERT's table.
    tune-thresholds  Tune per-label thresholds on dev data.
    predict          Tag a corpus; write JSONL or .spacy.
    render           Draw entities and relations as HTML.
    serve            Serve a web page and a JSON API.

The commands live by family: :mod:`.data` (convert, import), :mod:`.evaluate`,
:mod:`.thresholds` (tune-thresholds),
:mod:`.apps` (predict, render, serve); :mod:`.util` holds the app and the
shared helpers. The research tools (benchmarks, seeds, k-fold, speed) are not
part of the package: ``python -m research`` in the repository.

To add a command (``predict``, ``render``, ``serve``, ...): write one function
decorated with ``@app.command("name")`` whose parameters are typer ``Arg`` and
``Opt`` and whose docstring is its help (a first sentence of at most 45
characters, listed above); let it call one library function inside ``with
user_errors():``; report progress with wasabi's ``msg`` and print tables and
data lines with ``typer.echo`` (``msg`` wraps text at 80 columns). The logic
lives in the library, not here.

Errors in the input (invalid data, a missing file, a failed run) end a command
with one line ``error: ...`` on stderr and exit status 1; nothing is written
for invalid data. Usage errors exit with status 2.
"""

from typing import List, Optional

import typer
from spacy.cli._util import app as spacy_app

# Each module adds its commands to the app, in this order (--help lists them so).
# isort: off
from . import data, evaluate, thresholds, apps  # noqa: F401

# isort: on
from .util import NAME, PROG, app

__all__ = ["app", "main"]


def main(argv: Optional[List[str]] = None) -> None:
    """Run the app as ``python -m spacy_spert`` (exits with the command's status).

    argv (Optional[List[str]]): The arguments (default: ``sys.argv[1:]``).
    """
    typer.main.get_command(app)(args=argv, prog_name=PROG)


# `python -m spacy spert ...`: spaCy's setup_cli loads the `spacy_cli` entry
# points (this module), and this adds the app to spaCy's own.
spacy_app.add_typer(app, name=NAME)
