"""Damaged and missing checkpoints: each gives a `CheckpointError` that names the file (or says how to get a
checkpoint), at every entry point that loads one: the facade, `dalle generate`, `dalle eval`, `dalle-demo`.

Killing a training run with SIGKILL and resuming it is tested in test_recipe.py (one process) and
test_distributed.py (torchrun); a damaged run checkpoint in test_vae.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dalle_core import Dalle
from dalle_core.checkpoint import (
    MANIFEST,
    CheckpointError,
    config_from_json,
    matches_manifest,
    save_model,
    verify,
    write_manifest,
)
from dalle_core.cli import main as dalle
from dalle_core.vae import DiscreteVAE, VAEConfig


@pytest.fixture
def checkpoint(demo_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the test checkpoint, to damage, without its manifest: the loader's own checks must hold for
    checkpoints that have none (trained before manifests existed, or assembled by hand)."""
    copy = Path(shutil.copytree(demo_checkpoint, tmp_path / "checkpoint"))
    (copy / MANIFEST).unlink(missing_ok=True)
    return copy


@pytest.fixture
def signed(demo_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the test checkpoint with its manifest."""
    copy = Path(shutil.copytree(demo_checkpoint, tmp_path / "signed"))
    if not (copy / MANIFEST).exists():
        write_manifest(copy)
    return copy


def flip_a_byte_of_a_tensor(path: Path) -> None:
    """A well-formed safetensors file with one changed value: the last byte of the data."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_shipped_checkpoint_has_a_manifest_of_every_file(demo_checkpoint: Path):
    from dalle_core import DEFAULT_CHECKPOINT

    if demo_checkpoint.resolve() != DEFAULT_CHECKPOINT.resolve():
        pytest.skip("DALLE_TEST_CHECKPOINT is not the shipped checkpoint")
    listed = json.loads((demo_checkpoint / MANIFEST).read_text())
    assert set(listed) == {p.name for p in demo_checkpoint.iterdir() if p.name != MANIFEST}
    for name in listed:
        verify(demo_checkpoint / name)


@pytest.mark.parametrize("name", ["vae", "transformer", "clip"])
def test_one_changed_byte_of_a_tensor_is_caught_and_the_file_named(
    checkpoint: Path, signed: Path, name: str
):
    flip_a_byte_of_a_tensor(checkpoint / f"{name}.safetensors")
    Dalle(
        checkpoint, device="cpu"
    )  # without a manifest such a file loads: only the digest can tell
    weights = signed / f"{name}.safetensors"
    flip_a_byte_of_a_tensor(weights)
    with pytest.raises(CheckpointError, match="differs from the SHA-256") as e:
        Dalle(signed, device="cpu")
    assert str(weights) in str(e.value)


@pytest.mark.parametrize("file", ["vae.json", "tokenizer.json", "text.json"])
def test_changed_configs_and_tokenizers_are_caught_too(signed: Path, file: str):
    path = signed / file
    path.write_text(path.read_text().replace("\n", "\n "))  # the same content to a JSON reader
    with pytest.raises(CheckpointError, match="differs from the SHA-256") as e:
        Dalle(signed, device="cpu")
    assert str(path) in str(e.value)


def test_a_file_the_manifest_does_not_list_is_refused(signed: Path):
    listed = json.loads((signed / MANIFEST).read_text())
    del listed["clip.safetensors"]
    (signed / MANIFEST).write_text(json.dumps(listed))
    with pytest.raises(CheckpointError, match="is not listed in"):
        Dalle(signed, device="cpu")


def test_a_stage_counts_as_finished_only_once_the_manifest_lists_it(tmp_path: Path):
    """`train all --resume` skips a stage whose file the manifest lists: a tokenizer.json written just before
    a kill -9, with no manifest yet, is not finished (CI once saw its time lost that way)."""
    (tmp_path / "tokenizer.json").write_text("{}")
    assert not matches_manifest(tmp_path / "tokenizer.json")
    write_manifest(tmp_path)
    assert matches_manifest(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer.json").write_text('{"changed": 1}')
    assert not matches_manifest(tmp_path / "tokenizer.json")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble_header(path: Path) -> None:
    """Overwrite the start of the JSON header (after its 8-byte length) with bytes that are not JSON."""
    data = bytearray(path.read_bytes())
    data[8:24] = b"\xff" * 16
    path.write_bytes(bytes(data))


def oversize_header(path: Path) -> None:
    """Claim a header longer than the file."""
    data = bytearray(path.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")
    path.write_bytes(bytes(data))


def reshape_a_tensor(path: Path) -> None:
    """A valid safetensors file whose first tensor has another shape."""
    tensors = load_file(str(path))
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 5)
    save_file(tensors, str(path))


def drop_a_tensor(path: Path) -> None:
    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(path))


def add_a_tensor(path: Path) -> None:
    save_file({**load_file(str(path)), "extra.weight": torch.zeros(1)}, str(path))


def pickle_instead(path: Path) -> None:
    """A pickle (as torch.save writes) under the safetensors name: refused, never unpickled."""
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (truncate, "is damaged or not a safetensors file"),
    "garbled header": (garble_header, "is damaged or not a safetensors file"),
    "oversized header": (oversize_header, "is damaged or not a safetensors file"),
    "empty": (empty, "is damaged or not a safetensors file"),
    "a pickle": (pickle_instead, "is damaged or not a safetensors file"),
    "a tensor of another shape": (reshape_a_tensor, "do not fit"),
    "a tensor missing": (drop_a_tensor, "do not fit"),
    "an unexpected tensor": (add_a_tensor, "do not fit"),
}


