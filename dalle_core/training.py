"""The training loop shared by the three trainers (VAE, transformer, scorer).

Each trainer is a `Task`: it names its model, streams its batches, computes its loss
and validates; this loop adds the rest: AdamW with warm-up and cosine decay, bf16
autocast, a progress bar, a JSON-lines log, and atomic checkpoints that `--resume`
continues exactly (step k always sees batch k and the random seed (seed, k)).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from .checkpoint import CheckpointError, latest_checkpoint, load_training, remove_partial, save_training


@dataclass
class TrainArgs:
    """Options common to every trainer."""
    out: str
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None  # None: on where the hardware computes bf16 natively (see `bf16_supported`)
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 25
    workers: int = 1
    resume: bool = False
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bf16_supported(resolve_device(self.device))


class Task(Protocol):
    """What a trainer supplies to `train`."""
    name: str
    model: torch.nn.Module

    def batches(self, start: int) -> Iterator[Any]: ...

    def loss(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, step: int, out: Path) -> dict[str, float]: ...

    def export(self, out: Path) -> None: ...


def resolve_device(device: str) -> str:
    """"auto" picks cuda when available; asking for cuda without it is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but CUDA is not available on this machine")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast on `device`: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 or AMX.

    Without native support (an AVX2-only CPU, say) PyTorch emulates bf16 matmuls about 100x slower than fp32.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device`, or nothing."""
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr`."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def make_optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or embeddings' gains)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def train(task: Task, args: TrainArgs) -> dict[str, float]:
    """Train `task.model` for `args.steps` steps; returns the last validation metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    opt = make_optimizer(task.model, args)
    start, metrics = 0, {}
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not args.resume:
        raise CheckpointError(f"{out} already holds a run (last checkpoint {ckpt.name}): "
                              "pass --resume to continue it, or choose another --out")
    if ckpt is not None:
        remove_partial(out)
        state = load_training(ckpt, {task.name: task.model}, opt)
        start, metrics = state["step"], state.get("metrics", {})
        print(f"resuming {task.name} from {ckpt} (step {start})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(asdict(args), indent=2))
    log = (out / "log.jsonl").open("a")
    device, bf16 = task_device(task), args.bf16
    bar = tqdm(total=args.steps, initial=start, desc=f"train {task.name}", dynamic_ncols=True)
    batches = task.batches(start)
    t0, seen = time.time(), 0
    for step in range(start, args.steps):
        task.model.train()
        batch = next(batches)
        torch.manual_seed(args.seed * 1_000_003 + step)  # after the batch: a loader may draw from torch's RNG
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        with autocast(device, bf16):
            loss, logs = task.loss(batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), args.grad_clip)
        opt.step()
        seen += args.batch_size
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            rate = seen / max(time.time() - t0, 1e-9)
            log.write(json.dumps({"step": done, "samples": done * args.batch_size, "lr": lr_at(step, args),
                                  "samples_per_s": round(rate, 2), **logs}) + "\n")
            log.flush()
        if done % args.val_every == 0 or done == args.steps:
            task.model.eval()
            with torch.no_grad():
                metrics = task.validate(done, out)
            log.write(json.dumps({"step": done, "samples": done * args.batch_size, "val": metrics}) + "\n")
            log.flush()
            bar.write(f"[{task.name} step {done}] " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if done % args.ckpt_every == 0 or done == args.steps:
            save_training(out, done, {task.name: task.model}, opt, {"metrics": metrics})
    bar.close()
    log.close()
    task.model.eval()
    task.export(out)
    return metrics


def task_device(task: Task) -> str:
    return next(task.model.parameters()).device.type
