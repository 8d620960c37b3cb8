"""The discrete VAE: shapes, the relaxation, determinism, training, exact resume, clear load errors."""

import json
import os
import signal
from dataclasses import replace

import pytest
import torch

from dalle_core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_model,
    read_json,
    save_model,
)
from dalle_core.data import ShapesWorld, ShapesWorld2
from dalle_core.device import device_name
from dalle_core.train_vae import VAERecipe, VAETask, edge_mask
from dalle_core.training import TrainArgs, train, trained_seconds
from dalle_core.vae import DiscreteVAE, VAEConfig, gumbel_softmax
from dalle_core.vae_report import KINDS

TINY = VAEConfig(image_size=32, f=4, codebook=32, widths=(8, 8, 16))


def test_shapes_round_trip():
    m = DiscreteVAE(TINY).eval()
    x = torch.rand(3, 3, 32, 32)
    tokens = m.encode(x)
    assert tokens.shape == (3, 64) and tokens.dtype == torch.long and int(tokens.max()) < 32
    assert m.decode(tokens).shape == (3, 3, 32, 32)
    assert m.decode(tokens.view(3, 8, 8)[:, :2]).shape == (
        3,
        3,
        8,
        32,
    )  # the top 2 rows of the grid only
    recon, logits = m(x, tau=1.0)
    assert recon.shape == x.shape and logits.shape == (3, 32, 8, 8)


@pytest.mark.parametrize("code_dim", [0, 8])
def test_relaxed_sample_is_differentiable(code_dim):
    m = DiscreteVAE(replace(TINY, code_dim=code_dim))
    recon, _ = m(torch.rand(2, 3, 32, 32), tau=0.5)
    recon.mean().backward()
    head = m.encoder.net[-1]
    grad = (head.codes if code_dim else head.weight).grad
    assert grad is not None and grad.abs().sum() > 0


def test_cosine_logits_ignore_the_size_of_code_vectors():
    m = DiscreteVAE(replace(TINY, code_dim=8)).eval()
    x = torch.rand(2, 3, 32, 32)
    logits = m.encoder(x)
    with torch.no_grad():
        m.encoder.net[-1].codes[:5] *= 100.0  # five codes with huge weights win no more cells
    assert torch.allclose(m.encoder(x), logits, atol=1e-5)
    assert logits.abs().max() <= m.encoder.net[-1].log_scale.exp() + 1e-5


def test_encoding_is_deterministic():
    m = DiscreteVAE(TINY).eval()
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(m.encode(x), m.encode(x))


def test_search_keeps_codes_that_decode_to_the_image_exactly():
    torch.manual_seed(0)
    m = DiscreteVAE(TINY).eval()
    exact, other = torch.randint(0, 32, (2, 4, 8, 8))  # (4, 8, 8) each
    with torch.no_grad():
        x = m.decode(exact.flatten(1))
    assert torch.equal(m.search(x, torch.stack([exact, other], 1)), exact)


def test_search_finds_most_codes_an_image_was_decoded_from():
    torch.manual_seed(0)
    m = DiscreteVAE(TINY).eval()
    exact, wrong = torch.randint(0, 32, (2, 4, 8, 8))
    with torch.no_grad():
        x = m.decode(exact.flatten(1))
        found = m.search(x, torch.stack([wrong, exact], 1))  # the wrong codes first
        error = (m.decode(found.flatten(1)) - x).square().mean()
        before = (m.decode(wrong.flatten(1)) - x).square().mean()
    assert (found == exact).float().mean() > 0.8  # some random codes decode alike
    assert error < before / 5


def test_encode_with_search_picks_among_each_cells_most_likely_codes():
    m = DiscreteVAE(replace(TINY, search=3)).eval()
    x = torch.rand(2, 3, 32, 32)
    top3 = m.encoder(x).topk(3, dim=1).indices.flatten(2)  # (2, 3, 64)
    tokens = m.encode(x)  # (2, 64)
    assert (tokens[:, None] == top3).any(1).all()
    assert torch.equal(tokens, m.encode(x))  # deterministic


def test_edge_mask_marks_colour_boundaries_only():
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0, 4:10, 4:10] = 1.0  # a red 6 x 6 square on black
    m = edge_mask(x)[0, 0]
    assert m.shape == (16, 16)
    assert (
        m[3:11, 3:11].sum() == 8 * 8 - 4 * 4
    )  # the rings just outside and just inside the square's edge
    assert (
        m[5:9, 5:9].sum() == 0 and m[:2].sum() == 0
    )  # neither the interior nor the far background


def test_config_checks():
    with pytest.raises(ValueError, match="power of two"):
        VAEConfig(f=6)
    with pytest.raises(ValueError, match="widths"):
        VAEConfig(f=8, widths=(8, 8))
    with pytest.raises(ValueError, match="search must be between 1 and codebook = 32"):
        replace(TINY, search=0)


