"""Command-line interface: ``python -m spacy_spert COMMAND ...``.

Commands are argparse subparsers; each is registered by a ``_add_*`` function
that sets ``func`` to the function that runs it. To add a command (e.g.
``benchmark``), write such a pair and call the ``_add_*`` function from
:func:`build_parser`.

Commands:
    convert IN.json OUT.spacy [--types TYPES.json] [--spans-key sc] [--lang en]
        Convert a SpERT JSON file to a .spacy DocBin (see spacy_spert.convert).
"""
import argparse
import sys
from typing import List, Optional

PROG = "python -m spacy_spert"


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\n"))


def _error(message: str) -> int:
    """Print ``error: message`` as one line to stderr; return the exit status 1."""
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return 1


def run_convert(args: argparse.Namespace) -> int:
    """Run ``convert``: convert ``args.input`` to ``args.output``.

    args (Namespace): input, output, types, spans_key, lang.
    RETURNS (int): The exit status: 0 on success; 1 (after printing one
        ``error: ...`` line to stderr) for invalid data, an unknown language or
        a file that cannot be read or written.
    """
    from .convert import convert_file

    try:
        n_docs = convert_file(
            args.input,
            args.output,
            types_path=args.types,
            spans_key=args.spans_key,
            lang=args.lang,
        )
    except ValueError as e:  # ConversionError, unknown language
        return _error(str(e))
    except OSError as e:
        where = e.filename if e.filename is not None else ""
        what = e.strerror or str(e)
        return _error(f"{where}: {what}" if where else what)
    print(f"Converted {n_docs} docs from {args.input} to {args.output}")
    return 0


def _add_convert(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a SpERT JSON file to a .spacy file",
        description=(
            "Convert a SpERT JSON file (a list of {tokens, entities, relations} records) "
            "to a .spacy DocBin: entities in doc.spans[SPANS_KEY], relations in "
            "doc._.relations, gold tokenization kept. Nothing is written if any record "
            "is invalid."
        ),
    )
    parser.add_argument("input", help="SpERT JSON file to read")
    parser.add_argument("output", help=".spacy file to write")
    parser.add_argument(
        "--types",
        metavar="TYPES.json",
        default=None,
        help="SpERT types file; entity/relation types not in it are errors",
    )
    parser.add_argument(
        "--spans-key", default="sc", help="span group for the entities (default: sc)"
    )
    parser.add_argument("--lang", default="en", help="language code for the vocab (default: en)")
    parser.set_defaults(func=run_convert)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="spacy-spert: SpERT joint entity and relation extraction for spaCy"
    )
    subparsers = parser.add_subparsers(dest="command", title="commands")
    subparsers.required = True
    _add_convert(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command.

    RETURNS (int): The exit status (argparse exits with 2 on bad usage).
    """
    args = build_parser().parse_args(argv)
    return args.func(args)
