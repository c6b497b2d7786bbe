"""README's two commands stay true: the main one is run here (less its set-up
steps, which the test environment already did), the test one is what CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def command(marker: str) -> str:
    block = re.search(rf"<!-- {marker} -->\n```sh\n(.+?)\n```\n<!-- /{marker} -->", README, re.S)
    assert block, f"README.md has no {marker} block"
    return block.group(1).strip()


def test_readme_main_command_traces_an_example_and_shows_its_tree(tmp_path: Path) -> None:
    steps = [step.strip() for step in command("main-command").split("&&")]
    assert steps[0].startswith("python3 -m venv .venv")
    assert "pip install" in steps[1]
    bin_dir = str(Path(sys.executable).parent) + os.sep
    trace = str(tmp_path / "trace.jsonl")
    runnable = " && ".join(step.replace(".venv/bin/", bin_dir).replace("trace.jsonl", trace) for step in steps[2:])
    result = subprocess.run(runnable, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "returned result: 'the result'" in result.stdout
    assert "task Task-1 #1 (main)  resolved" in result.stdout
    assert "future #2  resolved" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    test_command = command("test-command")
    assert test_command.endswith("-m pytest")
    script = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in script  # .ci/run extracts the command from README, verbatim
