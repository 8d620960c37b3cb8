"""`dalle`: the command line (world grids, training, evaluation, generation)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path


def cmd_world(a: argparse.Namespace) -> None:
    from .figures import grid
    from .layouts import sample_layout
    from .world import sample
    from .world2 import sample2

    size = a.size or (64 if a.layout == "single" else 96)
    try:
        if a.layout == "single":
            samples = [(s.image, s.caption) for s in (sample(a.seed + i, size) for i in range(a.n))]
        elif a.layout == "stream2":
            samples = [
                (s.image, s.caption) for s in (sample2(a.seed + i, size) for i in range(a.n))
            ]
        else:
            samples = [
                (s.image, f"{s.caption} ({s.note})" if s.note else s.caption)
                for s in (sample_layout(a.layout, a.seed + i, size) for i in range(a.n))
            ]
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    grid([s[0] for s in samples], [s[1] for s in samples], cols=a.cols, scale=a.scale).save(a.out)
    print(f"wrote {a.n} {'scenes' if a.layout == 'single' else a.layout} to {a.out}")


def cmd_eval(a: argparse.Namespace) -> None:
    from .dalle import Dalle
    from .report import ALL_CATEGORIES, compare, evaluate, write_report

    cats = a.categories.split(",") if a.categories else None
    unknown = set(cats or []) - set(ALL_CATEGORIES)
    if unknown:
        raise SystemExit(
            f"unknown categories {sorted(unknown)}; known: {', '.join(ALL_CATEGORIES)}"
        )
    shipped = None
    if a.against:
        try:
            shipped = json.loads(a.against.read_text())
            if shipped["candidates"] != a.candidates:
                raise SystemExit(
                    f"error: {a.against} reranks {shipped['candidates']} candidates; run with "
                    f"--candidates {shipped['candidates']} to compare best-of-N with the same N"
                )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(
                f"error: --against {a.against}: not a `dalle eval` report ({e})"
            ) from e
    _use_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    partial = a.out / "eval.partial.json"  # kept if the evaluation stops; a rerun continues from it
    report = evaluate(
        Dalle(a.checkpoint, a.device),
        a.per_category,
        a.candidates,
        a.seed,
        cats,
        samples_dir=a.out / "samples",
        partial=partial,
    )
    if shipped is not None:
        compare(report, shipped, str(a.against))
    write_report(report, a.out)
    partial.unlink(missing_ok=True)
    print((a.out / "eval.md").read_text())


def cmd_eval_vae(a: argparse.Namespace) -> None:
    from .checkpoint import load_model, write_json
    from .settings import DEFAULT_CHECKPOINT
    from .vae import DiscreteVAE, VAEConfig
    from .vae_report import misses_figure, report_json, report_markdown, vae_report

    _use_threads(a.threads)
    checkpoint = a.checkpoint or DEFAULT_CHECKPOINT
    vae = load_model(checkpoint, "vae", DiscreteVAE, VAEConfig).eval()
    if a.search:
        try:  # VAEConfig checks the range (--search is already >= 1)
            vae.config = replace(vae.config, search=a.search)
        except ValueError:
            raise SystemExit(
                f"error: --search {a.search}: the VAE has {vae.config.codebook} codes to try"
            ) from None
    rows, used = vae_report(vae, a.n)
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(
        a.out / "vae_report.json",
        {"checkpoint": str(checkpoint), "search": vae.config.search, **report_json(rows, used)},
    )
    markdown = report_markdown(rows, used)
    (a.out / "vae_report.md").write_text(markdown)
    print(markdown, end="")
    figure = misses_figure(vae, rows)
    if figure is not None:
        figure.save(a.out / "vae_misses.png")
        print(f"the first misses of each kind, beside their decoding: {a.out / 'vae_misses.png'}")


def cmd_generate(a: argparse.Namespace) -> None:
    from .dalle import Dalle
    from .figures import grid
    from .settings import Settings

    settings = dict(
        n=a.n,
        candidates=max(a.candidates, a.n),
        temperature=a.temperature,
        top_k=a.top_k,
        top_p=a.top_p,
        guidance=a.guidance,
        seed=a.seed,
    )
    try:
        Settings(**settings)  # bad settings are reported before the model loads
        _use_threads(a.threads)
        model = Dalle(a.checkpoint, a.device)
        results = model.generate(a.prompt, **settings)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    for word in model.unknown_words(a.prompt):
        print(f"note: the model never saw the word {word!r} in training")
    grid(
        [r.image for r in results], [f"{r.score:.3f}" for r in results], cols=min(a.n, 8), scale=4
    ).save(a.out)
    print(f"wrote {len(results)} images (best first) to {a.out}")


def cmd_curves(a: argparse.Namespace) -> None:
    import json

    from .figures import line_chart

    series = {}
    common = os.path.commonpath([run.resolve() for run in a.run])
    for run in a.run:
        name = run.resolve().relative_to(common).as_posix()  # the part that tells the runs apart
        log = run / "log.jsonl"
        if not log.exists():
            raise SystemExit(f"no training log at {log}")
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        rows = [
            {**r, **r.get("val", {})} for r in rows
        ]  # training and validation metrics side by side
        for key in a.keys.split(","):
            points = [(r["samples"], r[key]) for r in rows if key in r]
            if not points:
                raise SystemExit(f"{log} has no {key!r}")
            series[f"{name}: {key}" if len(a.run) > 1 else key] = points
    line_chart(series, "training samples seen", a.keys.replace(",", ", ")).save(a.out)
    print(f"wrote {a.out}")


def int_at_least(low: int, name: str) -> Callable[[str], int]:
    """An argparse type named `name`: an integer of `low` or more."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {text}")
        return value

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


