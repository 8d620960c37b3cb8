"""Packaging beyond an editable install: a wheel built from this tree, installed into a fresh virtual
environment, carries the shipped weights and generates an image with them.

The venv sees the system's site-packages for torch and the other dependencies (copying them would take
gigabytes), but this project comes from the wheel alone: the test checks where it was imported from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        cmd,
        cwd=cwd,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel of this tree installed; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        cwd=tmp,
    )
    wheels = list((tmp / "dist").glob("laptop_dalle-*.whl"))
    assert len(wheels) == 1, wheels
    venv.create(tmp / "venv", system_site_packages=True, with_pip=False)
    bin_dir = tmp / "venv" / "bin"
    # --ignore-installed: the system site-packages may hold an editable install of this project
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            str(wheels[0]),
        ],
        cwd=tmp,
    )
    return bin_dir


def test_the_wheel_holds_the_weights_and_imports_from_itself(installed: Path, tmp_path: Path):
    code = (
        "import json, dalle_core, demo; from dalle_core import DEFAULT_CHECKPOINT; "
        "print(json.dumps([dalle_core.__file__, demo.__file__, str(DEFAULT_CHECKPOINT), "
        "sorted(p.name for p in DEFAULT_CHECKPOINT.iterdir())]))"
    )
    core, app, checkpoint, files = json.loads(
        run([str(installed / "python"), "-c", code], cwd=tmp_path).stdout
    )
    venv_root = installed.parent
    for path in (core, app, checkpoint):
        assert Path(path).is_relative_to(venv_root), f"{path} is not from the installed wheel"
    assert {
        "vae.safetensors",
        "transformer.safetensors",
        "clip.safetensors",
        "tokenizer.json",
    } <= set(files)


def test_the_installed_command_generates_an_image(installed: Path, tmp_path: Path):
    out = tmp_path / "red.png"
    r = run(
        [
            str(installed / "dalle"),
            "generate",
            "a red circle",
            "--n",
            "1",
            "--candidates",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert "wrote 1 images" in r.stdout
    image = Image.open(out)
    assert image.size[0] >= 64 and image.size[1] >= 64
