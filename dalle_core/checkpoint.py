"""Saving and loading: weights as safetensors with their config as JSON, written atomically.

A model `name` in a directory is `name.safetensors` + `name.json` (its config dataclass).
Training checkpoints are whole directories `step-NNNNNNN/` renamed into place when
complete, with a `latest` file pointing at the newest, so none is ever seen half-written.
Nothing here unpickles anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

T = TypeVar("T")
MANIFEST = "manifest.json"  # SHA-256 of every file of an exported checkpoint directory


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or does not fit the model."""


def _atomic(path: Path, write: Callable[[str], object]) -> None:
    """Call `write(temporary path)`, then rename the file to `path`: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str | Path, data: bytes | str) -> None:
    """Write a file atomically (a temporary file, then a rename)."""
    raw = data.encode() if isinstance(data, str) else data
    _atomic(Path(path), lambda tmp: Path(tmp).write_bytes(raw))


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    write_bytes(path, json.dumps(obj, indent=2))


def read_json(path: str | Path) -> Any:
    """A JSON file's content; `CheckpointError` if it is missing, damaged, or differs from its manifest."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"missing file {path}")
    verify(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors as safetensors atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"missing weights file {path}")
    verify(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({e})") from e


def sha256(path: Path) -> str:
    """The SHA-256 digest of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: str | Path) -> dict[str, str]:
    """The SHA-256 of each weights, config and tokenizer file of a checkpoint directory, by name."""
    directory = Path(directory)
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix in (".safetensors", ".json") and p.name != MANIFEST
    )
    return {p.name: sha256(p) for p in files}


def write_manifest(directory: str | Path) -> None:
    """Write `manifest.json` in a checkpoint directory: `file_digests`. Loading checks every file against
    it (`verify`)."""
    write_json(Path(directory) / MANIFEST, file_digests(directory))


def matches_manifest(path: Path) -> bool:
    """Whether `path` is listed, with its current digest, in the manifest beside it (a directory
    without a manifest has no finished files)."""
    try:
        return (path.parent / MANIFEST).exists() and path.exists() and verify(path) is None
    except CheckpointError:
        return False


def verify(path: Path) -> None:
    """`CheckpointError` naming `path` if its directory has a manifest that does not list it with its digest.
    (A directory without a manifest, such as a training run's, is not checked.)"""
    manifest = path.parent / MANIFEST
    if path.name == MANIFEST or not manifest.exists():
        return
    try:
        digests = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{manifest} is not valid JSON ({e})") from e
    if path.name not in digests:
        raise CheckpointError(
            f"{path} is not listed in {manifest}: it was added after the checkpoint was written"
        )
    if sha256(path) != digests[path.name]:
        raise CheckpointError(
            f"{path} differs from the SHA-256 recorded in {manifest}: the file was changed or "
            "damaged after the checkpoint was written. Restore it (for the shipped weights: "
            "reinstall or `git checkout assets/`), or train again"
        )


def config_from_json(cls: type[T], path: str | Path) -> T:
    """A config dataclass read from JSON (lists become tuples where the field's default is one)."""
    raw = read_json(path)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(names)
    if unknown:
        raise CheckpointError(
            f"{path} has fields {sorted(unknown)} that {cls.__name__} does not know"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def save_model(directory: str | Path, name: str, model: torch.nn.Module) -> None:
    """Write `name.safetensors` and `name.json` (the model's `config` dataclass)."""
    directory = Path(directory)
    write_tensors(directory / f"{name}.safetensors", model.state_dict())
    write_json(directory / f"{name}.json", dataclasses.asdict(model.config))


def load_model(
    directory: str | Path, name: str, cls: type[T], config_cls: type, device: str = "cpu"
) -> T:
    """Build `cls(config)` from `name.json` and load `name.safetensors` into it, in eval mode."""
    directory = Path(directory)
    config = config_from_json(config_cls, directory / f"{name}.json")
    model = cls(config)
    load_weights(model, directory / f"{name}.safetensors", directory / f"{name}.json")
    return model.to(device).eval()


def load_weights(model: torch.nn.Module, weights: Path, config_path: Path | None = None) -> None:
    """Load a safetensors file into a model; a mismatch names both files."""
    state = read_tensors(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        where = f" built from {config_path}" if config_path else ""
        detail = str(e).splitlines()
        raise CheckpointError(
            f"weights {weights} do not fit the {type(model).__name__}{where}: "
            + " ".join(line.strip() for line in detail[1:4])
        ) from e


# ----------------------------------------------------------------------------- training state


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {
        f"{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items() if torch.is_tensor(v)
    }
    scalars = {
        f"{i}.{k}": v
        for i, s in sd["state"].items()
        for k, v in s.items()
        if not torch.is_tensor(v)
    }
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training(
    run: str | Path,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    extra: dict,
    keep: int = 2,
) -> Path:
    """Write a resumable checkpoint `run/step-NNNNNNN/` and point `run/latest` at it."""
    run = Path(run)
    final = run / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=run, prefix=".tmp-step-")) if run.exists() else None
    if tmp is None:
        run.mkdir(parents=True)
        tmp = Path(tempfile.mkdtemp(dir=run, prefix=".tmp-step-"))
    for name, model in models.items():
        save_model(tmp, name, model)
    tensors, meta = _flatten_optimizer(optimizer)
    write_tensors(tmp / "optimizer.safetensors", tensors)
    write_json(tmp / "state.json", {"step": step, "optimizer": meta, **extra})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_bytes(run / "latest", final.name)
    for old in sorted(run.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial(run: str | Path) -> None:
    """Delete checkpoint directories a killed run left half-written (they were never pointed at)."""
    for tmp in Path(run).glob(".tmp-step-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def trim_log(path: str | Path, step: int) -> None:
    """Keep the rows of a JSON-lines training log up to `step`: a resumed run logs the later ones again.
    A torn last row (the run was killed while writing it) goes too."""
    path = Path(path)
    if not path.exists():
        return

    def upto(line: str) -> bool:
        try:
            return json.loads(line)["step"] <= step
        except (ValueError, KeyError, TypeError):
            return False

    kept = [line for line in path.read_text().splitlines(keepends=True) if upto(line)]
    write_bytes(path, "".join(kept))


def latest_checkpoint(run: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    pointer = Path(run) / "latest"
    return Path(run) / pointer.read_text().strip() if pointer.exists() else None


def load_training(
    ckpt: Path, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer
) -> dict:
    """Load models and optimizer from a checkpoint directory; returns its state.json. `CheckpointError`
    if a model's config is not the one the checkpoint was saved with (the recipe changed since)."""
    state = read_json(ckpt / "state.json")
    for name, model in models.items():
        saved = config_from_json(type(model.config), ckpt / f"{name}.json")
        if saved != model.config:
            diff = [
                f.name
                for f in dataclasses.fields(saved)
                if getattr(saved, f.name) != getattr(model.config, f.name)
            ]
            raise CheckpointError(
                f"{ckpt / f'{name}.json'} was saved by a {type(model).__name__} with "
                f"{ {k: getattr(saved, k) for k in diff} }, but this run builds one with "
                f"{ {k: getattr(model.config, k) for k in diff} }: resume with the settings the run started with, "
                "or start a new run in another --out"
            )
        load_weights(model, ckpt / f"{name}.safetensors", ckpt / f"{name}.json")
    optimizer.load_state_dict(
        _unflatten_optimizer(read_tensors(ckpt / "optimizer.safetensors"), state["optimizer"])
    )
    return state
