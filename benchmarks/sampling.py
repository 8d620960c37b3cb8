"""Sampling speed at the shipped size: ours (KV cache, full recompute) against lucidrains' DALLE-pytorch 1.6.6
built at the same size, and against the arithmetic floor; then how the cost grows with candidates and grid.

Usage: python benchmarks/sampling.py [--checkpoint DIR] [--candidates 1 16 64] [--threads 2] [--repeat 3]

The peer is installed for this benchmark only:
    pip install --no-deps dalle-pytorch==1.6.6 einops rotary-embedding-torch axial-positional-embedding
Its package imports modules for features we do not use (taming's VQGAN, omegaconf, pkg_resources, ftfy,
youtokentome); those that are not installed are registered as empty stand-ins before the import, and the
output says which.
"""

import argparse
import importlib.util
import sys
import types

import torch
from common import median_seconds, record
from torch.utils.flop_counter import FlopCounterMode

from dalle_core import DEFAULT_CHECKPOINT
from dalle_core.checkpoint import load_model
from dalle_core.device import bf16_supported
from dalle_core.sampling import SamplingParams, generate
from dalle_core.transformer import DalleTransformer, TransformerConfig
from dalle_core.vae import DiscreteVAE, VAEConfig

PEER_EXTRAS = (
    "taming",
    "taming.models",
    "taming.models.vqgan",
    "omegaconf",
    "pkg_resources",
    "ftfy",
    "youtokentome",
)


