"""Commands that bring data in: ``convert`` (SpERT JSON) and ``import``
(Prodigy, brat, Label Studio)."""

from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import Arg, Opt
from wasabi import msg

from .util import app, fail, user_errors


@app.command("convert")
def convert_cli(
    input_path: Path = Arg(..., help="SpERT JSON file to read", show_default=False),
    output_path: Path = Arg(..., help=".spacy file to write", show_default=False),
    types: Optional[Path] = Opt(None, "--types", metavar="TYPES.json", help="SpERT types file; entity/relation types not in it are errors"),
    spans_key: str = Opt("sc", "--spans-key", help="Span group for the entities"),
    lang: str = Opt("en", "--lang", help="Language code for the vocab"),
):  # fmt: skip
    """Convert a SpERT JSON file to a .spacy file.

    The JSON file is a list of {tokens, entities, relations} records; the
    .spacy file a DocBin with the entities in doc.spans[SPANS_KEY], relations in
    doc._.relations, gold tokenization kept. Nothing is written if any record
    is invalid.
    """
    from ..io.spert_json import convert_file

    with user_errors():
        n_docs = convert_file(input_path, output_path, types_path=types, spans_key=spans_key, lang=lang)
    typer.echo(f"Converted {n_docs} docs from {input_path} to {output_path}")


@app.command("import")
def import_cli(
    fmt: str = Arg(..., metavar="FORMAT", help="The annotation tool: prodigy, brat or label-studio", show_default=False),
    input_path: Path = Arg(..., help="Prodigy JSONL (db-out), brat folder of .txt + .ann, or Label Studio JSON export", show_default=False),
    output_path: Path = Arg(..., help=".spacy file to write", show_default=False),
    lang: Optional[str] = Opt(None, "--lang", help="Language of the blank tokenizer  [default: en]", show_default=False),
    model: Optional[str] = Opt(None, "--model", help="Pipeline (name or path) whose tokenizer and sentence splitter to use instead of --lang"),
    spans_key: str = Opt("sc", "--spans-key", help="Span group for the entities"),
    split_sentences: bool = Opt(False, "--split-sentences", help="One doc per sentence (relations across sentences are left out)"),
    strict: bool = Opt(False, "--strict", help="Fail on entities not on token boundaries instead of expanding them"),
    types: Optional[Path] = Opt(None, "--types", metavar="TYPES.json", help="SpERT types file; entity/relation types not in it are errors"),
    text_key: str = Opt("text", "--text-key", help="Label Studio: the key of the text in a task's data"),
    predictions: bool = Opt(False, "--predictions", help="Label Studio: import tasks that have predictions (pre-annotations) and no annotation from their first prediction"),
):  # fmt: skip
    """Import Prodigy, brat or Label Studio data.

    Reads the entity and relation annotations of rel.manual (Prodigy),
    brat standoff or a Label Studio JSON export and writes a .spacy file like
    `convert`'s: entities in doc.spans[SPANS_KEY], relations in
    doc._.relations. Character offsets are mapped onto the tokens of --lang
    or --model. Prints what was imported, skipped and left out; nothing is
    written if any record is invalid. Label Studio tasks with predictions and
    no annotation are counted, and imported from their predictions with
    --predictions.
    """
    from ..io.importers import FORMATS, import_file

    if fmt not in FORMATS:
        fail(f"unknown FORMAT {fmt!r} (choose {', '.join(FORMATS)})", status=2)
    if predictions and fmt != "label-studio":
        fail(f"--predictions is for label-studio, not {fmt}", status=2)
    with user_errors():
        report = import_file(
            fmt,
            input_path,
            output_path,
            lang=lang,
            model=model,
            spans_key=spans_key,
            strict=strict,
            split_sentences=split_sentences,
            types_path=types,
            text_key=text_key,
            predictions=predictions,
        )
    for level, text in report.messages():
        if level == "text":
            typer.echo(text)
        else:
            getattr(msg, level)(text)
    msg.good(f"Saved {output_path}")
