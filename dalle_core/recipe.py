"""The whole recipe, stage by stage, into one checkpoint directory:

    tokenizer -> vae -> decoder -> tokens (the VAE's codes of the training pairs) -> transformer -> clip

(`decoder` fine-tunes the VAE's decoder alone on its encoder's argmax codes; the tokens come after it,
since an encoder that searches its codes (`VAEConfig.search`) reads the decoder.)

`dalle train all` runs every stage that is not finished yet; `dalle train <stage>` runs one. On a
CPU with two or more threads, `train all` trains the scorer (which needs only the tokenizer) in a
second process on one thread beside the VAE, decoder and token stages, and waits for it before the
transformer, which gets every thread.
A finished stage leaves its exported files in the directory; an interrupted one leaves a
resumable run under `runs/<stage>/` that `--resume` continues.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    CheckpointError,
    load_model,
    matches_manifest,
    read_json,
    sha256,
    write_bytes,
    write_json,
    write_manifest,
)
from .data import open_source
from .device import resolve_device
from .text import TextTokenizer
from .train_transformer import (
    TransformerRecipe,
    TransformerTask,
    precompute_tokens,
    token_cache_is_current,
    token_cache_key,
)
from .train_vae import VAERecipe, VAETask
from .training import TrainArgs, barrier, rank_and_world, train, trained_seconds
from .transformer import (
    DalleTransformer,
    TransformerConfig,
    load_transformer,
    paper_masks,
)
from .vae import DiscreteVAE, VAEConfig

STAGES = ("tokenizer", "vae", "decoder", "tokens", "transformer", "clip")


@dataclass
class Recipe:
    """Sizes and schedules of every stage."""

    image_size: int = 64
    text_len: int = 26
    text_vocab: int = 512
    captions: int = 50_000
    # cosine logits and a temperature floor of 0.5: measured here against linear logits and 1/16 (model card)
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(code_dim=32))
    vae_recipe: VAERecipe = field(default_factory=lambda: VAERecipe(tau_end=0.5))
    vae_steps: int = 3500
    vae_batch: int = 64
    vae_lr: float = 2e-3
    decoder_steps: int = 300
    decoder_lr: float = 5e-4
    token_pairs: int = 200_000
    transformer: dict = field(
        default_factory=lambda: {
            "n_layer": 4,
            "n_head": 6,
            "n_embd": 192,
            "attn_masks": ("causal",) * 4,
        }
    )
    transformer_recipe: TransformerRecipe = field(default_factory=TransformerRecipe)
    transformer_steps: int = 6000
    transformer_batch: int = 64
    transformer_lr: float = 1e-3
    clip: dict = field(default_factory=dict)
    clip_steps: int = 4500
    clip_batch: int = 64
    clip_lr: float = 1e-3


TINY = Recipe(
    captions=2000,
    vae=VAEConfig(widths=(8, 8, 16, 16), codebook=64),
    vae_recipe=VAERecipe(val_images=32, val_report=4),
    vae_steps=30,
    vae_batch=16,
    decoder_steps=10,
    token_pairs=512,
    transformer={"n_layer": 2, "n_head": 2, "n_embd": 32, "attn_masks": ("causal", "conv")},
    transformer_recipe=TransformerRecipe(val_samples=8),
    transformer_steps=30,
    transformer_batch=16,
    clip_steps=30,
    clip_batch=16,
)

# The paper's layout (256 px images, a 32 x 32 grid of 8192 codes, 256 text tokens of a 16384 BPE
# vocabulary, row/column/conv masks) at a size for a few GPUs, for a folder of your own data
# (`dalle train all --paper --data DIR --device cuda`; see docs/scaling.md). Batches are per process.
PAPER = Recipe(
    image_size=256,
    text_len=256,
    text_vocab=16384,
    captions=1_000_000,
    vae=VAEConfig(f=8, codebook=8192, widths=(128, 256, 256, 512), n_res=2),
    vae_recipe=VAERecipe(val_images=256),
    vae_steps=100_000,
    vae_batch=32,
    vae_lr=1e-3,
    decoder_steps=10_000,
    token_pairs=1_000_000,
    transformer={"n_layer": 24, "n_head": 16, "n_embd": 1024, "attn_masks": paper_masks(24)},
    transformer_steps=200_000,
    transformer_batch=8,
    transformer_lr=3e-4,
    clip={
        "image_widths": (64, 128, 256, 256, 512, 512),
        "text_width": 512,
        "text_layers": 6,
        "text_heads": 8,
        "embed_dim": 512,
    },
    clip_steps=50_000,
    clip_batch=128,
    clip_lr=5e-4,
)
# The second edition (`dalle train all --v2`): the shapes2 stream at 96 px, a 12 x 12 grid that every
# layout's panels fall on, and text long enough for its paraphrases (the longest of 20,000 captions is
# 31 words and marks). The VAE keeps v1's measured settings over a longer schedule (at 64 px only long
# training took f = 8 past 95% faithful; a 1500-step schedule at 96 px ends blobby, see EXPERIMENTS.md);
# the transformer's size is v1's until learning curves choose another (the model issue); its image tokens run
# in panel order, so that every second-edition completion comes after what it depends on (`token_order`).
# Its encoder searches each cell's 4 most likely codes for the closest decoding (`DiscreteVAE.search`): the
# argmax alone missed the 99% bar on analogy panels (EXPERIMENTS.md).
SHAPES2 = Recipe(
    image_size=96,
    text_len=40,
    vae=VAEConfig(code_dim=32, search=4),
    vae_steps=16_000,
    decoder_steps=1000,
    transformer={**Recipe().transformer, "order": "panels"},
)
# the tiny recipe on the second edition (`dalle train all --tiny --v2`): its sizes, v2's image, text, search and order
TINY2 = replace(
    TINY,
    image_size=SHAPES2.image_size,
    text_len=SHAPES2.text_len,
    vae=replace(TINY.vae, search=SHAPES2.vae.search),
    transformer={**TINY.transformer, "order": "panels"},
)
PRESETS = {
    "shapes": Recipe(),
    "shapes2": SHAPES2,
    "tiny": TINY,
    "tiny2": TINY2,
    "paper": PAPER,
}


@dataclass
class Run:
    """Where and how a recipe runs."""

    out: Path
    recipe: Recipe
    data: str = "shapes"
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    threads: int = 0
    workers: int = 1
    judge: bool = True  # world evaluator metrics during validation (shapes worlds only)
    accum: int = 1  # micro-batches per optimizer step
    init: Path | None = (
        None  # a checkpoint directory whose weights (and tokenizer) the stages start from
    )

    def args(self, stage: str, steps: int, batch: int, lr: float, **kw) -> TrainArgs:
        every = max(steps // 6, 1)
        return TrainArgs(
            out=str(self.out / "runs" / stage),
            steps=steps,
            batch_size=batch,
            accum=self.accum,
            lr=lr,
            warmup=min(200, max(steps // 10, 1)),
            seed=self.seed,
            device=self.device,
            resume=self.resume,
            val_every=every,
            ckpt_every=max(every // 2, 1),
            log_every=max(1, min(25, steps // 10)),
            threads=self.threads,
            workers=self.workers,
            **kw,
        )


def done(run: Run, stage: str) -> bool:
    """Whether a stage's exported files are in the checkpoint directory (for the token cache: made from
    the VAE, tokenizer and data there now)."""
    out = run.out
    if stage == "tokens":
        return (
            done(run, "tokenizer")
            and done(run, "vae")
            and token_cache_is_current(out / "runs" / "tokens.safetensors", _tokens_key(run))
        )
    if stage == "decoder":  # its VAE is the exported one (the vae stage exports another)
        own = out / "runs" / "decoder" / "vae.safetensors"
        return (
            own.exists()
            and matches_manifest(out / "vae.safetensors")
            and sha256(own) == sha256(out / "vae.safetensors")
        )
    if stage == "transformer":  # trained on the tokens of the VAE and tokenizer there now
        trained_on = out / "runs" / "transformer" / "tokens.json"
        return matches_manifest(out / "transformer.safetensors") and (
            not trained_on.exists() or read_json(trained_on) == _tokens_key(run)
        )
    names = {"tokenizer": "tokenizer.json", "vae": "vae.safetensors", "clip": "clip.safetensors"}
    return matches_manifest(
        out / names[stage]
    )  # a file copied in but not yet in the manifest is not done


def _trained_on_another_input(run: Run, stage: str) -> bool:
    """Whether a stage finished on a VAE (decoder) or tokens (transformer) that have changed since: continuing
    its run would export the old result."""
    if stage == "transformer":
        trained_on = run.out / "runs" / "transformer" / "tokens.json"
        return trained_on.exists() and read_json(trained_on) != _tokens_key(run)
    if stage == "decoder":
        return (run.out / "runs" / "decoder" / "vae.safetensors").exists() and not done(run, stage)
    return False


def _set_aside(run_dir: Path) -> None:
    """Move a stale run to `<stage>.before` (replacing an older one), so that the stage trains again from scratch."""
    before = run_dir.with_name(f"{run_dir.name}.before")
    if before.exists():
        shutil.rmtree(before)
    run_dir.replace(before)
    print(
        f"{run_dir.name}: its input changed since it trained; training it again (the old run: {before})"
    )


def _tokens_key(run: Run, vae: DiscreteVAE | None = None) -> dict:
    r = run.recipe
    vae = vae or load_model(run.out, "vae", DiscreteVAE, VAEConfig)
    return token_cache_key(
        open_source(run.data, r.image_size),
        vae,
        TextTokenizer.load(run.out),
        r.token_pairs,
        run.seed,
        _token_val(r),
    )


def _token_val(r: Recipe) -> int:
    return min(1024, max(r.token_pairs // 8, 8))


def run_stage(stage: str, run: Run, record: bool = True) -> float:
    """Run one stage (its inputs must be finished already) and return its seconds (with, for a resumed training
    stage, the training its checkpoint keeps from earlier sessions). If `record`, its time is
    added to `runs/times.json` and the directory's manifest is written again (a stage training beside
    another leaves both to its parent). Under torchrun every process trains; the stages that do not
    train (tokenizer, tokens) and the copying of results run on rank 0 alone."""
    r, out, device = run.recipe, run.out, resolve_device(run.device)
    lead = rank_and_world()[0] == 0
    source = open_source(run.data, r.image_size)
    torch.manual_seed(run.seed)  # the same --seed gives the same initial weights
    if lead and _trained_on_another_input(run, stage):
        _set_aside(out / "runs" / stage)
    barrier()
    t0 = time.time() - trained_seconds(
        out / "runs" / stage
    )  # a resumed stage counts its earlier sessions
    exported = None  # (run, model name) of a training stage, copied into `out` when it finishes
    if stage in ("tokenizer", "tokens") and not lead:
        pass  # rank 0 makes it; the barrier below waits for it
    elif stage == "tokenizer" and run.init:
        # the weights to start from read its ids; the words of the new captions become known words
        TextTokenizer.load(run.init).with_words(source.captions(r.captions)).save(out)
        print(f"tokenizer: copied from {run.init} -> {out / 'tokenizer.json'}")
    elif stage == "tokenizer":
        tok = TextTokenizer.train(source.captions(r.captions), r.text_len, r.text_vocab)
        tok.save(out)
        print(
            f"tokenizer: {tok.vocab_size} tokens, {len(tok.words)} words -> {out / 'tokenizer.json'}"
        )
    elif stage == "vae":
        args = run.args("vae", r.vae_steps, r.vae_batch, r.vae_lr)
        model = (
            _same_size(
                load_model(run.init, "vae", DiscreteVAE, VAEConfig, device),
                r.image_size,
                run.init / "vae.json",
            )
            if run.init
            else DiscreteVAE(replace(r.vae, image_size=r.image_size)).to(device)
        )
        train(VAETask(model, source, args, r.vae_recipe, faithful=run.judge), args)
        model.cpu()
        exported = ("vae", "vae")
    elif stage == "decoder":
        args = run.args("decoder", r.decoder_steps, r.vae_batch, r.decoder_lr)
        model = load_model(out, "vae", DiscreteVAE, VAEConfig, device)
        train(
            VAETask(
                model,
                source,
                args,
                replace(r.vae_recipe, decoder_only_from=0.0),
                faithful=run.judge,
            ),
            args,
        )
        model.cpu()
        exported = ("decoder", "vae")
    elif stage == "tokens":
        vae = load_model(out, "vae", DiscreteVAE, VAEConfig, device)
        precompute_tokens(
            out / "runs" / "tokens.safetensors",
            source,
            vae,
            TextTokenizer.load(out),
            r.token_pairs,
            seed=run.seed,
            val=_token_val(r),
            # its time is recorded before the key marks it done: a run killed in between is not timed again
            before_key=(lambda: _record(out, stage, time.time() - t0)) if lead and record else None,
        )
    elif stage == "transformer":
        tok = TextTokenizer.load(out)
        vae = load_model(out, "vae", DiscreteVAE, VAEConfig, device)
        config = TransformerConfig(
            text_vocab=tok.vocab_size,
            text_len=tok.length,
            pad_id=tok.pad_id,
            image_vocab=vae.config.codebook,
            grid=vae.config.grid,
            **r.transformer,
        )
        args = run.args(
            "transformer",
            r.transformer_steps,
            r.transformer_batch,
            r.transformer_lr,
            weight_decay=0.01,
        )
        model = (
            load_transformer(run.init, tok, vae.config, device)
            if run.init
            else DalleTransformer(config).to(device)
        )
        task = TransformerTask(
            model,
            out / "runs" / "tokens.safetensors",
            vae,
            tok,
            args,
            r.transformer_recipe,
            judged=source.judged_captions(r.transformer_recipe.val_samples) if run.judge else None,
        )
        train(task, args)
        if lead:  # the tokens it learned, by which a new VAE or tokenizer makes it stale (`done`)
            write_json(out / "runs" / "transformer" / "tokens.json", _tokens_key(run, vae))
        exported = ("transformer", "transformer")
    elif stage == "clip":
        from .clip import load_clip, make_clip
        from .train_clip import ClipTask

        tok = TextTokenizer.load(out)
        args = run.args("clip", r.clip_steps, r.clip_batch, r.clip_lr)
        model = (
            _same_size(load_clip(run.init, tok, device), r.image_size, run.init / "clip.json")
            if run.init
            else make_clip(tok, r.image_size, **r.clip).to(device)
        )
        train(ClipTask(model, source, tok, args), args)
        exported = ("clip", "clip")
    else:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    seconds = time.time() - t0
    # before the stage counts as done; the tokens stage recorded its time before its key marked it done
    if lead and record and stage != "tokens":
        _record(out, stage, seconds)
    if lead and exported:
        _promote(out / "runs" / exported[0], out, exported[1])
    if lead and record and stage != "tokens":  # the token cache is not an exported file
        write_manifest(out)
    barrier()
    return seconds


def _same_size(model: torch.nn.Module, image_size: int, config: Path) -> torch.nn.Module:
    """`model` if it reads images of the recipe's size, else `CheckpointError` naming both."""
    if model.config.image_size != image_size:
        raise CheckpointError(
            f"{config} is for {model.config.image_size} px images, but this recipe trains on "
            f"{image_size} px"
        )
    return model