def _args(out, **kw):
    return TrainArgs(
        out=str(out),
        steps=kw.pop("steps", 4),
        batch_size=8,
        lr=3e-3,
        warmup=1,
        workers=0,
        val_every=100,
        ckpt_every=kw.pop("ckpt_every", 100),
        log_every=1,
        bf16=False,
        **kw,
    )


def _task(args, seed=0, recipe=VAERecipe(val_images=8)):
    torch.manual_seed(seed)
    return VAETask(DiscreteVAE(TINY), ShapesWorld(32), args, recipe, faithful=False)


def _losses(out):
    return [json.loads(line)["loss"] for line in open(out / "log.jsonl") if '"loss"' in line]


@pytest.mark.parametrize("anneal", [1.0, 0.3])
def test_temperature_schedule(tmp_path, anneal):
    """tau falls from tau_start to tau_end by `tau_anneal` of the run, then stays; the KL weight warms up."""
    args = _args(tmp_path, steps=1000)
    task = VAETask(
        DiscreteVAE(TINY),
        ShapesWorld(32),
        args,
        VAERecipe(val_images=8, tau_anneal=anneal),
        faithful=False,
    )
    taus = [task.schedule(step)[0] for step in range(0, 1001, 50)]
    assert taus[0] == pytest.approx(1.0) and all(a >= b for a, b in zip(taus, taus[1:]))
    end = int(anneal * 1000)
    assert task.schedule(end)[0] == pytest.approx(1 / 16) and task.schedule(1000)[
        0
    ] == pytest.approx(1 / 16)
    if anneal < 1:
        assert (
            task.schedule(end // 2)[0]
            < VAETask(
                DiscreteVAE(TINY), ShapesWorld(32), args, VAERecipe(val_images=8), faithful=False
            ).schedule(end // 2)[0]
        )
    assert task.schedule(0)[1] == 0 and task.schedule(1000)[1] == pytest.approx(
        VAERecipe().kl_weight
    )


def test_tiny_training_lowers_the_loss(tmp_path):
    args = _args(tmp_path / "run", steps=150)
    train(_task(args), args)
    losses = _losses(tmp_path / "run")
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:5]) / 5
    assert (tmp_path / "run" / "vae.safetensors").exists() and list(
        (tmp_path / "run").glob("recon-*.png")
    )


def test_decoder_only_phase_trains_the_decoder_alone_and_logs_its_loss_only(tmp_path):
    """In the decoder-only phase the encoder stays fixed; the log drops the temperature and KL it does not use."""
    args = _args(tmp_path, steps=3)
    task = _task(args, recipe=VAERecipe(val_images=8, decoder_only_from=0.0))
    encoder = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in task.model.decoder.state_dict().items()}
    train(task, args)
    assert all(torch.equal(v, task.model.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, task.model.decoder.state_dict()[k]) for k, v in decoder.items())
    logs = [json.loads(line) for line in open(tmp_path / "log.jsonl") if '"loss"' in line]
    assert len(logs) == 3 and all("tau" not in log and "kl" not in log for log in logs)


def test_resume_continues_exactly(tmp_path):
    recipe = VAERecipe(val_images=8)
    straight = _args(tmp_path / "a", steps=4, ckpt_every=2)
    train(_task(straight, recipe=recipe), straight)
    interrupted = _args(tmp_path / "b", steps=4, ckpt_every=2)
    train(_task(interrupted, recipe=recipe), interrupted)
    (tmp_path / "b" / "latest").write_text(
        "step-0000002"
    )  # as if killed after logging step 4, before its checkpoint
    with open(tmp_path / "b" / "log.jsonl", "a") as log:
        log.write('{"step": 4, "loss": 0.')  # ... and while writing a row
    resumed = _args(tmp_path / "b", steps=4, ckpt_every=2, resume=True)
    train(
        _task(resumed, seed=99, recipe=recipe), resumed
    )  # a different init: everything must come from the checkpoint
    # the log reads as one run's: steps 3 and 4 once each, from the resumed run
    assert _losses(tmp_path / "b") == pytest.approx(_losses(tmp_path / "a"), rel=1e-6)
    # the time of the steps kept adds up over the sessions, each session's machine recorded where it began
    rows = [json.loads(line) for line in open(tmp_path / "b" / "log.jsonl")]
    assert [
        (r["step"], r["session"]["device"] == device_name("cpu")) for r in rows if "session" in r
    ] == [
        (0, True),
        (2, True),
    ]
    kept = read_json(tmp_path / "b" / "step-0000002" / "state.json")["seconds"]
    seconds = [r["seconds"] for r in rows if "loss" in r]
    assert 0 <= seconds[0] <= seconds[1] <= kept <= seconds[2] <= seconds[3]
    assert (
        trained_seconds(tmp_path / "b")
        == read_json(latest_checkpoint(tmp_path / "b") / "state.json")["seconds"]
    )
    assert (
        trained_seconds(tmp_path / "b") >= seconds[3]
        and trained_seconds(tmp_path / "nothing") == 0.0
    )


