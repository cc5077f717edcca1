"""The README's commands work as written right after `make run` / `make test`: every `mnist-lab`
command in its code blocks runs from the virtualenv those create, and `make run` takes PORT and
HOST."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def code_lines() -> list[str]:
    lines, fenced = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif fenced:
            lines.append(line.strip())
    return lines


def test_every_mnist_lab_command_in_the_readme_runs_from_the_virtualenv():
    commands = [line for line in code_lines() if re.search(r"(^|[\s=])(\S*/)?mnist-lab\s", line)
                and not line.startswith(("docker", "#"))]
    assert commands, "the README shows no mnist-lab command"
    for line in commands:
        assert re.search(r"(^|\s)\.venv/bin/mnist-lab\s", line), f"not runnable after make run: {line}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_passes_port_and_host_to_serve():
    dry = subprocess.run(["make", "-n", "run", "PORT=8123", "HOST=127.0.0.2"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/mnist-lab serve --host 127.0.0.2 --port 8123" in dry
    plain = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    assert re.search(r"mnist-lab serve\s*$", plain, re.MULTILINE)  # the environment decides