non_negative_int = int_at_least(0, "non_negative_int")
positive_int = int_at_least(1, "positive_int")


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _use_threads(n: int) -> None:
    """Run torch on n CPU threads (0: leave torch's choice)."""
    if n:
        import torch

        torch.set_num_threads(n)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint directory (default: the shipped assets/checkpoint)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="CPU threads (default: torch's choice; 1 is faster while other work holds a core)",
    )


def cmd_train(a: argparse.Namespace) -> None:
    import torch

    from .recipe import PRESETS, Run, run_stage, train_all
    from .training import init_distributed

    if a.tiny and a.paper:
        raise SystemExit("error: --tiny and --paper are two sizes: choose one")
    edition = "2" if a.v2 else ""
    recipe = PRESETS["paper" if a.paper else f"tiny{edition}" if a.tiny else f"shapes{edition}"]
    data = a.data or ("shapes2" if a.v2 else "shapes")
    for name in ("vae_steps", "decoder_steps", "transformer_steps", "clip_steps"):
        if getattr(a, name, None):
            recipe = replace(recipe, **{name: getattr(a, name)})
    if a.lr:
        recipe = replace(recipe, vae_lr=a.lr, decoder_lr=a.lr, transformer_lr=a.lr, clip_lr=a.lr)
    if a.transformer_layers or a.transformer_width:
        layers = a.transformer_layers or recipe.transformer["n_layer"]
        width = a.transformer_width or recipe.transformer["n_embd"]
        if width % 32:
            raise SystemExit(f"error: --transformer-width must be a multiple of 32, got {width}")
        size = {"n_layer": layers, "n_head": width // 32, "n_embd": width}
        recipe = replace(
            recipe,
            transformer={**recipe.transformer, **size, "attn_masks": ("causal",) * layers},
        )
    init_distributed(a.device)
    run = Run(
        Path(a.out),
        recipe,
        data,
        a.device,
        a.resume,
        a.seed,
        a.threads,
        a.workers,
        judge=data in ("shapes", "shapes2"),
        accum=a.accum,
        init=Path(a.init) if a.init else None,
    )
    if a.stage == "all":
        train_all(run)
    else:
        run.out.mkdir(parents=True, exist_ok=True)
        run_stage(a.stage, run)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Register `dalle train ...` and its shortcuts `train-vae`, `train-transformer`, `train-clip`."""
    from .recipe import STAGES

    def add(name: str, stage: str | None, help: str) -> None:
        t = sub.add_parser(name, help=help)
        if stage is None:
            t.add_argument(
                "stage",
                choices=("all", *STAGES),
                help="which stage to run (all: every unfinished one)",
            )
        else:
            t.set_defaults(stage=stage)
        t.add_argument(
            "--out",
            default="checkpoints/shapes",
            help="checkpoint directory (default checkpoints/shapes)",
        )
        t.add_argument(
            "--data",
            help="'shapes' (the default), 'shapes2' (the default with --v2) or a folder of images "
            "with .txt captions",
        )
        t.add_argument(
            "--tiny",
            action="store_true",
            help="a tiny recipe that finishes in minutes (for CI; with --v2, on the second edition)",
        )
        size = t.add_mutually_exclusive_group()
        size.add_argument(
            "--paper",
            action="store_true",
            help="the paper's layout (256 px, 32x32 grid, 8192 codes, 256 text tokens) for GPUs",
        )
        size.add_argument(
            "--v2",
            action="store_true",
            help="the second edition: the shapes2 world (pairs, analogies, matrices) at 96 px, "
            "a 12x12 grid, 40 text tokens",
        )
        t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
        t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        t.add_argument("--seed", type=int, default=0)
        t.add_argument(
            "--threads",
            type=non_negative_int,
            default=0,
            help="CPU threads (default: torch's choice)",
        )
        t.add_argument(
            "--workers", type=non_negative_int, default=1, help="data loader processes (default 1)"
        )
        t.add_argument(
            "--accum",
            type=positive_int,
            default=1,
            help="micro-batches per optimizer step (gradient accumulation; default 1)",
        )
        t.add_argument(
            "--init",
            metavar="DIR",
            help="start from the weights and tokenizer in this checkpoint directory (fine-tuning), "
            "e.g. assets/checkpoint",
        )
        t.add_argument(
            "--lr",
            type=positive_float,
            help="override the peak learning rate of every stage run (e.g. lower for fine-tuning "
            "with --init)",
        )
        t.add_argument(
            "--vae-steps",
            dest="vae_steps",
            type=positive_int,
            help="override the VAE's training steps",
        )
        t.add_argument(
            "--decoder-steps",
            dest="decoder_steps",
            type=positive_int,
            help="override the decoder fine-tuning steps",
        )
        t.add_argument(
            "--transformer-steps",
            dest="transformer_steps",
            type=positive_int,
            help="override the transformer's training steps",
        )
        t.add_argument(
            "--transformer-layers",
            dest="transformer_layers",
            type=positive_int,
            help="override the transformer's depth (for learning curves at several sizes)",
        )
        t.add_argument(
            "--transformer-width",
            dest="transformer_width",
            type=int_at_least(32, "width"),
            help="override the transformer's width (a multiple of 32: heads of 32 channels)",
        )
        t.add_argument(
            "--clip-steps",
            dest="clip_steps",
            type=positive_int,
            help="override the scorer's training steps",
        )
        t.set_defaults(func=cmd_train)

    add(
        "train", None, "train the whole recipe (train all) or one stage into a checkpoint directory"
    )
    add("train-vae", "vae", "train the discrete VAE (needs nothing before it)")
    add(
        "train-transformer",
        "transformer",
        "train the transformer (needs tokenizer, vae and tokens)",
    )
    add("train-clip", "clip", "train the contrastive scorer (needs the tokenizer)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dalle` command."""
    from .settings import DEFAULTS
    from .world import MIN_SIZE

    p = argparse.ArgumentParser(
        prog="dalle", description="A laptop-sized DALL·E on the shapes world."
    )
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="write a grid of random world scenes with their captions")
    w.add_argument("--n", type=positive_int, default=16, help="number of scenes (default 16)")
    w.add_argument("--seed", type=int, default=0, help="first scene seed (default 0)")
    w.add_argument(
        "--layout",
        default="single",
        choices=("single", "pair", "analogy", "matrix", "stream2"),
        help="single: v1 scenes (default); pair, analogy, matrix: the second edition's layouts, their "
        "captions in full; stream2: the second edition's training stream (paraphrased captions)",
    )
    w.add_argument(
        "--size",
        type=int_at_least(MIN_SIZE, "world_size"),
        help="image side in pixels (default 64 for single, else 96)",
    )
    w.add_argument("--cols", type=positive_int, default=4, help="grid columns (default 4)")
    w.add_argument(
        "--scale", type=positive_int, default=3, help="nearest-neighbour enlargement (default 3)"
    )
    w.add_argument(
        "--out", type=Path, default=Path("world.png"), help="output PNG (default world.png)"
    )
    w.set_defaults(func=cmd_world)

    g = sub.add_parser("generate", help="generate images for a prompt, best first, into a PNG grid")
    g.add_argument("prompt")
    g.add_argument(
        "--n", type=int, default=DEFAULTS.n, help=f"images to keep (default {DEFAULTS.n})"
    )
    g.add_argument(
        "--candidates",
        type=int,
        default=DEFAULTS.candidates,
        help=f"images sampled and reranked (default {DEFAULTS.candidates})",
    )
    g.add_argument("--temperature", type=float, default=DEFAULTS.temperature)
    g.add_argument(
        "--top-k",
        dest="top_k",
        type=int,
        default=DEFAULTS.top_k,
        help=f"0 turns it off (default {DEFAULTS.top_k})",
    )
    g.add_argument("--top-p", dest="top_p", type=float, default=DEFAULTS.top_p)
    g.add_argument(
        "--guidance",
        type=float,
        default=DEFAULTS.guidance,
        help=f"classifier-free guidance scale >= 1 (default {DEFAULTS.guidance:g})",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, default=Path("generated.png"))
    _model_options(g)
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser(
        "eval", help="GenEval-style evaluation on the shapes world (JSON, markdown, PNG plot)"
    )
    e.add_argument(
        "--per-category",
        dest="per_category",
        type=positive_int,
        default=40,
        help="prompts per category (default 40)",
    )
    e.add_argument(
        "--candidates",
        type=positive_int,
        default=DEFAULTS.candidates,
        help=f"N of the reranked best-of-N (default {DEFAULTS.candidates})",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--categories", help="comma-separated subset (default: all)")
    e.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default eval/)")
    e.add_argument(
        "--against",
        type=Path,
        help="the shipped model's eval.json (assets/model_card/eval.json): add whether this model beats it "
        "in every category and meets the second edition's bars, i.e. whether it ships",
    )
    _model_options(e)
    e.set_defaults(func=cmd_eval)

    v = sub.add_parser(
        "eval-vae",
        help="the dVAE's faithfulness: held-out scenes and layout panels whose reconstruction "
        "parses like the original (JSON, markdown, and a picture of the misses)",
    )
    v.add_argument(
        "--n", type=positive_int, default=1000, help="held-out images per kind (default 1000)"
    )
    v.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default eval/)")
    v.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint directory with vae.json (default: the shipped assets/checkpoint)",
    )
    v.add_argument(
        "--search",
        type=positive_int,
        help="codes the encoder tries per cell (1: its argmax; default: the checkpoint's vae.json)",
    )
    v.add_argument(
        "--threads", type=non_negative_int, default=0, help="CPU threads (default: torch's choice)"
    )
    v.set_defaults(func=cmd_eval_vae)

    c = sub.add_parser(
        "curves",
        help="plot metrics of training runs' log.jsonl against samples seen (several runs: one chart)",
    )
    c.add_argument(
        "run",
        type=Path,
        nargs="+",
        help="run directories (for example checkpoints/shapes/runs/transformer)",
    )
    c.add_argument("--keys", default="loss", help="comma-separated metrics (default loss)")
    c.add_argument(
        "--out", type=Path, default=Path("curves.png"), help="output PNG (default curves.png)"
    )
    c.set_defaults(func=cmd_curves)

    add_train_commands(sub)

    a = p.parse_args(argv)
    from .checkpoint import CheckpointError
    from .recipe import StageFailed

    try:
        a.func(a)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CheckpointError, StageFailed) as e:  # the message names the file and what to do
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
