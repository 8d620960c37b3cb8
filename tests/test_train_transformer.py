"""Training the transformer on precomputed tokens: the token cache and a falling loss."""

import json
import random
from dataclasses import replace

import pytest
import torch
from PIL import Image

from dalle_core.checkpoint import CheckpointError
from dalle_core.data import ImageFolder, ShapesWorld
from dalle_core.text import TextTokenizer
from dalle_core.train_transformer import (
    TransformerRecipe,
    TransformerTask,
    precompute_tokens,
    vae_fingerprint,
)
from dalle_core.training import TrainArgs, train
from dalle_core.transformer import DalleTransformer, TransformerConfig
from dalle_core.vae import DiscreteVAE, VAEConfig


def test_token_cache_and_training(tmp_path):
    torch.manual_seed(0)
    source = ShapesWorld(32)
    tok = TextTokenizer.train(source.captions(500), length=26)
    vae = DiscreteVAE(VAEConfig(image_size=32, f=8, codebook=16, widths=(8, 8, 8, 8))).eval()
    path = precompute_tokens(
        tmp_path / "tokens.safetensors", source, vae, tok, n=300, chunk=128, val=16, bf16=False
    )
    stamp = path.stat().st_mtime_ns
    assert (
        precompute_tokens(path, source, vae, tok, n=300, chunk=128, val=16, bf16=False)
        .stat()
        .st_mtime_ns
        == stamp
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["n"] == 300
    # a new cache runs `before_key` once its tensors are written and before its key marks it complete (the
    # recipe records the stage's time there: a run killed right after the key appeared had lost it)
    seen = []
    again_path = tmp_path / "again.safetensors"
    again = precompute_tokens(
        again_path,
        source,
        vae,
        tok,
        n=8,
        val=4,
        bf16=False,
        before_key=lambda: seen.append(
            (again_path.exists(), again_path.with_suffix(".json").exists())
        ),
    )
    assert again == again_path and seen == [(True, False)]

    config = TransformerConfig(
        text_vocab=tok.vocab_size,
        text_len=26,
        pad_id=tok.pad_id,
        image_vocab=16,
        grid=4,
        n_layer=2,
        n_head=2,
        n_embd=32,
    )
    model = DalleTransformer(config)
    args = TrainArgs(
        out=str(tmp_path / "run"),
        steps=120,
        batch_size=16,
        lr=3e-3,
        warmup=5,
        val_every=120,
        ckpt_every=120,
        log_every=1,
        bf16=False,
        workers=0,
    )
    task = TransformerTask(model, path, vae, tok, args, TransformerRecipe(val_samples=8))
    metrics = train(task, args)
    losses = [
        json.loads(line)["loss"]
        for line in open(tmp_path / "run" / "log.jsonl")
        if '"loss"' in line
    ]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5
    assert "val_image_loss" in metrics and (tmp_path / "run" / "transformer.safetensors").exists()
    assert (tmp_path / "run" / "samples-0000120.png").exists()


def _cache_inputs(tmp_path):
    torch.manual_seed(0)
    source = ShapesWorld(32)
    tok = TextTokenizer.train(source.captions(300), length=26)
    vae = DiscreteVAE(VAEConfig(image_size=32, f=8, codebook=16, widths=(8, 8, 8, 8))).eval()
    return source, tok, vae


def _cache(path, source, vae, tok):
    return (
        precompute_tokens(path, source, vae, tok, n=64, chunk=64, val=8, bf16=False)
        .stat()
        .st_mtime_ns
    )


def test_a_stale_token_cache_is_rebuilt_when_its_tokenizer_vae_or_data_change(tmp_path):
    source, tok, vae = _cache_inputs(tmp_path)
    path = tmp_path / "tokens.safetensors"
    stamp = _cache(path, source, vae, tok)
    assert _cache(path, source, vae, tok) == stamp  # nothing changed: reused

    other_tok = TextTokenizer.train(
        source.captions(300), length=20
    )  # another text length, other ids
    assert other_tok.fingerprint != tok.fingerprint
    stamp, before = _cache(path, source, vae, other_tok), stamp
    assert stamp != before

    with torch.no_grad():  # the encoder's weights change, so would the tokens
        vae.encoder.net[0].weight.add_(0.01)
    stamp, before = _cache(path, source, vae, other_tok), stamp
    assert stamp != before

    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(40):  # enough for ImageFolder to hold some out for validation
        Image.fromarray(source.draw(random.Random(i))[0]).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a picture number {i}\n")
    images = ImageFolder(folder, 32)
    stamp, before = _cache(path, images, vae, other_tok), stamp
    assert stamp != before  # another data source
    assert _cache(path, ImageFolder(folder, 32), vae, other_tok) == stamp
    (folder / "2.txt").write_text("a changed caption\n")  # an edited file of the same folder
    assert _cache(path, ImageFolder(folder, 32), vae, other_tok) != stamp


def test_the_vae_fingerprint_follows_what_the_tokens_depend_on():
    torch.manual_seed(0)
    vae = DiscreteVAE(VAEConfig(image_size=32, f=8, codebook=16, widths=(8, 8, 8, 8))).eval()
    argmax = vae_fingerprint(vae)
    with torch.no_grad():  # the argmax does not read the decoder
        vae.decoder.net[-1].weight.add_(0.01)
    assert vae_fingerprint(vae) == argmax
    vae.config = replace(vae.config, search=4)  # a search decodes its candidates
    searched = vae_fingerprint(vae)
    assert searched != argmax
    with torch.no_grad():
        vae.decoder.net[-1].weight.add_(0.01)
    four = vae_fingerprint(vae)
    assert four != searched
    vae.config = replace(vae.config, search=8)  # more candidates, the same weights
    assert vae_fingerprint(vae) != four


def test_the_transformer_refuses_a_token_cache_of_another_vae_or_tokenizer(tmp_path):
    source, tok, vae = _cache_inputs(tmp_path)
    path = tmp_path / "tokens.safetensors"
    _cache(path, source, vae, tok)
    config = TransformerConfig(
        text_vocab=tok.vocab_size,
        text_len=26,
        pad_id=tok.pad_id,
        image_vocab=16,
        grid=4,
        n_layer=1,
        n_head=2,
        n_embd=16,
    )
    args = TrainArgs(out=str(tmp_path / "run"), steps=2, batch_size=4, bf16=False, workers=0)
    TransformerTask(
        DalleTransformer(config),
        path,
        vae,
        tok,
        args,
        TransformerRecipe(val_samples=2),
    )
    other = DiscreteVAE(VAEConfig(image_size=32, f=8, codebook=16, widths=(8, 8, 8, 8))).eval()
    with pytest.raises(CheckpointError, match="token cache .* another VAE or tokenizer"):
        TransformerTask(
            DalleTransformer(config),
            path,
            other,
            tok,
            args,
            TransformerRecipe(val_samples=2),
        )
