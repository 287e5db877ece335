"""Draw entities and relations together: ``spacy_spert.render(docs)`` gives
HTML with the text, every entity underlined with its label and score
(overlapping and nested ones stacked), and every relation as a labelled,
directed arc from its head to its tail with its score.

What is reused from displaCy (``spacy.displacy``) and what is new:

- Reused: the entity colours (``displacy``'s defaults, colours registered in
  ``registry.displacy_colors`` and the ``colors`` argument, read from a
  ``SpanRenderer``), the span style of its ``span`` visualiser (a coloured bar
  under each entity with the label at its start, overlapping spans stacked in
  slots ordered by start, longer first, then label), its page template
  (``TPL_PAGE``, for ``page=True``), its title template (``TPL_TITLE``, for
  ``doc.user_data["title"]`` or a record's ``"title"``) and its Jupyter
  handling (auto-detection, the ``tex2jax_ignore`` wrapper, the render
  wrapper set with ``displacy.set_render_wrapper``).
- New: arcs between entity spans; scores on entities and arcs; the layout,
  which wraps long text into rows (an arc whose ends are on two rows is
  drawn in two parts, each with the label, leaving the first row at its end
  and entering the second at its start), one figure per sentence (docs with
  sentence boundaries) or paragraph (text split at blank lines), figures
  joined where an entity or relation crosses them; right-to-left layout for
  figures whose first strong character is right-to-left (Hebrew, Arabic);
  control characters shown as visible symbols; and an optional table of the
  entities and relations with their scores.

The output is static HTML with inline SVG: no script, nothing loaded from
elsewhere, so it works inline in Jupyter, in a standalone file, in a
``Content-Security-Policy`` that forbids scripts and in print. Every piece of
text (the doc's, labels, titles) is escaped. Text is set in a monospace font
whose advance is estimated per character (wide East Asian characters and
emoji count two columns, combining marks none); each word gets its
estimated width with SVG ``textLength``, so an estimate that is off shrinks
or stretches a word but never moves it onto another.

Input: spaCy Docs processed by a pipeline with ``spert`` (entities from
``doc.spans[spans_key]`` with their ``attrs["scores"]``, relations from
``doc._.relations``, converted by :func:`~spacy_spert.io.records.doc_to_record`)
or the records themselves (the JSONL lines of ``predict``, the answers of the
``serve`` API).

The parts: ``text.py`` (what text is shown and how wide, its direction),
``layout.py`` (units, figures and the rows of each figure), ``svg.py`` (the
drawing and the colours), ``markup.py`` (one doc's HTML, the tables, the
style sheet); this module: :func:`render` (pages and Jupyter) and the files
(:func:`read_records`, :func:`render_file`).
"""

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from spacy.tokens import Doc

from ...io.records import check_record
from .markup import STYLE, DocLike, render_doc, render_table
from .svg import Colors
from .text import shown

__all__ = ["STYLE", "check_record", "read_records", "render", "render_doc", "render_file", "render_table", "shown"]


def render(
    docs: Union[DocLike, Iterable[DocLike]],
    *,
    spans_key: str = "sc",
    page: bool = False,
    jupyter: Optional[bool] = None,
    split: str = "auto",
    direction: str = "auto",
    max_width: float = 960,
    colors: Optional[Dict[str, str]] = None,
    table: bool = False,
    title: str = "spacy-spert",
) -> Optional[str]:
    """Render the entities and relations of docs as HTML (inline SVG), like
    ``displacy.render`` does for its styles.

    docs (Doc / dict / Iterable): Docs processed by a pipeline with ``spert``
        (or with gold annotation), or records as ``doc_to_record`` and
        ``predict``'s JSONL give them (``{"text", "entities", "relations"}``;
        an optional ``"title"``), or a list of these.
    spans_key (str): The span group of the entities in Docs.
    page (bool): A complete HTML page (displaCy's page template) rather than a
        fragment; for a standalone file.
    jupyter (Optional[bool]): Display the HTML in a Jupyter notebook and return
        None; None: when running in Jupyter (as displaCy decides).
    split (str): "auto": one figure per sentence when the doc has sentence
        boundaries (a parser or sentencizer ran), else per paragraph (text
        between blank lines); "paragraph"; "none": one figure per doc. Figures
        that an entity or relation crosses are joined. Rows wrap at
        ``max_width`` in any case.
    direction (str): "auto" (per figure, from its first strongly directional
        character, as HTML's ``dir="auto"``), "ltr" or "rtl".
    max_width (float): Width of a row of text, in px (16 px monospace: 100
        columns at 960).
    colors (Optional[Dict[str, str]]): Entity label -> CSS colour, added to
        displaCy's colours (``registry.displacy_colors`` included); other
        labels get a colour from a fixed palette by a hash of the label.
    table (bool): Add a table of the entities and relations with scores
        below each doc.
    title (str): The ``<title>`` of a page.
    RETURNS (Optional[str]): The HTML, or None when displayed in Jupyter.
    RAISES: ValueError for a record that is not one (naming the field) or an
        unknown ``split`` or ``direction``.
    """
    from spacy import displacy
    from spacy.displacy.templates import TPL_PAGE
    from spacy.util import is_in_jupyter

    if isinstance(docs, (Doc, dict)):
        docs = [docs]
    palette = Colors(colors)
    parts = [
        render_doc(
            doc, spans_key=spans_key, split=split, direction=direction, max_width=max_width, colors=palette, table=table
        )
        for doc in docs
    ]
    markup = f'<div class="spert-render">{STYLE}{"".join(parts)}</div>'
    if page:
        markup = TPL_PAGE.format(content=markup, lang="en", dir="ltr").strip()
        markup = markup.replace("<title>displaCy</title>", f'<meta charset="utf-8"><title>{shown(title)}</title>', 1)
    if displacy.RENDER_WRAPPER is not None:
        markup = displacy.RENDER_WRAPPER(markup)
    if jupyter or (jupyter is None and is_in_jupyter()):
        from IPython.display import HTML, display

        display(HTML(f'<span class="tex2jax_ignore">{markup}</span>'))
        return None
    return markup


