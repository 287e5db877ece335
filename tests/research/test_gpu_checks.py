"""research/gpu_checks.sh, the prepared GPU run: its shell parses, and every
command it would run names options the commands have (a dry run here)."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

import research.cli as research_cli

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "research" / "gpu_checks.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_gpu_checks_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_gpu_checks_dry_run_names_real_commands_and_options(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "OUT": str(tmp_path / "out"), "SEEDS": "0,1"}
    result = subprocess.run(["bash", str(SCRIPT), "run"], capture_output=True, text=True, env=env, check=True)
    commands = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("$ ")]
    research = typer.main.get_command(research_cli.app).commands
    seen = set()
    for args in commands:
        assert args[:2] == ["python3", "-m"], args
        if args[2] == "research":
            command = research[args[3]]
            options = {opt for param in command.params for opt in param.opts}
            seen.add(args[3])
        elif args[2] == "spacy_spert":
            from spacy_spert.cli.util import app

            command = typer.main.get_command(app).commands[args[3]]
            options = {opt for param in command.params for opt in param.opts}
        else:
            continue  # pytest and spacy train (config overrides)
        for arg in args[4:]:
            if arg.startswith("--"):
                assert arg in options, (args[3], arg)
    assert seen == {"optimizer-speed", "speed", "memory"}
    trains = [a for a in commands if a[2:4] == ["spacy", "train"]]
    assert len(trains) == 4  # two seeds, float32 and mixed
    assert sum("--components.spert.model.mixed_precision" in a for a in trains) == 2