def _promote(run_dir: Path, out: Path, name: str) -> None:
    """Copy a finished run's exported model into the checkpoint directory."""
    for suffix in (".safetensors", ".json"):
        src = run_dir / f"{name}{suffix}"
        if not src.exists():
            raise CheckpointError(f"the {name} run finished without exporting {src}")
        write_bytes(out / f"{name}{suffix}", src.read_bytes())


def _record(out: Path, stage: str, seconds: float) -> None:
    path = out / "runs" / "times.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(path.read_text()) if path.exists() else {}
    times[stage] = times.get(stage, 0.0) + round(seconds, 1)
    write_json(path, times)


def train_all(run: Run) -> None:
    """Run every unfinished stage in order, the scorer beside the VAE stages where that helps (see the top)."""
    run.out.mkdir(parents=True, exist_ok=True)
    threads = run.threads or torch.get_num_threads()
    beside: Beside | None = None
    finished_beside = set()
    try:
        for stage in STAGES:
            if stage == "transformer" and beside is not None:
                beside.finish()
                finished_beside.add(beside.stage)
                beside = None
            if done(run, stage):
                if rank_and_world()[0] == 0 and stage not in finished_beside:
                    print(f"{stage}: already done, skipped")
                continue
            if (
                stage == "vae"
                and not done(run, "clip")
                and threads >= 2
                and rank_and_world()[1] == 1
                and resolve_device(run.device) == "cpu"
            ):
                beside = Beside.start("clip", replace(run, threads=1))
            run_stage(stage, replace(run, threads=threads - 1 if beside is not None else threads))
    finally:
        if (
            beside is not None and beside.process.is_alive()
        ):  # this process failed or was interrupted
            beside.process.terminate()
            beside.process.join()