@pytest.mark.parametrize("name", ["vae", "transformer", "clip"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_weights_name_the_file(checkpoint: Path, name: str, damage: str):
    spoil, words = DAMAGE[damage]
    weights = checkpoint / f"{name}.safetensors"
    spoil(weights)
    with pytest.raises(CheckpointError, match=words) as e:
        Dalle(checkpoint, device="cpu")
    assert str(weights) in str(e.value)


@pytest.mark.parametrize(
    "file",
    ["vae.safetensors", "transformer.json", "clip.safetensors", "tokenizer.json", "text.json"],
)
def test_missing_files_are_named(checkpoint: Path, file: str):
    (checkpoint / file).unlink()
    with pytest.raises(CheckpointError, match="missing") as e:
        Dalle(checkpoint, device="cpu")
    assert str(checkpoint / file) in str(e.value)


@pytest.mark.parametrize(
    "file, content, words",
    [
        ("vae.json", "{not json", "is not valid JSON"),
        ("vae.json", '{"colour": 1}', "does not know"),
        ("text.json", "[1, 2]", "has no 'length' and 'words'"),
        ("text.json", "\xff\xfe", "is not valid JSON"),
        ("tokenizer.json", '{"model": 3}', "is damaged or not a tokenizer file"),
        ("tokenizer.json", "", "is damaged or not a tokenizer file"),
    ],
)
def test_broken_configs_are_named(checkpoint: Path, file: str, content: str, words: str):
    (checkpoint / file).write_text(content)
    with pytest.raises(CheckpointError, match=words) as e:
        Dalle(checkpoint, device="cpu")
    assert file in str(e.value)


def test_a_vae_the_transformer_was_not_trained_on_is_named(checkpoint: Path):
    """Weights that all load, but a VAE with another codebook: the error names both sides, not a shape."""
    vae = config_from_json(VAEConfig, checkpoint / "vae.json")
    save_model(
        checkpoint,
        "vae",
        DiscreteVAE(
            VAEConfig(
                image_size=vae.image_size, f=vae.f, codebook=2 * vae.codebook, widths=vae.widths
            )
        ),
    )
    with pytest.raises(CheckpointError) as e:
        Dalle(checkpoint, device="cpu")
    message = str(e.value)
    assert str(checkpoint / "transformer.json") in message
    assert (
        f"'image_vocab': {vae.codebook}" in message
        and f"'image_vocab': {2 * vae.codebook}" in message
    )


def test_the_command_line_reports_a_damaged_checkpoint(checkpoint: Path, tmp_path: Path):
    truncate(checkpoint / "transformer.safetensors")
    with pytest.raises(SystemExit) as e:
        dalle(
            [
                "generate",
                "a red circle",
                "--checkpoint",
                str(checkpoint),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out.png"),
            ]
        )
    assert str(e.value.code).startswith("error: ") and "transformer.safetensors is damaged" in str(
        e.value.code
    )


@pytest.mark.parametrize("command", [["generate", "a red circle"], ["eval"]])
def test_a_missing_checkpoint_directory_says_how_to_get_one(command: list[str], tmp_path: Path):
    with pytest.raises(SystemExit) as e:
        dalle([*command, "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    message = str(e.value.code)
    assert "no checkpoint directory" in message and "dalle train all --out DIR" in message
    assert "assets/checkpoint" in message


def test_the_demo_server_reports_a_missing_checkpoint(tmp_path: Path):
    from demo.__main__ import main as dalle_demo

    with pytest.raises(SystemExit) as e:
        dalle_demo(["--checkpoint", str(tmp_path / "nowhere"), "--device", "cpu"])
    assert str(e.value.code).startswith(
        "dalle-demo: no checkpoint directory"
    ) and "dalle train all" in str(e.value.code)
