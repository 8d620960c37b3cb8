"""Training throughput of each component at the shipped size against its arithmetic floor.

Usage: python benchmarks/training.py [--threads 2] [--steps 8]

For each trainer (dVAE, transformer, scorer) a fresh model of the shipped recipe's size runs the real
training step (its task's loss with hard negatives and all, backward, AdamW) on batches of the recipe's
size. The FLOPs of one step are counted by torch's FlopCounterMode; the floor is those FLOPs over the
best fp32 (or, where the CPU has it natively, bf16) matmul throughput measured during this run. The data pipeline
(rendering scenes, making negatives) is timed separately, since the recipe can overlap it with compute.
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import matmul_gflops, record
from torch.utils.flop_counter import FlopCounterMode

from dalle_core.clip import make_clip
from dalle_core.data import ShapesWorld
from dalle_core.device import autocast, bf16_supported
from dalle_core.recipe import Recipe
from dalle_core.text import TextTokenizer
from dalle_core.train_clip import ClipRecipe, ClipTask
from dalle_core.train_transformer import (
    TransformerRecipe,
    TransformerTask,
    precompute_tokens,
)
from dalle_core.train_vae import VAETask
from dalle_core.training import TrainArgs, make_optimizer
from dalle_core.transformer import DalleTransformer, TransformerConfig
from dalle_core.vae import DiscreteVAE


def step_seconds(task, batches: list, steps: int, bf16: bool) -> tuple[float, float]:
    """(median seconds of a training step on prepared batches, FLOPs of one step)."""
    opt = make_optimizer(task.model, TrainArgs(out="unused", bf16=False))
    task.model.train()

    def step(batch, k):
        with autocast("cpu", bf16):
            loss, _ = task.loss(batch, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step(batches[0], 0)
    times = []
    for k in range(steps):
        t = time.perf_counter()
        step(batches[1 + k % (len(batches) - 1)], k + 1)
        times.append(time.perf_counter() - t)
    return statistics.median(times), counter.get_total_flops()


def data_seconds(task, n: int) -> float:
    """Median seconds to draw one batch from the task's stream."""
    stream = task.batches(0)
    next(stream)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        next(stream)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    bf16 = bf16_supported("cpu")
    dtype = torch.bfloat16 if bf16 else torch.float32
    peaks = [matmul_gflops(dtype)]  # measured again after each component: the best is the peak
    r = Recipe()
    source = ShapesWorld(r.image_size)
    tok = TextTokenizer.train(source.captions(5000), r.text_len, r.text_vocab)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)

        def args(batch: int) -> TrainArgs:
            return TrainArgs(
                out=str(tmp / "run"), steps=1000, batch_size=batch, bf16=bf16, workers=0
            )

        vae = DiscreteVAE(replace(r.vae, image_size=r.image_size))
        vae_task = VAETask(
            vae, source, args(r.vae_batch), replace(r.vae_recipe, val_images=8), faithful=False
        )
        tokens = precompute_tokens(
            tmp / "tokens.safetensors", source, vae, tok, 4 * r.transformer_batch, val=8
        )
        config = TransformerConfig(
            text_vocab=tok.vocab_size,
            text_len=tok.length,
            pad_id=tok.pad_id,
            image_vocab=vae.config.codebook,
            grid=vae.config.grid,
            **r.transformer,
        )
        transformer_task = TransformerTask(
            DalleTransformer(config),
            tokens,
            vae,
            tok,
            args(r.transformer_batch),
            TransformerRecipe(val_samples=1),
        )
        clip_task = ClipTask(
            make_clip(tok, r.image_size, **r.clip),
            source,
            tok,
            args(r.clip_batch),
            ClipRecipe(val_pairs=8),
        )
        for name, task, batch, unit in [
            ("dVAE", vae_task, r.vae_batch, "images"),
            ("transformer", transformer_task, r.transformer_batch, "streams"),
            ("scorer", clip_task, r.clip_batch, "pairs"),
        ]:
            stream = task.batches(0)
            batches = [next(stream) for _ in range(4)]
            seconds, flops = step_seconds(task, batches, a.steps, bf16)
            data = data_seconds(task, 4)
            peaks.append(matmul_gflops(dtype))
            params = sum(p.numel() for p in task.model.parameters())
            rows.append(
                {
                    "component": f"{name} ({unit})",
                    "params_M": params / 1e6,
                    "batch": batch,
                    "step_s": seconds,
                    "samples_per_s": batch / seconds,
                    "GFLOP_per_step": flops / 1e9,
                    "achieved_GFLOP_s": flops / seconds / 1e9,
                    "data_s_per_batch": data,
                }
            )
            print(rows[-1])
    for row in rows:  # the floor: the step's FLOPs at the best throughput seen
        row["x_floor"] = row["step_s"] / (row["GFLOP_per_step"] / max(peaks))
    record(
        "training",
        rows,
        f"One training step (loss, backward, AdamW) at the shipped recipe's sizes, "
        f"{'bf16' if bf16 else 'fp32'}, median of {a.steps} after a warm-up, on batches "
        f"prepared beforehand; FLOPs counted by torch's FlopCounterMode; floor = FLOPs over the "
        f"best matmul throughput measured in the run ({max(peaks):.0f} GFLOP/s; the machine is "
        f"shared, so the peak is re-measured after each component and the best kept). "
        f"data_s_per_batch: drawing one batch "
        "(rendering, and for the scorer its hard negatives) in the training process. "
        "The full recipe's wall time is in assets/MODEL_CARD.md.",
    )


if __name__ == "__main__":
    main()