def test_a_second_edition_run_validates_against_the_bar_kind_by_kind(tmp_path):
    """On the v2 stream the VAE's validation logs the tokenizer bar's measure (`vae_report`) for every kind."""
    args = _args(tmp_path, steps=1)
    model = DiscreteVAE(VAEConfig(image_size=96, f=8, codebook=32, widths=(8, 8, 8, 8)))
    task = VAETask(model, ShapesWorld2(96), args, VAERecipe(val_images=8, val_report=2))
    metrics = train(task, args)
    assert {f"faithful_{kind}" for kind in KINDS} <= set(metrics)
    assert all(0 <= metrics[f"faithful_{kind}"] <= 1 for kind in KINDS)


class _SignalledAt(VAETask):
    """A VAE task that sends its own process `signum` while computing the loss of step `at`."""

    def __init__(self, *args, at: int, signum: int, **kw):
        super().__init__(*args, **kw)
        self.at, self.signum = at, signum

    def loss(self, x, step):
        if step == self.at:
            os.kill(os.getpid(), self.signum)
        return super().loss(x, step)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_continues_exactly(
    tmp_path, signum
):
    """Ctrl-C (or a SIGTERM) mid-run finishes the step, checkpoints it although no checkpoint was due, and
    leaves the previous handler in place; --resume then continues as if never stopped."""
    recipe = VAERecipe(val_images=8)
    straight = _args(tmp_path / "a", steps=5)
    train(_task(straight, recipe=recipe), straight)
    stopped = _args(tmp_path / "b", steps=5)
    torch.manual_seed(0)
    task = _SignalledAt(
        DiscreteVAE(TINY), ShapesWorld(32), stopped, recipe, faithful=False, at=2, signum=signum
    )
    handler = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        train(task, stopped)
    assert (tmp_path / "b" / "latest").read_text() == "step-0000003"
    assert signal.getsignal(signum) is handler
    resumed = _args(tmp_path / "b", steps=5, resume=True)
    train(_task(resumed, seed=99, recipe=recipe), resumed)
    assert _losses(tmp_path / "b") == pytest.approx(_losses(tmp_path / "a"), rel=1e-6)


def test_resume_with_another_config_names_both(tmp_path):
    """A run resumed after the recipe's model settings changed fails before training, naming both values."""
    args = _args(tmp_path / "run", steps=2, ckpt_every=1)
    train(_task(args), args)
    resumed = _args(tmp_path / "run", steps=4, ckpt_every=1, resume=True)
    task = VAETask(
        DiscreteVAE(replace(TINY, code_dim=8)),
        ShapesWorld(32),
        resumed,
        VAERecipe(val_images=8),
        faithful=False,
    )
    with pytest.raises(
        CheckpointError,
        match=r"step-0000002/vae.json was saved by a DiscreteVAE with \{'code_dim': 0\}, "
        r"but this run builds one with \{'code_dim': 8\}",
    ):
        train(task, resumed)


def test_existing_run_needs_resume(tmp_path):
    args = _args(tmp_path / "run", steps=2, ckpt_every=1)
    train(_task(args), args)
    with pytest.raises(CheckpointError, match="--resume"):
        train(_task(args), args)


def test_mismatched_config_names_both_files(tmp_path):
    save_model(tmp_path, "vae", DiscreteVAE(TINY))
    cfg = json.loads((tmp_path / "vae.json").read_text())
    cfg["codebook"] = 64
    (tmp_path / "vae.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path, "vae", DiscreteVAE, VAEConfig)
    assert "vae.safetensors" in str(e.value) and "vae.json" in str(e.value)


def test_damaged_weights_are_named(tmp_path):
    save_model(tmp_path, "vae", DiscreteVAE(TINY))
    path = tmp_path / "vae.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="vae.safetensors"):
        load_model(tmp_path, "vae", DiscreteVAE, VAEConfig)


def test_gumbel_softmax_samples_codes_as_the_softmax_of_their_logits():
    """The Gumbel-max trick: the argmax of the relaxed sample is code k with probability softmax(logits)_k."""
    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0]).view(1, 4, 1, 1).expand(20_000, 4, 2, 2)
    z = gumbel_softmax(logits, tau=0.5)  # (B, K, h, w)
    assert z.shape == logits.shape and torch.allclose(z.sum(1), torch.ones(20_000, 2, 2))
    share = torch.bincount(z.argmax(1).flatten(), minlength=4) / z.argmax(1).numel()
    assert torch.allclose(share, logits[0, :, 0, 0].softmax(0), atol=0.01)
    assert (z.max(1).values > 0.9).float().mean() > gumbel_softmax(logits, tau=5.0).max(
        1
    ).values.gt(0.9).float().mean()
