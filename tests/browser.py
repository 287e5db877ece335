"""Headless Chromium for the browser test and the README's screenshots
(tests/make_screenshots.py): Debian's `chromium` and `chromium-driver`
packages driven by selenium (no browser is downloaded)."""

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def _which(names) -> Optional[str]:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing() -> Optional[str]:
    """Why the browser cannot run here, or None if it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    if _which(CHROMIUM_NAMES) is None:
        return "Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run installs it)"
    if _which(DRIVER_NAMES) is None:
        return "chromedriver is not installed (Debian: apt-get install chromium-driver; .ci/run installs it)"
    return None


def start_chromium(width: int = 1200, height: int = 900):
    """A headless Chromium (selenium WebDriver) with the given window size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM_NAMES)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(_which(DRIVER_NAMES)), options=options)


def submit_text(driver, url: str, text: str, timeout: float = 120) -> None:
    """Open the app's page, put ``text`` in the text box, submit and wait for
    the result (or an error) to appear."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    box = driver.find_element(By.ID, "text")
    # ChromeDriver types only characters of the Basic Multilingual Plane; set the value directly.
    driver.execute_script("arguments[0].value = arguments[1];", box, text)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result .spert-figure, #error"))


def dom_summary(driver) -> Dict[str, Any]:
    """What the page shows: entities and arcs (their data attributes and
    label texts), the table rows, the text box's value, the words' boxes."""
    return driver.execute_script("""
        const data = (el) => Object.assign({}, el.dataset);
        const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
        return {
          entities: [...document.querySelectorAll('#result g.spert-entity')].map(g => Object.assign(data(g), {
              tag: (g.querySelector('text.spert-entity-label') || {}).textContent,
              bars: g.querySelectorAll('rect').length})),
          arcs: [...document.querySelectorAll('#result g.spert-arc')].map(g => Object.assign(data(g), {
              tags: [...g.querySelectorAll('text.spert-arc-label')].map(t => t.textContent),
              paths: g.querySelectorAll('path').length,
              arrowheads: g.querySelectorAll('path.spert-arrowhead').length})),
          rows: [...document.querySelectorAll('#result table.spert-entities tbody tr')].map(tr => tr.innerText),
          relationRows: [...document.querySelectorAll('#result table.spert-relations tbody tr')].map(tr => tr.innerText),
          words: [...document.querySelectorAll('#result text.spert-word')].map(t => ({text: t.textContent, box: box(t)})),
          textbox: document.getElementById('text').value,
          error: (document.getElementById('error') || {}).textContent || null,
          scripts: document.scripts.length,
        };
    """)


def overlapping(boxes: List[List[float]], tolerance: float = 0.5) -> List[tuple]:
    """Pairs of boxes [left, top, right, bottom] that overlap by more than ``tolerance`` px."""
    pairs = []
    ordered = sorted(enumerate(boxes), key=lambda item: item[1][0])
    for n, (i, a) in enumerate(ordered):
        for j, b in ordered[n + 1 :]:
            if b[0] >= a[2] - tolerance:
                break
            if min(a[3], b[3]) - max(a[1], b[1]) > tolerance and min(a[2], b[2]) - max(a[0], b[0]) > tolerance:
                pairs.append((i, j))
    return pairs


def full_page_screenshot(driver, path: Path, width: int = 1200) -> Path:
    """Resize the window to the page's height and save a PNG of it."""
    driver.set_window_size(width, 300)  # the page's height, not the window's
    height, chrome = driver.execute_script(
        "return [Math.ceil(document.documentElement.scrollHeight), window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(width, min(max(height + chrome + 4, 300), 8000))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


def blank_reason(path: Path) -> Optional[str]:
    """Why the PNG at ``path`` looks blank (one colour, or almost all
    background), or None if it shows something."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20) or []
        n_pixels = rgb.width * rgb.height
    if len(colors) < 16:
        return f"only {len(colors)} colours"
    background = max(colors)[0]
    if background > 0.995 * n_pixels:
        return f"{background} of {n_pixels} pixels are the background colour"
    return None
