"""`dalle train all --tiny`: the whole recipe end to end through the real command line, then the facade on it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dalle_core.checkpoint import latest_checkpoint, read_json, read_tensors
from dalle_core import Dalle

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SHIPPED = Path(__file__).parents[1] / "assets" / "checkpoint"


def dalle(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dalle_core.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    r = dalle("train", "all", "--tiny", "--out", str(out), "--threads", "2", "--workers", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_train_all_tiny_writes_a_checkpoint(tiny):
    for name in ["tokenizer.json", "text.json", "vae.json", "vae.safetensors", "transformer.json",
                 "transformer.safetensors", "clip.json", "clip.safetensors"]:
        assert (tiny / name).exists(), name
    times = json.loads((tiny / "runs" / "times.json").read_text())
    assert set(times) == {"tokenizer", "vae", "tokens", "decoder", "transformer", "clip"}
    assert "train clip" in (tiny / "runs" / "clip.log").read_text()  # with two threads it trained beside the VAE
    assert list((tiny / "runs" / "transformer").glob("samples-*.png"))


def test_the_facade_runs_on_it(tiny):
    results = Dalle(tiny, device="cpu").generate("a red circle", n=2, candidates=3)
    assert len(results) == 2


def test_curves_of_a_run(tiny, tmp_path):
    out = tmp_path / "curves.png"
    r = dalle("curves", str(tiny / "runs" / "transformer"), "--keys", "loss,val_image_loss", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000
    r = dalle("curves", str(tiny / "runs" / "transformer"), "--keys", "nonsense", "--out", str(out))
    assert r.returncode != 0 and "no 'nonsense'" in r.stderr


def test_finished_stages_are_skipped(tiny):
    r = dalle("train", "all", "--tiny", "--out", str(tiny))
    assert r.returncode == 0 and r.stdout.count("already done") == 6


def test_a_failure_beside_is_reported(tiny, tmp_path):
    """When the scorer training beside the VAE fails, `train all` says so with the end of its log."""
    for name in ("tokenizer.json", "text.json"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    shutil.copytree(tiny / "runs" / "clip", tmp_path / "runs" / "clip")  # a run there, and no --resume
    r = dalle("train", "all", "--tiny", "--out", str(tmp_path), "--threads", "2", "--workers", "0")
    assert r.returncode == 1
    assert "error: the clip stage failed" in r.stderr and "pass --resume to continue it" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "transformer.safetensors").exists()


def test_kill_minus_9_then_resume(tmp_path):
    """Kill a training run at a random moment; --resume continues from its last complete checkpoint."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dalle_core.cli", "train", "vae", "--tiny", "--out", str(out), "--vae-steps", "400",
           "--threads", "1", "--workers", "0"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while latest_checkpoint(out / "runs" / "vae") is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.7)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(out / "runs" / "vae")
    assert ckpt is not None and ckpt.exists()
    step = read_json(ckpt / "state.json")["step"]
    assert 0 < step < 400
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode != 0 and "--resume" in r.stderr  # nothing is overwritten silently
    r = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming vae from {ckpt}" in r.stdout + r.stderr
    assert (out / "vae.safetensors").exists()
    assert not list((out / "runs" / "vae").glob(".tmp-*"))
    logged = [json.loads(line)["step"] for line in open(out / "runs" / "vae" / "log.jsonl") if '"loss"' in line]
    assert logged == sorted(set(logged)) and logged[-1] == 400  # each step once, as if never interrupted


def test_resume_with_more_steps_extends_a_finished_stage(tmp_path):
    """`--resume --<stage>-steps N` continues a finished stage from its last checkpoint to step N
    (the learning-rate schedule is that of an N-step run from there on)."""
    base = ["train", "vae", "--tiny", "--out", str(tmp_path), "--threads", "1", "--workers", "0"]
    assert dalle(*base, "--vae-steps", "4").returncode == 0
    first = (tmp_path / "vae.safetensors").read_bytes()
    r = dalle(*base, "--vae-steps", "8", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(step 4)" in r.stdout + r.stderr
    assert read_json(latest_checkpoint(tmp_path / "runs" / "vae") / "state.json")["step"] == 8
    assert (tmp_path / "vae.safetensors").read_bytes() != first  # the exported model is the extended one


def test_init_starts_a_stage_from_existing_weights(tiny, tmp_path):
    """`--init DIR` fine-tunes: the tokenizer is DIR's, and the scorer starts from DIR's weights
    (at a learning rate of ~0 it ends where it started; a fresh scorer would not)."""
    base = ["--tiny", "--out", str(tmp_path), "--threads", "1", "--workers", "0", "--init", str(tiny)]
    assert dalle("train", "tokenizer", *base).returncode == 0
    assert (tmp_path / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    r = dalle("train", "clip", *base, "--clip-steps", "2", "--lr", "1e-12")
    assert r.returncode == 0, r.stderr[-2000:]
    start, end = read_tensors(tiny / "clip.safetensors"), read_tensors(tmp_path / "clip.safetensors")
    assert start.keys() == end.keys()
    assert max((start[k].float() - end[k].float()).abs().max().item() for k in start) < 1e-4


def test_init_with_weights_for_other_tokens_fails_clearly(tiny, tmp_path):
    """A transformer that reads another VAE's codes cannot start a run: the error names both."""
    for name in ("tokenizer.json", "text.json", "vae.json", "vae.safetensors"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tokens.safetensors").write_bytes((tiny / "runs" / "tokens.safetensors").read_bytes())
    r = dalle("train", "transformer", "--tiny", "--out", str(tmp_path), "--threads", "1", "--init", str(SHIPPED))
    assert r.returncode != 0
    assert "transformer.json" in r.stderr and "'image_vocab': 512" in r.stderr and "'image_vocab': 64" in r.stderr
    assert "Traceback" not in r.stderr
    r = dalle("train", "vae", "--paper", "--out", str(tmp_path / "paper"), "--init", str(SHIPPED))
    assert r.returncode != 0 and "vae.json is for 64 px images" in r.stderr and "256 px" in r.stderr
    r = dalle("train", "clip", "--tiny", "--out", str(tmp_path), "--lr", "-1")
    assert r.returncode != 0 and "--lr: must be a positive number" in r.stderr


def test_fine_tune_everything_on_a_folder(tiny, tmp_path):
    """`dalle train all --init DIR --data FOLDER`: every stage starts from DIR and trains on the folder's pairs."""
    from PIL import Image

    from dalle_core.world import sample
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(40):
        s = sample(seed=10_000 + i)
        Image.fromarray(s.image).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(s.caption + "\n")
    out = tmp_path / "tuned"
    r = dalle("train", "all", "--tiny", "--init", str(tiny), "--data", str(folder), "--out", str(out),
              "--threads", "1", "--workers", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    assert Dalle(out, device="cpu").generate("a red circle", n=1, candidates=2)[0].image.shape == (64, 64, 3)
