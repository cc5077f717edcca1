"""The README's commands work as written right after `make run` / `make test`: every `mnist-lab`
command in its code blocks runs from the virtualenv those create and is one the CLI accepts, and
`make run` takes PORT and HOST. Every relative link in the README and docs/ leads somewhere."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import full_parser
from engine.cli import train_config_from_args

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


def readme_commands() -> list[list[str]]:
    """The arguments of every `.venv/bin/mnist-lab` command in the README's code blocks: lines
    continued with a backslash joined, up to a pipe or a comment."""
    joined, lines = [], code_lines()
    while lines:
        line = lines.pop(0)
        while line.endswith("\\") and lines:
            line = line[:-1] + " " + lines.pop(0)
        joined.append(line)
    commands = []
    for line in joined:
        if ".venv/bin/mnist-lab " not in line:
            continue
        words = shlex.split(line, comments=True)
        words = words[words.index(".venv/bin/mnist-lab") + 1:]
        commands.append(words[:words.index("|")] if "|" in words else words)
    return commands


def test_every_mnist_lab_command_in_the_readme_is_one_the_cli_accepts():
    """Each command's options exist and its values parse; a `train` line's config is valid."""
    commands = readme_commands()
    assert {words[0] for words in commands} >= {"train", "evaluate", "sweep", "presets"}
    for words in commands:
        try:
            args = full_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"the CLI refuses the README's `mnist-lab {' '.join(words)}`")
        if args.command == "train":
            train_config_from_args(args)  # raises UsageError for a value out of bounds


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_passes_port_and_host_to_serve():
    dry = subprocess.run(["make", "-n", "run", "PORT=8123", "HOST=127.0.0.2"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/mnist-lab serve --host 127.0.0.2 --port 8123" in dry
    plain = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    assert re.search(r"mnist-lab serve\s*$", plain, re.MULTILINE)  # the environment decides


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation (backticks
    included) dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in prose_lines(path) if line.startswith("#")}


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in prose_lines(page):
            for target in MARKDOWN_LINK.findall(re.sub(r"`[^`]*`", "", line)):  # not in code
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                    continue
                file, _, anchor = target.partition("#")
                resolved = (page.parent / file).resolve() if file else page
                if not resolved.exists():
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
                elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
