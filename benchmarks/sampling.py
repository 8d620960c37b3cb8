"""Sampling speed of the shipped transformer: KV cache (fp32, bf16) against full recompute, and the arithmetic floor.

Usage: python benchmarks/sampling.py [--checkpoint DIR] [--candidates 1 16 64] [--threads 2]
"""
import argparse

import torch

from dalle_core.checkpoint import load_model
from dalle_core.facade import DEFAULT_CHECKPOINT, Dalle
from dalle_core.sampling import SamplingParams, generate
from dalle_core.transformer import DalleTransformer, TransformerConfig

from common import median_seconds, record


def matmul_gflops(dtype: torch.dtype, n: int = 1024) -> float:
    """Measured dense matmul throughput of this machine in GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = median_seconds(lambda: a @ b, repeat=10, warmup=3)
    return 2 * n**3 / t / 1e9


def sampling_flops(cfg: TransformerConfig, rows: int) -> float:
    """Matmul FLOPs of cached sampling: every stream position passes every layer once, per row of the batch."""
    L, C = cfg.text_len + cfg.image_tokens, cfg.n_embd
    per_token_layer = 2 * (4 * C * C + 2 * 4 * C * C)  # qkv + proj, and the 4x MLP
    attention = 2 * 2 * C * L / 2  # scores and values against on average half the stream
    head = 2 * C * cfg.image_vocab * cfg.image_tokens / L
    return rows * L * (cfg.n_layer * (per_token_layer + attention) + head)


def recompute(model: DalleTransformer, text: torch.Tensor, n: int, params: SamplingParams) -> torch.Tensor:
    """Sampling without a cache: the whole stream is recomputed for every token (the naive way)."""
    cfg = model.config
    g = torch.Generator().manual_seed(params.seed)
    image = torch.zeros(n, cfg.image_tokens, dtype=torch.long)
    text = text.expand(n, -1)
    with torch.inference_mode():
        for j in range(cfg.image_tokens):
            _, logits = model(text, image)
            probs = (logits[:, j].float() / params.temperature).softmax(-1)
            image[:, j] = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return image


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.checkpoint, "transformer", DalleTransformer, TransformerConfig)
    cfg = model.config
    text = Dalle(a.checkpoint, "cpu").tokenizer.encode("a red circle above a blue square")[0]
    peak_bf16, peak_fp32 = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    rows = []
    for n in a.candidates:
        params = SamplingParams(temperature=1.0, top_k=64, guidance=1.0, seed=0)
        runs = {
            "cache fp32": lambda: generate(model, text, n, params),
            "cache bf16": lambda: _bf16(lambda: generate(model, text, n, params)),
            "recompute bf16": lambda: _bf16(lambda: recompute(model, text, n, params)),
        }
        floor = sampling_flops(cfg, n) / (peak_bf16 * 1e9)
        for name, fn in runs.items():
            if name.startswith("recompute") and n > 16:
                continue
            t = median_seconds(fn, repeat=3)
            rows.append({"candidates": n, "sampler": name, "seconds": t, "images_per_s": n / t,
                         "bf16_floor_s": floor, "x_floor": t / floor})
    record("sampling", rows, f"Transformer {cfg.n_layer} layers x {cfg.n_embd}, stream {cfg.text_len}+"
                             f"{cfg.image_tokens} tokens, guidance off. Measured matmul peaks: bf16 "
                             f"{peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s; the floor is the sampling "
                             "FLOPs over the bf16 peak. Medians of 3 runs after a warm-up.")


def _bf16(fn):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


if __name__ == "__main__":
    main()
