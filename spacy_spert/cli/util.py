"""What every command of the ``spert`` command line shares: the typer app,
one-line errors, colour only on a terminal and the parsing of list and
override options."""

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator, List, NoReturn

import click
import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg
from wasabi.util import supports_ansi

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
    tracebacks; before each command, :func:`set_colour`.

    name (str): The app's name.
    help (str): Its help text.
    RETURNS (typer.Typer): The app.
    """
    app = typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )
    app.callback()(set_colour)
    return app


def set_colour() -> None:
    """Colour the messages of wasabi's ``msg`` (ours and spaCy's) only when
    stdout is a terminal and neither ``NO_COLOR`` nor wasabi's
    ``ANSI_COLORS_DISABLED`` or ``WASABI_LOG_FRIENDLY`` is set: ``msg``
    decides once, at import, by the platform alone, so its colour codes would
    end up in logs, files and pipes."""
    isatty = getattr(sys.stdout, "isatty", None)
    on_terminal = bool(isatty and isatty())
    quiet = any(os.environ.get(name) for name in ("NO_COLOR", "WASABI_LOG_FRIENDLY"))
    msg.show_color = on_terminal and not quiet and supports_ansi()


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
