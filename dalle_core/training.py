"""The training loop shared by the three trainers (VAE, transformer, scorer).

Each trainer is a `Task`: it names its model, streams its batches, computes its loss
and validates; this loop adds the rest: AdamW with warm-up and cosine decay, bf16
autocast, gradient accumulation, a progress bar, a JSON-lines log, and atomic checkpoints
that `--resume` continues exactly (micro-batch k of rank r always sees batch (seed, r, k)
and the random seed `stream_seed(seed, r, k)`). Ctrl-C or SIGTERM stops a single-process run at the end of
its current step with a checkpoint of that step, so nothing trained is lost.

Under `torchrun` (`init_distributed`) the loop runs the task's loss through
DistributedDataParallel: every process draws its own batches (its rank is part of the
batch seed), gradients are averaged across processes, and only rank 0 validates, logs
and writes checkpoints. The batch of one optimizer step is batch_size x accum x processes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_training,
    read_json,
    remove_partial,
    save_training,
    trim_log,
    write_json,
)
from .data import stream_seed
from .device import autocast, bf16_supported, device_name, resolve_device


@dataclass
class TrainArgs:
    """Options common to every trainer."""

    out: str
    steps: int = 1000
    batch_size: int = 64  # per process and micro-batch
    accum: int = 1  # micro-batches per optimizer step (gradient accumulation)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = (
        None  # None: on where the hardware computes bf16 natively (see `bf16_supported`)
    )
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 25
    workers: int = 1
    resume: bool = False
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self):
        if self.accum < 1:
            raise ValueError(f"accum must be at least 1, got {self.accum}")
        if self.bf16 is None:
            self.bf16 = bf16_supported(resolve_device(self.device))


class Task(Protocol):
    """What a trainer supplies to `train`."""

    name: str
    model: torch.nn.Module

    def batches(self, start: int, rank: int = 0) -> Iterator[Any]: ...

    def loss(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, step: int, out: Path) -> dict[str, float]: ...

    def export(self, out: Path) -> None: ...


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, NCCL on
    CUDA, each process on the GPU of its LOCAL_RANK); returns (rank, processes), (0, 1) outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = resolve_device(device) == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Rank 0 alone runs the stages that are not training (the token cache, say); the others wait.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=6))
    return dist.get_rank(), dist.get_world_size()


def rank_and_world() -> tuple[int, int]:
    """(rank, processes) of the current process group, (0, 1) without one."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    if dist.is_initialized():
        dist.barrier()