def matmul_gflops(dtype: torch.dtype, n: int = 1024) -> float:
    """Measured dense matmul throughput of this machine in GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = median_seconds(lambda: a @ b, repeat=10, warmup=3)
    return 2 * n**3 / t / 1e9


def sampling_flops(cfg: TransformerConfig, rows: int) -> float:
    """Matmul FLOPs of cached sampling: every stream position passes every layer once, per row of the batch
    (a guided batch has twice the rows)."""
    L, C = cfg.seq_len, cfg.n_embd
    per_token_layer = 2 * (4 * C * C + 2 * 4 * C * C)  # qkv + proj, and the 4x MLP
    attention = 2 * 2 * C * L / 2  # scores and values against on average half the stream
    head = 2 * C * cfg.image_vocab * cfg.image_tokens / L
    return rows * L * (cfg.n_layer * (per_token_layer + attention) + head)


def decode_flops(vae: DiscreteVAE) -> float:
    """FLOPs of decoding one image's tokens, counted by FlopCounterMode."""
    tokens = torch.zeros(1, vae.config.grid**2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        vae.decode(tokens)
    return counter.get_total_flops()


def recompute(
    model: DalleTransformer, text: torch.Tensor, n: int, params: SamplingParams
) -> torch.Tensor:
    """Sampling without a cache: the whole stream is recomputed for every token (guidance off)."""
    cfg = model.config
    g = torch.Generator().manual_seed(params.seed)
    image = torch.zeros(n, cfg.image_tokens, dtype=torch.long)
    text = text.expand(n, -1)
    with torch.inference_mode():
        for j in range(cfg.image_tokens):
            _, logits = model(text, image)
            top = logits[:, j].float().topk(params.top_k)
            choice = torch.multinomial(
                (top.values / params.temperature).softmax(-1), 1, generator=g
            )
            image[:, j] = top.indices.gather(1, choice).squeeze(1)
    return image


def import_peer() -> tuple[types.ModuleType | None, list[str]]:
    """dalle_pytorch with stand-ins for its unused imports, or None when it is not installed."""
    if importlib.util.find_spec("dalle_pytorch") is None:
        return None, []

    class StandIn(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

    stood = []
    for name in PEER_EXTRAS:
        try:
            missing = importlib.util.find_spec(name) is None
        except ModuleNotFoundError:
            missing = True
        if missing:
            sys.modules[name] = StandIn(name)
            stood.append(name)
    import dalle_pytorch

    return dalle_pytorch, stood


def build_peer(peer: types.ModuleType, cfg: TransformerConfig, image_size: int) -> torch.nn.Module:
    """DALLE-pytorch's DALLE at our size: dim, depth, heads, head dim, text length, grid and vocabularies."""
    vae = peer.DiscreteVAE(
        image_size=image_size,
        num_tokens=cfg.image_vocab,
        num_layers=(image_size // cfg.grid).bit_length() - 1,
    )
    assert vae.image_size // 2**vae.num_layers == cfg.grid
    return peer.DALLE(
        dim=cfg.n_embd,
        vae=vae,
        num_text_tokens=cfg.text_vocab,
        text_seq_len=cfg.text_len,
        depth=cfg.n_layer,
        heads=cfg.n_head,
        dim_head=cfg.n_embd // cfg.n_head,
        attn_types=("full",),
    ).eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.checkpoint, "transformer", DalleTransformer, TransformerConfig)
    vae = load_model(a.checkpoint, "vae", DiscreteVAE, VAEConfig)
    cfg = model.config
    per_image = decode_flops(vae)
    text = torch.randint(3, 200, (cfg.text_len,))
    peer, stood = import_peer()
    if peer is None:
        print("dalle_pytorch is not installed: its rows are skipped (see this file's docstring)")
    else:
        print(
            f"dalle_pytorch {peer.__file__}: stand-ins registered for {', '.join(stood) or 'nothing'}"
        )
        torch.manual_seed(0)
        theirs = build_peer(peer, cfg, vae.config.image_size)
    native_bf16 = bf16_supported("cpu")
    peak_bf16, peak_fp32 = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    peak = max(peak_bf16, peak_fp32)
    if not native_bf16:
        print(
            f"no native bf16 on this CPU (bf16 matmul {peak_bf16:.1f} GFLOP/s against fp32 {peak_fp32:.0f}): "
            "bf16 rows skipped, the floor uses the fp32 peak"
        )

    def ours(n: int, guidance: float, bf16: bool = False):
        params = SamplingParams(temperature=1.0, top_k=64, guidance=guidance, seed=0)

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.inference_mode():
                return vae.decode(generate(model, text, n, params))

        return run

    def peer_run(n: int, guidance: float, cache: bool):
        # a fresh copy each call: its guidance zeroes the text in place
        return lambda: theirs.generate_images(
            text[None].repeat(n, 1),
            filter_thres=1 - 64 / cfg.image_vocab,
            cond_scale=guidance,
            use_cache=cache,
        )

    rows = []
    for n in a.candidates:
        for guidance in (1.0, 3.0):
            floor = (sampling_flops(cfg, n * (2 if guidance > 1 else 1)) + n * per_image) / (
                peak * 1e9
            )
            runs = {"ours, KV cache, fp32": ours(n, guidance)}
            if native_bf16:
                runs["ours, KV cache, bf16"] = ours(n, guidance, bf16=True)
            if guidance == 1.0:
                runs["ours, recompute, fp32"] = lambda n=n: recompute(
                    model, text, n, SamplingParams(top_k=64)
                )
            if peer is not None:
                runs["DALLE-pytorch, use_cache=True"] = peer_run(n, guidance, True)
                runs["DALLE-pytorch, use_cache=False"] = peer_run(n, guidance, False)
            times = {name: median_seconds(fn, repeat=a.repeat) for name, fn in runs.items()}
            best_peer = min(
                (t for k, t in times.items() if k.startswith("DALLE")), default=float("nan")
            )
            for name, t in times.items():
                rows.append(
                    {
                        "candidates": n,
                        "guidance": guidance,
                        "sampler": name,
                        "seconds": t,
                        "images_per_s": n / t,
                        "x_floor": t / floor,
                        "peer_best_over_this": best_peer / t,
                    }
                )
                print(rows[-1])
    record(
        "sampling",
        rows,
        f"Sampling {cfg.text_len} text + {cfg.grid}x{cfg.grid} image tokens with the shipped transformer "
        f"({cfg.n_layer} layers x {cfg.n_embd}, {cfg.n_head} heads), top-k 64, VAE decoding included, one "
        f"prompt; guidance 3 is the app's default (ours: both halves in one batch; DALLE-pytorch: two passes; "
        f"with guidance 1 DALLE-pytorch 1.6.6 ignores use_cache, a bug of that version). DALLE-pytorch is built "
        f"at the same dim, depth, heads, head dim, text length, grid and vocabularies, full attention, its "
        f"defaults otherwise (rotary embeddings, token shift), random weights. x_floor: time over the FLOPs "
        f"of the transformer's matmuls and of the VAE decoder ({per_image / 1e6:.0f} MFLOP per image, counted by "
        f"FlopCounterMode) divided by the best measured matmul peak (bf16 {peak_bf16:.1f}, "
        f"fp32 {peak_fp32:.0f} GFLOP/s). "
        f"peer_best_over_this: DALLE-pytorch's faster setting over this row's time. "
        f"Stand-ins for DALLE-pytorch's unused imports: {', '.join(stood) or 'none'}. Medians of {a.repeat}.",
    )
    scaling(cfg, a.repeat, native_bf16)


def scaling(shipped: TransformerConfig, repeat: int, native_bf16: bool) -> None:
    """Time of 16 guided candidates against the grid side, at the shipped width and depth (random weights)."""
    rows = []
    for grid in (4, 8, 16):
        cfg = TransformerConfig(**{**shipped.__dict__, "grid": grid})
        model = DalleTransformer(cfg).eval()
        text = torch.randint(3, 200, (cfg.text_len,))
        params = SamplingParams(top_k=64, guidance=3.0, seed=0)
        for bf16 in (False, True) if native_bf16 else (False,):

            def run(model=model, text=text, params=params, bf16=bf16):
                with (
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                    torch.inference_mode(),
                ):
                    return generate(model, text, 16, params)

            t = median_seconds(run, repeat=repeat)
            rows.append(
                {
                    "grid": f"{grid}x{grid}",
                    "stream_tokens": cfg.seq_len,
                    "precision": "bf16" if bf16 else "fp32",
                    "seconds": t,
                    "ms_per_image_token": 1000 * t / cfg.image_tokens,
                    "images_per_s": 16 / t,
                }
            )
            print(rows[-1])
    record(
        "sampling_grid",
        rows,
        "16 candidates with guidance 3 (32 rows), KV cache, the shipped width and "
        f"depth ({shipped.n_layer} x {shipped.n_embd}) with random weights, grid varied; "
        f"tokens only (no VAE); bf16 rows where the CPU computes bf16 natively. "
        f"Medians of {repeat}.",
    )


if __name__ == "__main__":
    main()
