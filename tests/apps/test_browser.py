"""The web page of `serve` in a real browser: headless Chromium (Debian's
`chromium` + `chromium-driver`, driven by selenium) opens the page of a tiny
pipeline on localhost, submits texts and checks the DOM for the entities, the
arcs and the table, that no text becomes markup or script, that words do not
overlap (emoji, right-to-left, control characters), and that the screenshot is
not blank. Skipped, with the reason, where Chromium is absent; .ci/run
installs it."""

import json

import browser
import pytest

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")

import spacy  # noqa: E402
from test_serve import TEXTS, model_dir, reference  # noqa: E402,F401  (the same texts and pipeline)

from spacy_spert.apps.serve import make_app, running_server  # noqa: E402


@pytest.fixture(scope="module")
def url(model_dir):  # noqa: F811
    with running_server(make_app(spacy.load(model_dir), max_chars=20_000)) as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    driver = browser.start_chromium()
    yield driver
    driver.quit()


def test_page_shows_entities_arcs_and_table(driver, url, reference, tmp_path):  # noqa: F811
    text = TEXTS[0] + " <script>window.pwned = 1</script>"
    want = json.loads(json.dumps(__import__("spacy_spert").doc_to_record(reference(text))))
    assert want["entities"] and want["relations"], "the tiny pipeline should find something here"
    browser.submit_text(driver, url, text)
    dom = browser.dom_summary(driver)
    assert dom["error"] is None
    assert dom["textbox"] == text
    assert dom["scripts"] == 0 and driver.execute_script("return window.pwned === undefined")
    # Every entity: its label and score on the page, a bar under its words.
    got = sorted((int(e["start"]), int(e["end"]), e["label"], e["tag"]) for e in dom["entities"])
    assert got == sorted(
        (e["start"], e["end"], e["label"], f"\u2068{e['label']}\u2069 {e['score']:.2f}") for e in want["entities"]
    )
    assert all(e["bars"] >= 2 for e in dom["entities"])  # bar + label tab
    # Every relation: an arc from its head to its tail, labelled with its score, with one arrowhead.
    got = sorted((int(a["head"]), int(a["tail"]), a["label"], tuple(a["tags"]), a["arrowheads"]) for a in dom["arcs"])
    assert got == sorted(
        (r["head"], r["tail"], r["label"], (f"\u2068{r['label']}\u2069 {r['score']:.2f}",), 1)
        for r in want["relations"]
    )
    # The table.
    assert len(dom["rows"]) == len(want["entities"]) and len(dom["relationRows"]) == len(want["relations"])
    # The words, in order, are the text's; the script shows as text.
    assert "".join(w["text"] for w in dom["words"]) == "".join(text.split())
    assert not browser.overlapping([w["box"] for w in dom["words"]])
    shot = browser.full_page_screenshot(driver, tmp_path / "page.png")
    assert browser.blank_reason(shot) is None, browser.blank_reason(shot)


@pytest.mark.parametrize(
    "name,text",
    [
        ("emoji", "Mary Smith 👩🏽‍🔬 works for Acme Corp 🏢 in Paris 🇫🇷 ."),
        ("control characters", "Mary\x00 Smith\x07 works\x1b[31m for \x7fAcme Corp in Paris ."),
        ("right to left", "מרי סמית עובדת ב Acme Corp בפריז . John Doe lives in London ."),
        ("long", " ".join([TEXTS[0]] * 300)),
    ],
)
def test_odd_texts_render_without_breaking_the_page(driver, url, tmp_path, name, text):
    browser.submit_text(driver, url, text)
    dom = browser.dom_summary(driver)
    assert dom["error"] is None
    assert dom["scripts"] == 0
    assert len(dom["words"]) >= len(text.split())
    assert not browser.overlapping([w["box"] for w in dom["words"]]), "words drawn over each other"
    # The page keeps its width: rows wrap instead of running off to the right.
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot = browser.full_page_screenshot(driver, tmp_path / f"{name.replace(' ', '-')}.png")
    assert browser.blank_reason(shot) is None
