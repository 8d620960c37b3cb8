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

from dalle_core import Dalle
from dalle_core.checkpoint import latest_checkpoint, read_json, read_tensors
from dalle_core.training import trained_seconds

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SHIPPED = Path(__file__).parents[1] / "assets" / "checkpoint"


def dalle(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "dalle_core.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    r = dalle("train", "all", "--tiny", "--out", str(out), "--threads", "2", "--workers", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_train_all_tiny_writes_a_checkpoint(tiny):
    for name in [
        "tokenizer.json",
        "text.json",
        "vae.json",
        "vae.safetensors",
        "transformer.json",
        "transformer.safetensors",
        "clip.json",
        "clip.safetensors",
    ]:
        assert (tiny / name).exists(), name
    times = json.loads((tiny / "runs" / "times.json").read_text())
    assert set(times) == {"tokenizer", "vae", "tokens", "decoder", "transformer", "clip"}
    assert (
        "train clip" in (tiny / "runs" / "clip.log").read_text()
    )  # with two threads it trained beside the VAE
    assert list((tiny / "runs" / "transformer").glob("samples-*.png"))


def test_the_facade_runs_on_it(tiny):
    results = Dalle(tiny, device="cpu").generate("a red circle", n=2, candidates=3)
    assert len(results) == 2


def test_curves_of_a_run(tiny, tmp_path):
    out = tmp_path / "curves.png"
    r = dalle(
        "curves",
        str(tiny / "runs" / "transformer"),
        "--keys",
        "loss,val_image_loss",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000
    r = dalle("curves", str(tiny / "runs" / "transformer"), "--keys", "nonsense", "--out", str(out))
    assert r.returncode != 0 and "no 'nonsense'" in r.stderr
    # runs side by side (the learning curves of several sizes, say): one line per run and metric
    runs = [str(tiny / "runs" / "transformer"), str(tiny / "runs" / "clip")]
    r = dalle("curves", *runs, "--keys", "loss", "--out", str(out))
    assert r.returncode == 0 and out.stat().st_size > 1000, r.stderr


def test_finished_stages_are_skipped(tiny):
    r = dalle("train", "all", "--tiny", "--out", str(tiny))
    assert r.returncode == 0 and r.stdout.count("already done") == 6


def test_a_failure_beside_is_reported(tiny, tmp_path):
    """When the scorer training beside the VAE fails, `train all` says so with the end of its log."""
    for name in ("tokenizer.json", "text.json"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    shutil.copytree(
        tiny / "runs" / "clip", tmp_path / "runs" / "clip"
    )  # a run there, and no --resume
    r = dalle("train", "all", "--tiny", "--out", str(tmp_path), "--threads", "2", "--workers", "0")
    assert r.returncode == 1
    assert "error: the clip stage failed" in r.stderr and "pass --resume to continue it" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "transformer.safetensors").exists()


def _running(marker: str) -> list[int]:
    """The pids of live processes whose command line holds `marker`."""
    found = []
    for d in os.listdir("/proc"):
        try:
            cmdline = (
                open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace")
                if d.isdigit()
                else ""
            )
            if marker in cmdline and open(f"/proc/{d}/stat").read().rsplit(") ", 1)[1][0] != "Z":
                found.append(int(d))
        except OSError:  # it ended while being looked at
            pass
    return found


def test_kill_minus_9_at_every_stage_then_resume(tmp_path):
    """`train all` killed with SIGKILL (the main process alone, as `kill -9 PID` does) at a point in every stage,
    right after each file that marks progress appears, resumes with --resume each time and ends as one
    uninterrupted run would: every file verified by the manifest, each logged step once, a model that generates."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "dalle_core.cli",
        "train",
        "all",
        "--tiny",
        "--out",
        str(out),
        "--threads",
        "2",
        "--workers",
        "0",
    ]
    marks = [
        "tokenizer.json",
        "runs/vae/latest",
        "vae.safetensors",
        "runs/decoder/vae.safetensors",
        "runs/tokens.json",
        "runs/transformer/latest",
        "transformer.safetensors",
    ]
    for i, mark in enumerate(marks):
        proc = subprocess.Popen(
            cmd + (["--resume"] if i else []),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 300
        while not (out / mark).exists():
            assert proc.poll() is None and time.time() < deadline, (
                f"the run ended before {mark} appeared"
            )
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (
            mark == "runs/vae/latest"
        ):  # killed mid-training: nothing is overwritten without --resume
            r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
            assert r.returncode != 0 and "--resume" in r.stderr
        deadline = time.time() + 10  # a stage training beside the killed process ends with it
        while _running(str(out)):
            assert time.time() < deadline, "a child of the killed run is still running"
            time.sleep(0.1)
    r = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == {
        "tokenizer.json",
        "text.json",
        "vae.json",
        "vae.safetensors",
        "transformer.json",
        "transformer.safetensors",
        "clip.json",
        "clip.safetensors",
    }
    times = json.loads((out / "runs" / "times.json").read_text())
    assert set(times) == {"tokenizer", "vae", "tokens", "decoder", "transformer", "clip"}
    for stage in (
        "vae",
        "transformer",
    ):  # killed mid-training: the time counts the steps kept from then
        assert times[stage] >= trained_seconds(out / "runs" / stage) > 0
    assert (out / "vae.safetensors").read_bytes() == (
        out / "runs" / "decoder" / "vae.safetensors"
    ).read_bytes()
    for stage in ("vae", "transformer", "clip"):
        run = out / "runs" / stage
        assert not list(run.glob(".tmp-*"))
        logged = [json.loads(line)["step"] for line in open(run / "log.jsonl") if '"loss"' in line]
        assert logged == sorted(set(logged)), f"{stage}: a step was logged twice"
    assert len(Dalle(out, device="cpu").generate("a red circle", n=1, candidates=2)) == 1


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
    assert (
        tmp_path / "vae.safetensors"
    ).read_bytes() != first  # the exported model is the extended one


def test_init_starts_a_stage_from_existing_weights(tiny, tmp_path):
    """`--init DIR` fine-tunes: the tokenizer is DIR's, and the scorer starts from DIR's weights
    (at a learning rate of ~0 it ends where it started; a fresh scorer would not)."""
    base = [
        "--tiny",
        "--out",
        str(tmp_path),
        "--threads",
        "1",
        "--workers",
        "0",
        "--init",
        str(tiny),
    ]
    assert dalle("train", "tokenizer", *base).returncode == 0
    assert (tmp_path / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    r = dalle("train", "clip", *base, "--clip-steps", "2", "--lr", "1e-12")
    assert r.returncode == 0, r.stderr[-2000:]
    start, end = (
        read_tensors(tiny / "clip.safetensors"),
        read_tensors(tmp_path / "clip.safetensors"),
    )
    assert start.keys() == end.keys()
    assert max((start[k].float() - end[k].float()).abs().max().item() for k in start) < 1e-4


def test_init_keeps_the_tokenizer_and_knows_the_new_captions_words(tmp_path):
    """Generation leaves unknown words out, so a model fine-tuned with `--init` must know its new captions' words."""
    from PIL import Image

    from dalle_core.text import TextTokenizer, words_of

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (255, 255, 255)).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text("a zorp next to a red circle\n")
    out = tmp_path / "out"
    args = ["--init", str(SHIPPED), "--data", str(data), "--out", str(out), "--workers", "0"]
    r = dalle("train", "tokenizer", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "tokenizer.json").read_bytes() == (SHIPPED / "tokenizer.json").read_bytes()
    shipped = TextTokenizer.load(SHIPPED)
    assert shipped.unknown_words("a zorp next to a red circle") == ["zorp", "next"]
    assert TextTokenizer.load(out).words == shipped.words | set(
        words_of("a zorp next to a red circle")
    )


def test_init_with_weights_for_other_tokens_fails_clearly(tiny, tmp_path):
    """A transformer that reads another VAE's codes cannot start a run: the error names both."""
    for name in ("tokenizer.json", "text.json", "vae.json", "vae.safetensors"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tokens.safetensors").write_bytes(
        (tiny / "runs" / "tokens.safetensors").read_bytes()
    )
    r = dalle(
        "train",
        "transformer",
        "--tiny",
        "--out",
        str(tmp_path),
        "--threads",
        "1",
        "--init",
        str(SHIPPED),
    )
    assert r.returncode != 0
    assert (
        "transformer.json" in r.stderr
        and "'image_vocab': 512" in r.stderr
        and "'image_vocab': 64" in r.stderr
    )
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
    r = dalle(
        "train",
        "all",
        "--tiny",
        "--init",
        str(tiny),
        "--data",
        str(folder),
        "--out",
        str(out),
        "--threads",
        "1",
        "--workers",
        "0",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    assert Dalle(out, device="cpu").generate("a red circle", n=1, candidates=2)[0].image.shape == (
        64,
        64,
        3,
    )


def test_the_v2_preset_holds_every_paraphrase_and_puts_every_panel_on_token_cells():
    """`--v2`: no caption of the second edition's stream is cut at its text length, and its VAE's grid
    divides every layout (the completion of a panel starts on a token cell)."""
    from dataclasses import replace

    from dalle_core.data import ShapesWorld2
    from dalle_core.layouts import LAYOUTS, completed_region
    from dalle_core.recipe import PRESETS
    from dalle_core.text import TextTokenizer
    from dalle_core.vae import DiscreteVAE

    r = PRESETS["shapes2"]
    source = ShapesWorld2(r.image_size)
    tok = TextTokenizer.train(source.captions(2000), r.text_len, r.text_vocab)
    assert not any(tok.encode(caption)[1] for _, caption in source.validation(1000))
    grid = DiscreteVAE(replace(r.vae, image_size=r.image_size)).config.grid
    assert grid == 12
    assert all(completed_region(kind, grid) is not None for kind in LAYOUTS)


def test_tiny_and_paper_are_two_sizes(tmp_path):
    """`--tiny` combines with `--v2` (the tiny recipe on the second edition, tests/test_demo_v2.py trains it),
    not with `--paper`."""
    r = dalle("train", "all", "--tiny", "--paper", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "--tiny and --paper are two sizes" in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_transformer_of_another_size_trains_on_the_same_tokens(tiny, tmp_path):
    """Learning curves at several sizes: the transformer stage alone, in a directory holding a copy of the
    tokenizer, the VAE and its token cache, at the depth and width asked for (heads of 32 channels)."""
    for name in ("tokenizer.json", "text.json", "vae.json", "vae.safetensors", "manifest.json"):
        shutil.copy(tiny / name, tmp_path / name)
    (tmp_path / "runs").mkdir()
    for name in ("tokens.safetensors", "tokens.json"):
        shutil.copy(tiny / "runs" / name, tmp_path / "runs" / name)
    size = ["--transformer-layers", "1", "--transformer-width", "64", "--transformer-steps", "2"]
    r = dalle("train", "transformer", "--tiny", "--out", str(tmp_path), "--workers", "0", *size)
    assert r.returncode == 0, r.stderr[-2000:]
    config = read_json(tmp_path / "transformer.json")
    assert (config["n_layer"], config["n_embd"], config["n_head"]) == (1, 64, 2)
    r = dalle(
        "train", "transformer", "--tiny", "--out", str(tmp_path / "x"), "--transformer-width", "48"
    )
    assert r.returncode != 0 and "multiple of 32" in r.stderr


def test_a_new_vae_trains_the_stages_after_it_again(tiny, tmp_path):
    """When the VAE changes after the recipe finished (its encoder continued), `train all --resume` makes its
    tokens again and trains the decoder and the transformer again from scratch, rather than export their old
    runs (which it sets aside)."""
    out = tmp_path / "run"
    shutil.copytree(tiny, out)
    base = ["--tiny", "--out", str(out), "--threads", "1", "--workers", "0", "--resume"]
    r = dalle("train", "vae", *base, "--vae-steps", "60")  # its encoder trains on to step 42
    assert r.returncode == 0, r.stderr[-2000:]
    r = dalle("train", "all", *base)
    assert r.returncode == 0, r.stderr[-2000:]
    for stage in ("decoder", "transformer"):
        assert f"{stage}: its input changed since it trained; training it again" in r.stdout
        assert (out / "runs" / f"{stage}.before" / "log.jsonl").exists()
    assert "clip: already done" in r.stdout and "tokens: already done" not in r.stdout
    assert (out / "vae.safetensors").read_bytes() == (
        out / "runs" / "decoder" / "vae.safetensors"
    ).read_bytes()
    assert read_json(out / "runs" / "transformer" / "tokens.json") == read_json(
        out / "runs" / "tokens.json"
    )
    assert dalle("train", "all", *base).stdout.count("already done") == 6
