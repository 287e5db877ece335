"""What every command of the ``spert`` command line shares: the typer app,
one-line errors and the parsing of list and override options."""

import subprocess
from contextlib import contextmanager
from typing import Iterator, List, NoReturn

import click
import typer
from spacy.cli._util import parse_config_overrides

NAME = "spert"
PROG = "python -m spacy_spert"
HELP = """SpERT joint entity and relation extraction.

Convert and import data, evaluate, predict, render and serve spaCy pipelines
with a `spert` component (SpERT and SpERT.MT).
"""
# Commands that take config overrides (--section.key value) after their options.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def make_app(name: str, help: str) -> typer.Typer:
    """A typer app set up as spaCy's own: no completion, no rich markup, plain
    tracebacks.

    name (str): The app's name.
    help (str): Its help text.
    RETURNS (typer.Typer): The app.
    """
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


app = make_app(NAME, HELP)


def fail(message: str, status: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` as one line to stderr and exit with ``status``."""
    typer.echo(f"error: {' '.join(str(message).splitlines())}", err=True)
    raise typer.Exit(status)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors of bad input into :func:`fail`: ValueError (e.g. a
    ConversionError), OSError (``FILE: what``) and a failed subprocess."""
    try:
        yield
    except ValueError as e:
        fail(str(e))
    except OSError as e:
        what = e.strerror or str(e)
        fail(f"{e.filename}: {what}" if e.filename is not None else what)
    except subprocess.CalledProcessError as e:
        fail(f"exit status {e.returncode} from: {' '.join(map(str, e.cmd))}")


def ints(text: str) -> List[int]:
    """``"1,8,64"`` -> [1, 8, 64] (``""`` -> [])."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"expected comma-separated integers, got {text!r}")


def overrides(ctx: typer.Context) -> List[str]:
    """The extra arguments of a command, checked as spaCy checks config overrides."""
    try:
        parse_config_overrides(list(ctx.args))
    except click.ClickException as e:  # e.g. NoSuchOption for "--name" without a section
        fail(e.format_message(), status=2)
    return list(ctx.args)
