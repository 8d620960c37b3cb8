"""The repository's own checks: ruff's linter and formatter (configured in pyproject.toml), and a README
that matches CI and the files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_finds_nothing():
    r = ruff("check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_the_code_is_formatted():
    r = ruff("format", "--check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines() if line.endswith("python -m pytest")]
    assert len(commands) == 1 and commands[0] in ci.splitlines()


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    named = {word for line in layout.splitlines() for word in line.split() if word.endswith(".py")}
    modules = {p.name for p in (ROOT / "dalle_core").glob("*.py")}
    assert named == modules, (
        f"in the README only: {named - modules}; in dalle_core only: {modules - named}"
    )
