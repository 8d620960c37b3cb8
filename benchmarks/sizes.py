"""What a transformer size costs at the second edition's grid: the budget its learning curves choose within.

Usage: python benchmarks/sizes.py [--threads 2] [--repeat 5] [--sizes 4x192,6x256,8x256,8x384]

For each size (layers x width, heads of 32 channels, all layers causal as `dalle train --transformer-layers`
makes them) on a random-weight checkpoint of the v2 design (12 x 12 grid at 96 px, 40 text tokens):
1. the app's default request in process (`Dalle.generate`: 16 candidates, guidance 3, top-k 64, the best 4
   decoded and ranked), medians of `repeat` rounds that run every size in turn;
2. one training step of the transformer alone at the recipe's batch (forward, backward, AdamW; bf16 autocast
   where the CPU has it natively), on random tokens, with the hours that the recipe's steps would take.
The 2 s goal through the server (issue 30) holds the server's overhead on top of (1); see `latency.py`.
"""

import argparse
import statistics
import tempfile
import time

import torch
from common import interleaved_medians, record, sizes_of, transformer_size, v2_checkpoint

from dalle_core import Dalle
from dalle_core.device import autocast, bf16_supported
from dalle_core.recipe import PRESETS
from dalle_core.training import TrainArgs, make_optimizer
from dalle_core.transformer import DalleTransformer

PROMPT = "two red circles above a blue square"
DEFAULT = {"n": 4, "candidates": 16, "temperature": 1.0, "top_k": 64, "top_p": 1.0, "guidance": 3.0}


def step_seconds(model: torch.nn.Module, batch: int, steps: int, bf16: bool) -> float:
    """Median seconds of one training step of the transformer on random text and image tokens."""
    cfg = model.config
    opt = make_optimizer(model, TrainArgs(out="unused", bf16=False))
    model.train()
    times = []
    for k in range(steps + 1):  # the first is a warm-up
        text = torch.randint(1, cfg.text_vocab, (batch, cfg.text_len))
        image = torch.randint(0, cfg.image_vocab, (batch, cfg.image_tokens))
        t = time.perf_counter()
        with autocast("cpu", bf16):
            loss = model.loss(text, image)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="training steps timed per size")
    p.add_argument("--sizes", type=sizes_of, default=sizes_of("4x192,6x256,8x256,8x384"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    bf16 = bf16_supported("cpu")
    recipe = PRESETS["shapes2"]
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            f"{layers}x{width}": Dalle(
                v2_checkpoint(f"{tmp}/{layers}x{width}", transformer_size(layers, width)),
                device="cpu",
            )
            for layers, width in a.sizes
        }
        latency = interleaved_medians(
            {name: lambda m=m: m.generate(PROMPT, seed=0, **DEFAULT) for name, m in models.items()},
            repeat=a.repeat,
            warmup=1,
        )
        rows = []
        for name, model in models.items():
            transformer = DalleTransformer(model.transformer.config)  # fresh, in training mode
            params = sum(p.numel() for p in transformer.parameters())
            step = step_seconds(transformer, recipe.transformer_batch, a.steps, bf16)
            rows.append(
                {
                    "size": name,
                    "parameters_m": round(params / 1e6, 2),
                    "default_request_s": round(latency[name], 3),
                    "train_step_s": round(step, 3),
                    f"hours_for_{recipe.transformer_steps}_steps": round(
                        step * recipe.transformer_steps / 3600, 2
                    ),
                }
            )
            print(rows[-1])
    record(
        f"sizes-{a.threads}-threads",
        rows,
        f"Transformer sizes at the v2 grid (random weights): the default request in process "
        f"(`Dalle.generate`, {DEFAULT['candidates']} candidates, guidance 3, medians of {a.repeat} interleaved "
        f"rounds) and one training step at batch {recipe.transformer_batch} (median of {a.steps}, "
        f"{'bf16' if bf16 else 'fp32'}).",
    )


if __name__ == "__main__":
    main()
