"""Sampling speed against the arithmetic floor and against lucidrains' DALLE-pytorch 1.6.6 built at the same size:
at the shipped size by candidates and guidance, then against the grid (the v2 grid is 12 x 12 at 96 px), then the
issue-27 goals, each figure beside its target.

Usage: python benchmarks/sampling.py [--checkpoint DIR] [--candidates 1 16 64] [--threads 2] [--repeat 5]

Every timed run samples the tokens and decodes them with the dVAE. The samplers of one table row group run in
turn, round after round (`interleaved_medians`), and each figure is a median; ratios are within one run. The
floor is the request's matmul FLOPs (`request_flops`, decoding included) over the best matmul throughput measured
in this run (bf16 where the CPU computes it natively, else fp32; re-measured between sections, the best kept).

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
from collections.abc import Callable
from dataclasses import replace

import torch
from common import goal_row, interleaved_medians, matmul_gflops, record
from torch.utils.flop_counter import FlopCounterMode

from dalle_core import DEFAULT_CHECKPOINT
from dalle_core.checkpoint import load_model
from dalle_core.device import bf16_supported
from dalle_core.recipe import PRESETS
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
TOP_K = 64
V2_GRID = 12  # `dalle train --v2`: 96 px at f = 8


def request_flops(
    cfg: TransformerConfig, n: int, guidance: float, decode_per_image: float
) -> float:
    """Matmul FLOPs a request needs: the linear layers and attention of every layer at every stream position of
    every row (n, or 2n with guidance), the shared prefix (caption and image BOS) once per distinct prefix (one, or
    two with guidance), attention against the positions before and at each one, the image head at the N image
    positions, and decoding n images. The floor of any sampler, whatever it recomputes or wastes."""
    copies = 2 if guidance > 1 else 1
    C, P = cfg.n_embd, cfg.text_len + 1
    linear = 2 * 12 * C * C  # qkv (3C^2), projection (C^2), MLP (8C^2) per position and layer
    layer = [
        cfg.n_layer * (linear + 2 * 2 * C * (p + 1)) for p in range(cfg.seq_len)
    ]  # scores and values
    head = 2 * C * cfg.image_vocab * cfg.image_tokens
    return copies * sum(layer[:P]) + copies * n * (sum(layer[P:]) + head) + n * decode_per_image


def decode_flops(vae: DiscreteVAE) -> float:
    """FLOPs of decoding one image's tokens, counted by FlopCounterMode."""
    tokens = torch.zeros(1, vae.config.grid**2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        vae.decode(tokens)
    return counter.get_total_flops()


def counted_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of fn, counted by FlopCounterMode (what our sampler actually computes)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def ours(
    model: DalleTransformer,
    vae: DiscreteVAE,
    text: torch.Tensor,
    n: int,
    guidance: float,
    bf16: bool,
) -> Callable[[], torch.Tensor]:
    """Our request: sample n token grids (KV cache, top-k 64), then decode them."""
    params = SamplingParams(temperature=1.0, top_k=TOP_K, guidance=guidance, seed=0)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.inference_mode():
            return vae.decode(generate(model, text, n, params).flatten(1))

    return run


def recompute(
    model: DalleTransformer, vae: DiscreteVAE, text: torch.Tensor, n: int
) -> Callable[[], torch.Tensor]:
    """Sampling without a cache (the whole stream recomputed for every token, guidance off), then decoding."""
    cfg = model.config

    def run():
        g = torch.Generator().manual_seed(0)
        image = torch.zeros(n, cfg.image_tokens, dtype=torch.long)
        with torch.inference_mode():
            for j in range(cfg.image_tokens):
                _, logits = model(text.expand(n, -1), image)
                top = logits[:, j].float().topk(TOP_K)
                choice = torch.multinomial(top.values.softmax(-1), 1, generator=g)
                image[:, j] = top.indices.gather(1, choice).squeeze(1)
            return vae.decode(image)

    return run


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
    layers = (image_size // cfg.grid).bit_length() - 1
    vae = peer.DiscreteVAE(
        image_size=2 ** (layers + 3), num_tokens=cfg.image_vocab, num_layers=layers
    )
    vae.image_size = (
        image_size  # 1.6.6 asserts a power of two (not 96); its convolutions take any size
    )
    assert vae.image_size // 2**vae.num_layers == cfg.grid
    torch.manual_seed(0)
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


def peer_run(
    theirs: torch.nn.Module, text: torch.Tensor, n: int, guidance: float, cache: bool
) -> Callable[[], torch.Tensor]:
    """DALLE-pytorch's generate_images (tokens and decoding) with top-k 64 and its cond_scale as guidance."""
    keep = 1 - TOP_K / theirs.num_image_tokens
    # a fresh copy of the text each call: its guidance zeroes the text in place
    return lambda: theirs.generate_images(
        text[None].repeat(n, 1), filter_thres=keep, cond_scale=guidance, use_cache=cache
    )


class Peak:
    """The best matmul throughput measured so far in this run, per dtype; bf16 counts only where it is native."""

    def __init__(self, native_bf16: bool):
        self.dtypes = (torch.float32, torch.bfloat16) if native_bf16 else (torch.float32,)
        self.best = {dtype: 0.0 for dtype in self.dtypes}
        self.measure()

    def measure(self) -> None:
        for dtype in self.dtypes:
            self.best[dtype] = max(self.best[dtype], matmul_gflops(dtype))

    @property
    def gflops(self) -> float:
        return max(self.best.values())

    def __str__(self) -> str:
        return (
            ", ".join(f"{str(d).removeprefix('torch.')} {g:.0f}" for d, g in self.best.items())
            + " GFLOP/s"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.checkpoint, "transformer", DalleTransformer, TransformerConfig)
    vae = load_model(a.checkpoint, "vae", DiscreteVAE, VAEConfig)
    cfg = model.config
    text = torch.randint(3, 200, (cfg.text_len,))
    peer, stood = import_peer()
    if peer is None:
        print(
            "dalle_pytorch is not installed: its rows and goals are skipped (see this file's docstring)"
        )
    else:
        print(
            f"dalle_pytorch {peer.__file__}: stand-ins registered for {', '.join(stood) or 'nothing'}"
        )
    native_bf16 = bf16_supported("cpu")
    precisions = (False, True) if native_bf16 else (False,)
    peak = Peak(native_bf16)
    print(
        f"matmul peak {peak}; bf16 {'native' if native_bf16 else 'emulated: its rows are skipped'}"
    )

    # 1. the shipped model, by candidates and guidance
    per_image = decode_flops(vae)
    theirs = build_peer(peer, cfg, vae.config.image_size) if peer else None
    rows = []
    for n in a.candidates:
        for guidance in (1.0, 3.0):
            runs = {
                f"ours, {'bf16' if bf16 else 'fp32'}": ours(model, vae, text, n, guidance, bf16)
                for bf16 in precisions
            }
            if guidance == 1.0:
                runs["ours without a cache (recompute), fp32"] = recompute(model, vae, text, n)
            if theirs is not None:
                runs["DALLE-pytorch, use_cache=True"] = peer_run(theirs, text, n, guidance, True)
                runs["DALLE-pytorch, use_cache=False"] = peer_run(theirs, text, n, guidance, False)
            times = interleaved_medians(runs, a.repeat)
            flops = request_flops(cfg, n, guidance, per_image)
            for name, t in times.items():
                rows.append(
                    {
                        "candidates": n,
                        "guidance": guidance,
                        "sampler": name,
                        "seconds": t,
                        "images_per_s": n / t,
                        "GFLOP": flops / 1e9,
                    }
                )
                print(rows[-1])
    counted = counted_flops(ours(model, vae, text, 16, 3.0, False)) / 1e9
    peak.measure()
    for row in rows:
        row["x_floor"] = row["seconds"] / (row["GFLOP"] / peak.gflops)
        peers = [
            r["seconds"]
            for r in rows
            if r["candidates"] == row["candidates"]
            and r["guidance"] == row["guidance"]
            and r["sampler"].startswith("DALLE")
        ]
        row["peer_best_over_this"] = min(peers, default=float("nan")) / row["seconds"]
    default = (
        next(r["GFLOP"] for r in rows if r["candidates"] == 16 and r["guidance"] == 3.0)
        if 16 in a.candidates
        else float("nan")
    )
    record(
        f"sampling-{a.threads}-threads",
        rows,
        f"Sampling {cfg.text_len} text + {cfg.grid}x{cfg.grid} image tokens with the shipped transformer "
        f"({cfg.n_layer} layers x {cfg.n_embd}, {cfg.n_head} heads), top-k {TOP_K}, dVAE decoding included, one "
        f"prompt; guidance 3 is the app's default (ours: both halves in one batch; DALLE-pytorch: two passes; "
        f"with guidance 1 DALLE-pytorch 1.6.6 ignores use_cache, a bug of that version). DALLE-pytorch is built "
        f"at the same dim, depth, heads, head dim, text length, grid and vocabularies, full attention, its "
        f"defaults otherwise (rotary embeddings, token shift), random weights. GFLOP: the request's matmul "
        f"FLOPs (`request_flops`: the shared prefix once per distinct prefix, attention over the causal prefix, "
        f"the dVAE decoder's {per_image / 1e6:.0f} MFLOP per image counted by FlopCounterMode); FlopCounterMode "
        f"counts {counted:.2f} GFLOP in our fp32 default request against {default:.2f} (our attention runs "
        f"over the cache's room, up to 15 positions past the query). x_floor: seconds over GFLOP / the best "
        f"matmul throughput measured in the run ({peak}). peer_best_over_this: DALLE-pytorch's faster setting "
        f"over this row's time. Samplers of one row group alternated, medians of {a.repeat} rounds after one. "
        f"Stand-ins for DALLE-pytorch's unused imports: {', '.join(stood) or 'none'}.",
    )

    # 2. the grid: random weights at the shipped width and depth, a dVAE of the shipped design at grid * f pixels
    # (the v2 grid with the v2 recipe's text length, the others with the shipped one)
    grid_rows = []
    for grid in (8, V2_GRID, 16):
        text_len = PRESETS["shapes2"].text_len if grid == V2_GRID else cfg.text_len
        gcfg = replace(cfg, grid=grid, text_len=text_len)
        gtext = torch.nn.functional.pad(text, (0, text_len - text.shape[-1]), value=cfg.pad_id)
        torch.manual_seed(0)
        gmodel = DalleTransformer(gcfg).eval()
        gvae = DiscreteVAE(replace(vae.config, image_size=grid * vae.config.f)).eval()
        runs = {
            f"ours, {'bf16' if bf16 else 'fp32'}": ours(gmodel, gvae, gtext, 16, 3.0, bf16)
            for bf16 in precisions
        }
        if theirs is not None and grid <= V2_GRID:
            runs["DALLE-pytorch, use_cache=True"] = peer_run(
                build_peer(peer, gcfg, gvae.config.image_size), gtext, 16, 3.0, True
            )
        times = interleaved_medians(runs, a.repeat)
        flops = request_flops(gcfg, 16, 3.0, decode_flops(gvae))
        for name, t in times.items():
            grid_rows.append(
                {
                    "grid": f"{grid}x{grid}",
                    "pixels": gvae.config.image_size,
                    "text_tokens": text_len,
                    "sampler": name,
                    "seconds": t,
                    "ms_per_image_token": 1000 * t / gcfg.image_tokens,
                    "GFLOP": flops / 1e9,
                }
            )
            print(grid_rows[-1])
    peak.measure()
    for row in grid_rows:
        row["x_floor"] = row["seconds"] / (row["GFLOP"] / peak.gflops)
    record(
        f"sampling_grid-{a.threads}-threads",
        grid_rows,
        f"The default request (16 candidates, guidance 3: 32 rows, top-k {TOP_K}) against the grid: the shipped "
        f"width and depth ({cfg.n_layer} x {cfg.n_embd}) with random weights, and a random dVAE of the shipped "
        f"design at grid x {vae.config.f} pixels; tokens and decoding. {V2_GRID}x{V2_GRID} at "
        f"{V2_GRID * vae.config.f} px is the v2 grid. x_floor as in `sampling` (this run's peak {peak}). "
        f"DALLE-pytorch built at the same size (cache on, cond_scale 3) up to {V2_GRID}x{V2_GRID}. Medians of "
        f"{a.repeat} alternated rounds.",
    )

    # 3. the goals of issue 27 that this script measures
    def best_ours(table: list[dict], **where) -> dict:
        mine = [
            r
            for r in table
            if r["sampler"].startswith("ours,") and all(r[k] == v for k, v in where.items())
        ]
        return min(mine, key=lambda r: r["seconds"])

    def seconds(table: list[dict], sampler: str, **where) -> float:
        return next(
            r["seconds"]
            for r in table
            if r["sampler"] == sampler and all(r[k] == v for k, v in where.items())
        )

    goals = []
    if 16 in a.candidates:
        best = best_ours(rows, candidates=16, guidance=3.0)
        goals.append(
            goal_row(
                f"default request over its floor, {cfg.grid}x{cfg.grid} ({best['sampler']})",
                best["x_floor"],
                "<= 2.5",
                "x",
            )
        )
    v2 = best_ours(grid_rows, grid=f"{V2_GRID}x{V2_GRID}")
    goals.append(
        goal_row(
            f"default request over its floor, {V2_GRID}x{V2_GRID} v2 ({v2['sampler']})",
            v2["x_floor"],
            "<= 2.5",
            "x",
        )
    )
    if theirs is not None and 16 in a.candidates:
        goals.append(
            goal_row(
                "DALLE-pytorch (use_cache=True, cond_scale 3) over ours, default request",
                seconds(rows, "DALLE-pytorch, use_cache=True", candidates=16, guidance=3.0)
                / best_ours(rows, candidates=16, guidance=3.0)["seconds"],
                ">= 5",
                "x",
            )
        )
        goals.append(
            goal_row(
                f"DALLE-pytorch (use_cache=True, cond_scale 3) over ours, {V2_GRID}x{V2_GRID}",
                seconds(grid_rows, "DALLE-pytorch, use_cache=True", grid=f"{V2_GRID}x{V2_GRID}")
                / v2["seconds"],
                ">= 5",
                "x",
            )
        )
    if theirs is not None and 64 in a.candidates:
        goals.append(
            goal_row(
                "DALLE-pytorch (its faster setting) over ours, 64 candidates unguided",
                best_ours(rows, candidates=64, guidance=1.0)["peer_best_over_this"],
                ">= 30",
                "x",
            )
        )
    record(
        f"sampling_goals-{a.threads}-threads",
        goals,
        "Issue 27's sampling goals, from the `sampling` and `sampling_grid` tables of this run and thread count "
        "(ours: the faster precision; the server latency goals are in `latency_goals`).",
    )


if __name__ == "__main__":
    main()
