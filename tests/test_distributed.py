"""Training under `torchrun` with DistributedDataParallel (2 CPU processes, gloo), and the paper-sized layout."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from dalle_core import Dalle
from dalle_core.checkpoint import latest_checkpoint, read_tensors
from dalle_core.clip import Clip, ClipConfig
from dalle_core.recipe import PAPER, TINY
from dalle_core.training import TrainArgs
from dalle_core.transformer import (
    DalleTransformer,
    TransformerConfig,
    build_mask,
    paper_masks,
)
from dalle_core.vae import DiscreteVAE, VAEConfig

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY_BATCH = {
    "vae": TINY.vae_batch,
    "decoder": TINY.vae_batch,
    "transformer": TINY.transformer_batch,
    "clip": TINY.clip_batch,
}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dalle_core.cli",
        *args,
        "--threads",
        "1",
        "--workers",
        "0",
    ]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)


def log_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    r = torchrun(
        "train",
        "all",
        "--tiny",
        "--out",
        str(out),
        "--accum",
        "2",
        "--vae-steps",
        "12",
        "--decoder-steps",
        "4",
        "--transformer-steps",
        "20",
        "--clip-steps",
        "8",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def test_every_stage_trains_on_two_processes_with_identical_replicas(ddp_run):
    for stage, steps in [("vae", 12), ("decoder", 4), ("transformer", 20), ("clip", 8)]:
        run = ddp_run / "runs" / stage
        assert json.loads((run / "args.json").read_text())["processes"] == 2
        rows = log_rows(run)
        final = rows[-1]
        assert final == {"step": steps, "processes": 2, "replica_max_abs_diff": 0.0}, stage
        # one optimizer step consumes batch x accum x processes samples
        assert (
            max(r["samples"] for r in rows if "samples" in r) == steps * TINY_BATCH[stage] * 2 * 2
        ), stage


def test_rank_zero_alone_writes(ddp_run):
    times = json.loads((ddp_run / "runs" / "times.json").read_text())
    assert set(times) == {
        "tokenizer",
        "vae",
        "tokens",
        "decoder",
        "transformer",
        "clip",
    }  # each recorded once
    for stage in ("vae", "transformer", "clip"):
        rows = log_rows(ddp_run / "runs" / stage)
        steps = [r["step"] for r in rows if "loss" in r]
        assert steps == sorted(set(steps)), f"{stage}: log rows written by more than one process"


def test_the_loss_falls_under_ddp(ddp_run):
    losses = [r["loss"] for r in log_rows(ddp_run / "runs" / "transformer") if "loss" in r]
    assert len(losses) >= 8  # logged every 2 steps
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses


def test_the_ddp_checkpoint_generates(ddp_run):
    assert len(Dalle(ddp_run, device="cpu").generate("a red circle", n=1, candidates=2)) == 1


def kill_all(marker: str) -> None:
    """SIGKILL at once every process whose command line holds `marker`, and wait until they are gone.
    torchrun starts each worker in a session of its own, so killing torchrun's process group would leave
    the workers running (and writing checkpoints into the run a resumed one reads)."""

    def pids() -> list[int]:
        found = []
        for d in os.listdir("/proc"):
            try:
                if d.isdigit() and marker in open(f"/proc/{d}/cmdline", "rb").read().decode(
                    errors="replace"
                ):
                    found.append(int(d))
            except OSError:  # the process ended while being looked at
                pass
        return found

    def running(pid: int) -> bool:  # a zombie has stopped; only its parent's wait() is left
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    for pid in pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in pids()):
        assert time.monotonic() < deadline, "the killed processes did not go away"
        time.sleep(0.05)


def test_kill_minus_9_under_torchrun_then_resume_matches_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["train-vae", "--tiny", "--vae-steps", "8", "--accum", "2"]
    r = torchrun(*args, "--out", str(a))
    assert r.returncode == 0, r.stderr[-4000:]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dalle_core.cli",
        *args,
        "--out",
        str(b),
        "--threads",
        "1",
        "--workers",
        "0",
    ]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    latest = b / "runs" / "vae" / "latest"
    deadline = time.monotonic() + 300
    while not (latest.exists() and latest.read_text() >= "step-0000003"):
        assert proc.poll() is None and time.monotonic() < deadline, (
            "the run ended before it could be killed"
        )
        time.sleep(0.05)
    kill_all(str(b))  # torchrun and both workers, mid-run
    proc.wait()
    assert latest_checkpoint(b / "runs" / "vae").name < "step-0000008"
    r = torchrun(*args, "--out", str(b), "--resume")
    assert r.returncode == 0, r.stderr[-4000:]
    assert "resuming vae" in r.stdout
    ours, theirs = read_tensors(b / "vae.safetensors"), read_tensors(a / "vae.safetensors")
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_accum_must_be_positive():
    with pytest.raises(ValueError, match="accum"):
        TrainArgs(out="x", accum=0)


# ----------------------------------------------------------------------------- the paper's layout


def test_paper_masks_follow_the_paper():
    masks = paper_masks(64)
    assert masks[-1] == "conv"
    assert [i for i, m in enumerate(masks, start=1) if m == "column"] == list(range(2, 64, 4))
    assert set(masks[:-1]) == {"row", "column"}


def test_paper_recipe_has_the_papers_layout():
    vae = replace(PAPER.vae, image_size=PAPER.image_size)
    assert (PAPER.image_size, vae.grid, vae.codebook, PAPER.text_len, PAPER.text_vocab) == (
        256,
        32,
        8192,
        256,
        16384,
    )
    with torch.device("meta"):
        config = TransformerConfig(
            text_vocab=PAPER.text_vocab,
            text_len=PAPER.text_len,
            image_vocab=vae.codebook,
            grid=vae.grid,
            **PAPER.transformer,
        )
        params = sum(p.numel() for p in DalleTransformer(config).parameters())
    assert config.seq_len == 1280 and config.attn_masks == paper_masks(24)
    assert 340e6 < params < 370e6  # the size docs/scaling.md budgets memory for


def test_the_paper_layout_trains_at_small_width():
    """The full 1280-token stream with the sparse masks, at a width a CPU test can afford: one step lowers nothing
    in particular, but every shape, mask and loss path of the layout runs."""
    config = TransformerConfig(
        text_vocab=PAPER.text_vocab,
        text_len=PAPER.text_len,
        image_vocab=8192,
        grid=32,
        n_layer=4,
        n_head=2,
        n_embd=32,
        attn_masks=paper_masks(4),
    )
    model = DalleTransformer(config)
    text = torch.randint(0, PAPER.text_vocab, (1, 256))
    image = torch.randint(0, 8192, (1, 1024))
    total, _, _ = model.loss(text, image)
    total.backward()
    assert torch.isfinite(total)
    image_keys = build_mask("row", 256, 32, 5)[256:, 256:].sum(
        1
    )  # image keys each image query sees
    assert (
        image_keys.max() <= 32 < build_mask("causal", 256, 32, 5)[256:, 256:].sum(1).max()
    )  # sparse: one row

    vae = DiscreteVAE(VAEConfig(image_size=256, f=8, codebook=8192, widths=(8, 8, 8, 16)))
    assert vae.encode(torch.rand(1, 3, 256, 256)).shape == (1, 1024)
    clip = Clip(ClipConfig(text_vocab=PAPER.text_vocab, text_len=256, image_size=256, **PAPER.clip))
    assert clip.encode_image(torch.rand(1, 3, 256, 256)).shape == (1, PAPER.clip["embed_dim"])
