"""No colour codes off a terminal (spacy_spert/cli/util.py, set_colour): wasabi's ``msg``, which our
commands and spaCy print with, decides at import by the platform alone; every command of the app now colours
only when stdout is a terminal and NO_COLOR is unset. Checked in a real process, piped and on a
pseudo-terminal (where the colour must stay, so the check can fail), and in CliRunner."""

import json
import os
import pty
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spacy_spert.cli import app

TASKS = [
    {
        "id": 1,
        "data": {"text": "Anna went home ."},
        "annotations": [{"result": [{"id": "a", "type": "labels", "value": {"start": 0, "end": 4, "labels": ["P"]}}]}],
    }
]


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(TASKS), "utf8")
    return path


def run_on_pty(args, env):
    """Run a command with its stdout on a pseudo-terminal; RETURNS (str): what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(args, stdout=follower, stderr=subprocess.PIPE, env=env, timeout=120)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal is closed and read out
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode("utf8")


def command(export, output):
    return [sys.executable, "-m", "spacy_spert", "import", "label-studio", str(export), str(output)]


@pytest.mark.slow  # two processes that import spaCy and torch: ~10 s, more on a busy machine
def test_no_colour_when_piped_colour_on_a_terminal(export, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "ANSI_COLORS_DISABLED", "WASABI_LOG_FRIENDLY")}
    piped = subprocess.run(command(export, tmp_path / "a.spacy"), capture_output=True, env=env, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert b"Saved" in piped.stdout and b"\x1b[" not in piped.stdout + piped.stderr
    shown = run_on_pty(command(export, tmp_path / "b.spacy"), env)
    assert "Saved" in shown and "\x1b[" in shown  # the terminal keeps its colours


class Terminal:
    def isatty(self):
        return True


def test_colour_follows_the_terminal_and_no_color(monkeypatch):
    from wasabi import msg

    from spacy_spert.cli.util import set_colour

    saved = msg.show_color
    try:
        for name in ("NO_COLOR", "ANSI_COLORS_DISABLED", "WASABI_LOG_FRIENDLY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(sys, "stdout", Terminal())
        set_colour()
        assert msg.show_color is True
        for name in ("NO_COLOR", "ANSI_COLORS_DISABLED", "WASABI_LOG_FRIENDLY"):
            monkeypatch.setenv(name, "1")
            set_colour()
            assert msg.show_color is False, name
            monkeypatch.delenv(name)
        monkeypatch.setattr(sys, "stdout", object())  # no isatty at all
        set_colour()
        assert msg.show_color is False
    finally:
        msg.show_color = saved


def test_no_colour_in_cli_runner(export, tmp_path):
    result = CliRunner().invoke(app, ["import", "label-studio", str(export), str(tmp_path / "d.spacy")])
    assert result.exit_code == 0 and "Saved" in result.stdout
    assert "\x1b[" not in result.stdout
