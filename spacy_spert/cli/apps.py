"""Commands that run a trained pipeline: ``predict`` (also on Ray),
``render`` and ``serve``."""

from pathlib import Path
from typing import Dict, List, Optional

import typer
from spacy.cli._util import Arg, Opt
from wasabi import msg

from .util import app, fail, user_errors


@app.command("predict")
def predict_cli(
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    input_path: str = Arg(..., help="Input: .jsonl, .spacy, a text file or a folder of .txt files (Ray: .jsonl or .parquet files, a folder of them, any path Ray can read)", show_default=False),
    output_path: Path = Arg(..., help="Output: .jsonl, .spacy or, with --format label-studio, .json (see --format)", show_default=False),
    output_format: Optional[str] = Opt(None, "--format", help="jsonl, spacy or label-studio (tasks with pre-annotations, a JSON list; default: spacy for a .spacy OUTPUT, else jsonl)"),
    batch_size: int = Opt(64, "--batch-size", "-b", help="Docs per nlp.pipe batch"),
    buffer_size: int = Opt(2048, "--buffer-size", help="Docs sorted by length together (1: no sorting)"),
    n_process: int = Opt(1, "--n-process", "-n", help="Processes for nlp.pipe"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    text_key: str = Opt("text", "--text-key", help="JSONL field with the text (also the output's)"),
    lines: bool = Opt(False, "--lines", help="Text input: one doc per line, not per file"),
    skip_invalid: bool = Opt(False, "--skip-invalid", help="Leave out invalid lines, list them and go on"),
    max_length: Optional[int] = Opt(None, "--max-length", help="Longest text in characters; longer ones are invalid lines (default: the pipeline's max_length, 1,000,000 in spaCy; memory grows with a text's length)"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's)"),
    engine: str = Opt("local", "--engine", help="local (this machine) or ray (a Ray cluster: pip install 'spacy-spert[ray]')"),
    address: Optional[str] = Opt(None, "--address", help="Ray: the cluster (auto: the one this machine is in; default: RAY_ADDRESS, else a new local one)"),
    num_actors: int = Opt(2, "--num-actors", help="Ray: actors, each with its own copy of the model"),
    cpus_per_actor: float = Opt(1.0, "--cpus-per-actor", help="Ray: CPUs (and torch threads) per actor"),
    gpus_per_actor: float = Opt(0.0, "--gpus-per-actor", help="Ray: GPUs per actor (0.5: two actors share one)"),
    id_key: Optional[str] = Opt(None, "--id-key", help="Ray: a field every doc has, unique (checked)"),
    quantize: bool = Opt(False, "--quantize", help="CPU only: int8 dynamic quantization of the encoder's linear layers (faster; see docs/serving-and-scale.md)"),
    label_config: Optional[Path] = Opt(None, "--label-config", metavar="CONFIG.xml", help="label-studio: the project's labeling config, whose names, labels and text key the tasks use (default: Label Studio's defaults, the model's labels)"),
    model_version: Optional[str] = Opt(None, "--model-version", help="label-studio: the predictions' model_version (default: LANG_NAME-VERSION of the pipeline's meta)"),
):  # fmt: skip
    """Tag a corpus; write JSONL or .spacy.

    Runs MODEL over every doc of INPUT and writes one output doc per input
    doc, in input order. INPUT is a .jsonl file ({"text": ...} per line, the
    other fields carried through), a .spacy file, a folder (each .txt file
    below it one doc) or a text file (one doc, or one per line with --lines).
    A JSONL OUTPUT line holds the input's fields, the text, "entities"
    (character and token offsets, label, score, text) and "relations" (head
    and tail as indices into the entities, label, score); a .spacy OUTPUT is
    a DocBin with user data. Docs are run in batches of similar length and
    written in input order. An invalid line (not UTF-8 or JSON, no text, a
    text over --max-length, ...) stops the run (error naming file and line,
    no output) unless --skip-invalid; OUTPUT appears only when
    complete. With --engine ray the docs are tagged by a pool of actors on a
    Ray cluster (Ray Data reads .jsonl or .parquet input) and the driver
    writes the same JSONL lines (or .parquet), in input order, each doc
    exactly once. With --format label-studio OUTPUT is a JSON list of Label
    Studio tasks, each with its prediction (entities, relations, scores) as
    pre-annotations, in the names and labels of --label-config.
    """
    from ..apps.predict import predict

    if engine == "ray":
        return _predict_ray_cli(
            model,
            input_path,
            output_path,
            output_format=output_format,
            batch_size=batch_size,
            text_key=text_key,
            skip_invalid=skip_invalid,
            max_length=max_length,
            spans_key=spans_key,
            address=address,
            num_actors=num_actors,
            cpus_per_actor=cpus_per_actor,
            gpus_per_actor=gpus_per_actor,
            id_key=id_key,
            local_only={
                "--buffer-size": buffer_size != 2048,
                "--n-process": n_process != 1,
                "--gpu-id": gpu_id != -1,
                "--lines": lines,
                "--quantize": quantize,
                "--label-config": label_config is not None,
                "--model-version": model_version is not None,
            },
        )
    if engine != "local":
        fail(f"unknown --engine {engine!r} (choose local or ray)", status=2)
    ray_only = {
        "--address": address is not None,
        "--num-actors": num_actors != 2,
        "--cpus-per-actor": cpus_per_actor != 1,
        "--gpus-per-actor": gpus_per_actor != 0,
        "--id-key": id_key is not None,
    }
    if any(ray_only.values()):
        fail(f"{', '.join(k for k, v in ray_only.items() if v)}: only with --engine ray", status=2)
    with user_errors():
        report = predict(
            model,
            input_path,
            output_path,
            output_format=output_format,
            batch_size=batch_size,
            buffer_size=buffer_size,
            n_process=n_process,
            gpu_id=gpu_id,
            text_key=text_key,
            lines=lines,
            skip_invalid=skip_invalid,
            spans_key=spans_key,
            quantize=quantize,
            max_length=max_length,
            label_config=label_config,
            model_version=model_version,
        )
    for warning in report.warnings:
        msg.warn(warning)
    msg.good(
        f"Wrote {report.n_docs} docs ({report.n_entities} entities, {report.n_relations} relations) "
        f"to {output_path} in {report.seconds:.1f} s ({report.docs_per_second:.1f} docs/s)"
    )
    if report.skipped:
        msg.warn(f"Skipped {len(report.skipped)} invalid lines or files:")
        for skipped in report.skipped:
            typer.echo(f"  {skipped}")


def _predict_ray_cli(model: str, input_path: str, output_path: Path, *, local_only: Dict[str, bool], **kwargs) -> None:
    """`predict --engine ray`: check the options, run predict_ray, report."""
    from ..apps.predict_ray import predict_ray

    if any(local_only.values()):
        fail(f"{', '.join(k for k, v in local_only.items() if v)}: not with --engine ray", status=2)
    options = dict(
        output_format=kwargs["output_format"],
        batch_size=kwargs["batch_size"],
        text_key=kwargs["text_key"],
        skip_invalid=kwargs["skip_invalid"],
        max_length=kwargs["max_length"],
        spans_key=kwargs["spans_key"],
        address=kwargs["address"],
        num_actors=kwargs["num_actors"],
        num_cpus_per_actor=kwargs["cpus_per_actor"],
        num_gpus_per_actor=kwargs["gpus_per_actor"],
        id_key=kwargs["id_key"],
    )
    with user_errors():
        try:
            report = predict_ray(model, input_path, output_path, **options)
        except ImportError as e:
            fail(str(e))
    msg.good(
        f"Wrote {report.n_docs} docs ({report.n_entities} entities, {report.n_relations} relations) "
        f"to {output_path} in {report.seconds:.1f} s ({report.docs_per_second:.1f} docs/s) with "
        f"{report.n_actors} Ray actors"
    )
    if report.duplicates:
        msg.info(f"Dropped {report.duplicates} docs that came back twice (retried after a failure)")
    if report.skipped:
        msg.warn(f"Skipped {len(report.skipped)} invalid lines or files:")
        for skipped in report.skipped:
            typer.echo(f"  {skipped}")


@app.command("render")
def render_cli(
    source: str = Arg(..., help="predict's JSONL output or a .spacy file; with --text: a pipeline; with --model: any input of predict", show_default=False),
    output_path: Path = Arg(..., help="HTML file to write", show_default=False),
    text: Optional[List[str]] = Opt(None, "--text", help="A text to tag with the pipeline SOURCE (repeatable)"),
    model: Optional[str] = Opt(None, "--model", help="Tag SOURCE with this pipeline first"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's, or sc)"),
    text_key: str = Opt("text", "--text-key", help="JSONL field with the text (with --model)"),
    split: str = Opt("auto", "--split", help="Figures per sentence (auto: when the docs have sentences) or paragraph (auto, paragraph, none)"),
    max_width: int = Opt(960, "--max-width", help="Width of a row of text in px"),
    table: bool = Opt(True, "--table/--no-table", help="Add a table of the entities and relations"),
):  # fmt: skip
    """Draw entities and relations as HTML.

    Writes one standalone HTML page that shows each doc's text with its
    entities (labels and scores; overlapping ones stacked) and its relations
    as labelled, directed arcs with scores, one figure per sentence or
    paragraph. SOURCE is predict's JSONL output or a .spacy file (drawn as
    they are); a pipeline, with --text; or any input of predict, with
    --model to tag it first.
    """
    from ..apps.render import render_file

    with user_errors():
        n = render_file(
            source,
            output_path,
            model=model,
            texts=text,
            spans_key=spans_key,
            text_key=text_key,
            split=split,
            max_width=max_width,
            table=table,
        )
    msg.good(f"Wrote {n} docs to {output_path}")


@app.command("serve")
def serve_cli(
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    host: str = Opt("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all; the default: this machine only)"),
    port: int = Opt(8000, "--port", "-p", help="Port"),
    max_chars: int = Opt(100_000, "--max-chars", help="Most characters of one text (more: 413)"),
    max_texts: int = Opt(64, "--max-texts", help="Most texts of one request (more: 413)"),
    batch_size: int = Opt(32, "--batch-size", "-b", help="Most texts the model runs as one batch"),
    batch_chars: int = Opt(10_000, "--batch-chars", help="Most characters of one batch (a longer text: alone)"),
    max_form_fields: int = Opt(100, "--max-form-fields", help="Most fields of a form posted to / (more: 413)"),
    head_timeout: float = Opt(10.0, "--head-timeout", help="Seconds for a request's headers to arrive (then 408)"),
    body_timeout: float = Opt(60.0, "--body-timeout", help="Seconds for a request's body to arrive (then 408)"),
    keep_alive_timeout: float = Opt(5.0, "--keep-alive-timeout", help="Seconds an idle connection stays open"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    model_version: Optional[str] = Opt(None, "--model-version", help="Label Studio: the model version answered (default: LANG_NAME-VERSION of the pipeline's meta; Label Studio predicts again when it changes)"),
):  # fmt: skip
    """Serve a web page and a JSON API.

    Loads MODEL once and serves, with uvicorn: a page (/) with a text box
    that draws the entities and relations found and lists them with their
    scores; POST /extract ({"text": ...} or {"texts": [...]}, answered in the
    schema of predict's JSONL); GET /health; the OpenAPI description
    (/openapi.json; no /docs or /redoc pages: they load their scripts from
    CDNs). Requests are batched fairly: a request waits for about one batch
    (--batch-size, --batch-chars) of another's; the work of a client that
    disconnects is dropped. The server is also a Label Studio ML backend
    (connect its URL to a project): POST /setup (the labeling config: the
    model version, labels that do not match), POST /predict (a batch of
    tasks: one prediction each, in order, with a task score for sorting by
    uncertainty), POST /webhook (events accepted; no training). Needs the
    serve extra: pip install 'spacy-spert[serve]'.
    """
    from ..apps.serve import serve

    with user_errors():
        try:
            serve(
                model,
                host=host,
                port=port,
                spans_key=spans_key,
                max_chars=max_chars,
                max_texts=max_texts,
                batch_size=batch_size,
                batch_chars=batch_chars,
                max_form_fields=max_form_fields,
                head_timeout=head_timeout,
                body_timeout=body_timeout,
                keep_alive_timeout=keep_alive_timeout,
                gpu_id=gpu_id,
                model_version=model_version,
            )
        except ImportError as e:
            fail(str(e))
