"""The screenshot of docs/annotate-with-label-studio.md: Label Studio's
labeling page with the entities and relations that ``serve`` pre-annotated.

    python tests/make_label_studio_screenshot.py MODEL assets/screenshots

Starts the real Label Studio offline on 127.0.0.1 (``make labelstudio``
installs it; tests/label_studio.py has the settings) and ``python -m
spacy_spert serve MODEL`` on another localhost port, creates a project with
a labeling config of MODEL's labels, imports the demo's held-out sentences,
connects ``serve`` as the project's model and retrieves its predictions
(checked as tests/apps/test_label_studio_app.py checks them), then logs in
with headless Chromium, opens the first task and saves
``label-studio.png``. Needs Chromium and chromium-driver (Debian) and the
test extra; MODEL: the demo model, ``training/demo/model-last`` (``make
demo``).
"""

import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

sys.path.insert(0, str(Path(__file__).parent))
# research/ (the demo's sentences) from the repository, not tests/research/
sys.path.insert(0, str(Path(__file__).parents[1]))

import browser
import label_studio as ls
from make_screenshots import shrink


def pre_annotate(app: ls.LabelStudio, backend: str, entities, relations, texts) -> Tuple[int, dict, list]:
    """Create a project, import ``texts``, connect ``backend`` and retrieve
    its predictions; check the first task's.

    RETURNS (Tuple[int, dict, list]): The project id, the first task and its prediction's result.
    """
    config = ls.label_config(entities, relations)
    project = app.api("POST", "/api/projects/", {"title": "spert demo", "label_config": config})["id"]
    app.api("POST", f"/api/projects/{project}/import", [{"data": {"text": text}} for text in texts])
    tasks = app.api("GET", f"/api/tasks/?project={project}")["tasks"]
    app.api("POST", "/api/ml/", {"url": backend, "project": project, "title": "spert", "is_interactive": False})
    selected = {"selectedItems": {"all": False, "included": [task["id"] for task in tasks]}}
    app.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}", selected)
    task = min(tasks, key=lambda task: task["id"])
    stored = app.api("GET", f"/api/predictions/?task={task['id']}")
    if len(stored) != 1:
        sys.exit(f"task {task['id']} has {len(stored)} predictions, not 1")
    result = stored[0]["result"]
    problems = ls.check_result(task["data"]["text"], result, entities, relations)
    if problems:
        sys.exit("invalid prediction:\n" + "\n".join(problems))
    return project, task, result


def main(model: str, out_dir: str, width: int = 1280, height: int = 660) -> None:
    import spacy
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from research.demo import SENTENCES
    from spacy_spert.io.label_studio_tasks import model_labels

    reason = browser.missing() or ls.missing()
    if reason:
        sys.exit(reason)
    entities, relations = model_labels(spacy.load(model))
    path = Path(out_dir) / "label-studio.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        ls.running_label_studio(Path(tmp)) as app,
        ls.running_serve(Path(model), log=Path(tmp) / "serve.log") as backend,
    ):
        project, task, result = pre_annotate(app, backend, entities, relations, SENTENCES)
        shown = [item["value"]["text"] for item in result if item["type"] == "labels"]
        shown += [label for item in result if item["type"] == "relation" for label in item["labels"]]
        driver = browser.start_chromium(width=width, height=height + 140)  # + the window's own bars
        try:
            driver.get(app.url + "/user/login/")
            driver.find_element(By.NAME, "email").send_keys(app.username)
            driver.find_element(By.NAME, "password").send_keys(app.password)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
            WebDriverWait(driver, 60).until(lambda d: "/user/login" not in d.current_url)
            driver.get(f"{app.url}/projects/{project}/data?task={task['id']}")
            # The labeling page shows the prediction: its regions (side panel) and relations' labels.
            WebDriverWait(driver, 120).until(
                lambda d: all(text in d.execute_script("return document.body.innerText") for text in shown)
            )
            time.sleep(2)  # the arrows are drawn after the regions
            driver.set_window_size(width, height + driver.execute_script("return outerHeight - innerHeight"))
            assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
        finally:
            driver.quit()
    reason = browser.blank_reason(path)
    if reason:
        sys.exit(f"{path} looks blank: {reason}")
    shrink(path)
    print(f"{path} ({path.stat().st_size // 1024} KiB): task {task['id']}, {len(result)} result items shown")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