# Files -------------------------------------------------------------------------


def read_records(path: "os.PathLike[str]") -> Iterator[Dict[str, Any]]:
    """The records of a JSONL file as ``predict`` writes it, checked.

    path (Path): The file.
    YIELDS (Dict[str, Any]): One record per non-blank line.
    RAISES: InvalidInput (a ValueError) naming the file, line and field.
    """
    from ...io.jsonl import InvalidInput, json_lines, parse_jsonl_line

    source = str(path)
    for n, raw in json_lines(Path(path)):
        item = parse_jsonl_line(raw, source, n)
        if isinstance(item, InvalidInput):
            raise item
        _, record = item
        try:
            check_record(record)
        except ValueError as e:
            hint = " (to tag the texts first, pass --model)" if "no field 'entities'" in str(e) else ""
            raise InvalidInput(source, f"{e}{hint}", n) from None
        yield record


def render_file(
    source: Union[str, "os.PathLike[str]"],
    output_path: Union[str, "os.PathLike[str]"],
    *,
    model: Optional[str] = None,
    texts: Optional[Sequence[str]] = None,
    spans_key: Optional[str] = None,
    text_key: str = "text",
    **options: Any,
) -> int:
    """Write one standalone HTML page (``render(..., page=True)``) of:

    - ``texts`` tagged by the pipeline ``source`` (a directory or package
      name), when ``texts`` is given;
    - the docs of ``source`` tagged by the pipeline ``model`` first, when
      ``model`` is given (any input of ``predict``: JSONL with a text field,
      ``.spacy``, a text file or a folder of ``.txt`` files);
    - else the records of ``source``, ``predict``'s JSONL output, or the docs
      of a ``.spacy`` file as they are (e.g. ``predict``'s ``.spacy`` output
      or gold data).

    source (str / Path): A pipeline (with ``texts``) or an input file.
    output_path (str / Path): The HTML file; written only when complete.
    model (Optional[str]): A pipeline to tag ``source`` with.
    texts (Optional[Sequence[str]]): Texts to tag with the pipeline ``source``.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's, or "sc" without a pipeline).
    text_key (str): The text field of JSONL input to tag.
    options: Further arguments of :func:`render` (``split``, ``table``, ...).
    RETURNS (int): The number of docs rendered.
    RAISES: ValueError (InvalidInput) for invalid input, naming file, line
        and field; OSError if a file cannot be read or written.
    """
    import spacy
    from spacy.tokens import DocBin

    from ...io.files import atomic_output, check_output_path
    from ...io.jsonl import check_length, input_items, valid_items
    from ...io.records import spert_spans_key

    # SOURCE: a pipeline (with texts), a folder of .txt files (with a model) or a file.
    check_output_path(output_path, source, read_suffixes=None if texts else (".txt",))
    check_output_path(output_path, model)

    source_path = Path(source)
    docs: List[DocLike]
    if texts:
        if model is not None:
            raise ValueError("pass either texts (tagged by the pipeline SOURCE) or --model (to tag the file SOURCE)")
        nlp = spacy.load(source_path)
        key = spans_key or spert_spans_key(nlp)
        for i, text in enumerate(texts, 1):
            check_length(text, f"--text {i}", None, nlp.max_length)
        docs = list(nlp.pipe(texts))
    elif model is not None:
        nlp = spacy.load(model)
        key = spans_key or spert_spans_key(nlp)
        items = valid_items(input_items(source_path, nlp, text_key, False, nlp.max_length), False, [])
        docs = [doc for doc, _ in nlp.pipe(items, as_tuples=True)]
    elif source_path.suffix == ".jsonl":
        key, docs = spans_key or "sc", list(read_records(source_path))
    elif source_path.suffix == ".spacy":
        if not source_path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(source_path))
        key = spans_key or "sc"
        docs = list(DocBin().from_disk(source_path).get_docs(spacy.blank("xx").vocab))
    else:
        raise ValueError(
            f"{source}: expected predict's JSONL output (.jsonl) or a .spacy file; to tag texts, "
            "pass a pipeline with --text, or the input with --model"
        )
    markup = render(docs, spans_key=key, page=True, jupyter=False, **options) or ""
    with atomic_output(output_path) as f:
        f.write(markup.encode("utf8"))
    return len(docs)
