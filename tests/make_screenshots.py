"""The README's screenshots, made with the machinery of the browser test:

    python tests/make_screenshots.py MODEL assets/screenshots

- ``serve-page.png``: the page of ``serve`` (MODEL loaded once, on a free
  localhost port) after submitting one of the demo's held-out sentences;
- ``render.png``: the page ``render`` writes for all of them, each its own
  doc (``python -m spacy_spert render MODEL render.html --text ...``).

Optionally, the error-analysis report of ``evaluate --report``:

    python tests/make_screenshots.py --report REPORT.html assets/screenshots

- ``report.png``: the top of the page: scores, entity confusion and the
  start of the error buckets (needs no MODEL).

Needs Chromium and chromium-driver (Debian) and the test extra. The PNGs are
reduced to a 256-colour palette to keep them small.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import browser


def shrink(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(model: str, out_dir: str) -> None:
    import spacy

    from research.demo import SENTENCES
    from spacy_spert.apps.render import render_file
    from spacy_spert.apps.serve import make_app, running_server

    reason = browser.missing()
    if reason:
        sys.exit(reason)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nlp = spacy.load(model)
    driver = browser.start_chromium(width=1100, height=800)
    try:
        with running_server(make_app(nlp)) as url:
            browser.submit_text(driver, url, SENTENCES[3])
            page = browser.full_page_screenshot(driver, out / "serve-page.png", width=1100)
        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "render.html"
            render_file(model, html, texts=SENTENCES, max_width=900)
            driver.get(html.resolve().as_uri())
            rendered = browser.full_page_screenshot(driver, out / "render.png", width=1100)
    finally:
        driver.quit()
    for path in (page, rendered):
        reason = browser.blank_reason(path)
        if reason:
            sys.exit(f"{path} looks blank: {reason}")
        shrink(path)
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


def report_screenshot(report: str, out_dir: str, height: int = 2200) -> None:
    """``report.png``: the top ``height`` px of the report page, 1100 px wide."""
    from PIL import Image

    reason = browser.missing()
    if reason:
        sys.exit(reason)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.png"
    driver = browser.start_chromium(width=1100, height=800)
    try:
        driver.get(Path(report).resolve().as_uri())
        browser.full_page_screenshot(driver, path, width=1100)
    finally:
        driver.quit()
    with Image.open(path) as image:
        top = image.convert("RGB").crop((0, 0, image.width, min(image.height, height)))
    top.save(path)
    reason = browser.blank_reason(path)
    if reason:
        sys.exit(f"{path} looks blank: {reason}")
    shrink(path)
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--report":
        report_screenshot(sys.argv[2], sys.argv[3])
    elif len(sys.argv) != 3:
        sys.exit(__doc__)
    else:
        main(sys.argv[1], sys.argv[2])