class StageFailed(RuntimeError):
    """A stage that trained in another process failed; the message ends with its log."""


@dataclass
class Beside:
    """A stage training in a child process, its output in `runs/<stage>.log`."""

    stage: str
    out: Path
    process: multiprocessing.process.BaseProcess
    seconds: Any  # a shared double the child sets to its stage's seconds
    log: Path

    @classmethod
    def start(cls, stage: str, run: Run) -> Beside:
        log = run.out / "runs" / f"{stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("spawn")
        seconds = ctx.Value("d", 0.0)
        process = ctx.Process(target=_stage_to_log, args=(stage, run, log, seconds, os.getpid()))
        process.start()
        print(
            f"{stage}: training beside the other stages, in process {process.pid} (progress in {log})"
        )
        return cls(stage, run.out, process, seconds, log)

    def finish(self) -> None:
        """Wait for the stage and record its time; `StageFailed` with the end of its log if it failed."""
        if self.process.is_alive():
            print(f"waiting for the {self.stage} stage to finish (progress in {self.log})")
        self.process.join()
        if self.process.exitcode != 0:
            tail = "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise StageFailed(
                f"the {self.stage} stage failed (exit code {self.process.exitcode}); "
                f"the end of {self.log}:\n{tail}"
            )
        _record(self.out, self.stage, self.seconds.value)
        write_manifest(self.out)
        print(f"{self.stage}: finished beside the other stages in {self.seconds.value:.0f} s")


def _stage_to_log(stage: str, run: Run, log: Path, seconds: Any, parent: int) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    with log.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            seconds.value = run_stage(stage, run, record=False)
        except CheckpointError as e:  # the message names the file and what to do
            print(f"error: {e}")
            raise SystemExit(1) from None
        except BaseException:  # the traceback goes to the log; the parent reports the failure
            traceback.print_exc()
            raise SystemExit(1) from None


def _exit_with(parent: int) -> None:
    """End this process once `parent` has ended, even by kill -9 (it would go on writing into a run that a
    resumed `train all` is training again)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