class _TaskLoss(torch.nn.Module):
    """`task.loss` as the forward of a module holding the task's model, so that DistributedDataParallel,
    which hooks a module's forward, sees every loss whatever methods of the model it calls."""

    def __init__(self, task: Task):
        super().__init__()
        self.model = task.model
        self.task = task

    def forward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.loss(batch, step)


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr`."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    )


def make_optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or embeddings' gains)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def train(task: Task, args: TrainArgs) -> dict[str, float]:
    """Train `task.model` for `args.steps` optimizer steps; returns the last validation metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = rank_and_world()
    out = Path(args.out)
    opt = make_optimizer(task.model, args)
    start, metrics, before = 0, {}, 0.0  # before: seconds of training kept from earlier sessions
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not args.resume:
        raise CheckpointError(
            f"{out} already holds a run (last checkpoint {ckpt.name}): "
            "pass --resume to continue it, or choose another --out"
        )
    barrier()  # every process has seen the same checkpoints before rank 0 may tidy up
    if ckpt is not None:
        if rank == 0:
            remove_partial(out)
        state = load_training(ckpt, {task.name: task.model}, opt)
        start, metrics, before = state["step"], state.get("metrics", {}), state.get("seconds", 0.0)
        if rank == 0:
            trim_log(out / "log.jsonl", start)
            print(f"resuming {task.name} from {ckpt} (step {start})")
    device, bf16 = task_device(task), args.bf16
    step_loss: torch.nn.Module = _TaskLoss(task)
    if world > 1:  # broadcasts rank 0's weights, then averages gradients in backward
        step_loss = DistributedDataParallel(
            step_loss, find_unused_parameters=True
        )  # the decoder-only VAE stage
    log = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "args.json", {**asdict(args), "processes": world})
        log = (out / "log.jsonl").open("a")
        session = {
            "device": device_name(device),
            "threads": torch.get_num_threads(),
            "processes": world,
        }
        log.write(json.dumps({"step": start, "session": session}) + "\n")
    bar = tqdm(
        total=args.steps,
        initial=start,
        desc=f"train {task.name}",
        dynamic_ncols=True,
        disable=rank != 0,
    )
    per_step = args.batch_size * args.accum * world
    batches = task.batches(start * args.accum, rank)
    t0, seen = time.time(), 0

    def trained() -> float:
        """Seconds of training so far, over every session of the run (what its checkpoints keep)."""
        return round(before + time.time() - t0, 1)

    with _stop_on_signal(world == 1) as stop:
        for step in range(start, args.steps):
            task.model.train()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            opt.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            reports: dict[str, int] = {}
            # Gradient accumulation: `accum` micro-batches, each loss divided by `accum`, so the summed
            # gradients are those of one batch `accum` times larger. Under DDP only the last micro-batch
            # all-reduces (`no_sync` on the others), and micro-batch k of rank r is always the same data
            # and random seed, which is what makes --resume continue exactly.
            for i in range(args.accum):
                micro = step * args.accum + i
                batch = next(batches)
                torch.manual_seed(
                    stream_seed(args.seed, rank, micro)
                )  # after the batch: a loader may use torch's RNG
                last = i == args.accum - 1
                sync = step_loss.no_sync() if world > 1 and not last else contextlib.nullcontext()
                with sync:
                    with autocast(device, bf16):
                        loss, micro_logs = step_loss(batch, step)
                    (loss / args.accum).backward()
                for k, v in micro_logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                    reports[k] = reports.get(k, 0) + 1
            logs = {
                k: v / reports[k] for k, v in sums.items()
            }  # the mean over the micro-batches that reported it
            if args.grad_clip:
                torch.nn.utils.clip_grad_norm_(task.model.parameters(), args.grad_clip)
            opt.step()
            seen += per_step
            done = step + 1
            if rank != 0:
                continue
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            if done % args.log_every == 0 or done == args.steps:
                rate = seen / max(time.time() - t0, 1e-9)
                log.write(
                    json.dumps(
                        {
                            "step": done,
                            "samples": done * per_step,
                            "lr": lr_at(step, args),
                            "samples_per_s": round(rate, 2),
                            "seconds": trained(),
                            **logs,
                        }
                    )
                    + "\n"
                )
                log.flush()
            if done % args.val_every == 0 or done == args.steps:
                task.model.eval()
                with torch.no_grad():
                    metrics = task.validate(done, out)
                log.write(
                    json.dumps({"step": done, "samples": done * per_step, "val": metrics}) + "\n"
                )
                log.flush()
                bar.write(
                    f"[{task.name} step {done}] "
                    + " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                )
            if done % args.ckpt_every == 0 or done == args.steps or stop.is_set():
                save_training(
                    out,
                    done,
                    {task.name: task.model},
                    opt,
                    {"metrics": metrics, "seconds": trained()},
                )
            if stop.is_set():
                bar.close()
                log.close()
                print(f"{task.name}: stopped at step {done}; --resume continues the run in {out}")
                raise KeyboardInterrupt
    bar.close()
    task.model.eval()
    spread = replica_spread(task.model) if world > 1 else 0.0
    if rank == 0:
        if world > 1:  # the replicas must have stayed equal: a number the log keeps as evidence
            log.write(
                json.dumps({"step": args.steps, "processes": world, "replica_max_abs_diff": spread})
                + "\n"
            )
        log.close()
        task.export(out)
    barrier()  # nobody moves on (to the next stage, say) before rank 0 has exported
    return metrics


@contextlib.contextmanager
def _stop_on_signal(enabled: bool) -> Iterator[threading.Event]:
    """An event that the first SIGINT or SIGTERM sets (the loop then stops after its step); a second SIGINT
    interrupts at once. Only in the main thread of a single process: DDP ranks must stop at the same step."""
    stop = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print(
            "\nstopping after this step and saving a checkpoint (Ctrl-C again stops at once)",
            flush=True,
        )

    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def replica_spread(model: torch.nn.Module) -> float:
    """The largest difference of any parameter between the processes' copies of `model` (0.0 when they agree)."""
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return (high - low).max().item()


def trained_seconds(run: str | Path) -> float:
    """Seconds of training that a run's latest checkpoint keeps, over all its sessions (0.0 without one)."""
    ckpt = latest_checkpoint(run)
    return read_json(ckpt / "state.json").get("seconds", 0.0) if ckpt is not None else 0.0


def task_device(task: Task) -> str:
    return next(task.model.parameters()).device.type
