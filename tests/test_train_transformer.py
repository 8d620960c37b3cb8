"""Training the transformer on precomputed tokens: the token cache and a falling loss."""
import json

import torch

from dalle_core.data import ShapesWorld
from dalle_core.text import TextTokenizer
from dalle_core.train_transformer import (
    TransformerRecipe,
    TransformerTask,
    precompute_tokens,
)
from dalle_core.training import TrainArgs, train
from dalle_core.transformer import DalleTransformer, TransformerConfig
from dalle_core.vae import DiscreteVAE, VAEConfig


def test_token_cache_and_training(tmp_path):
    torch.manual_seed(0)
    source = ShapesWorld(32)
    tok = TextTokenizer.train(source.captions(500), length=26)
    vae = DiscreteVAE(VAEConfig(image_size=32, f=8, codebook=16, widths=(8, 8, 8, 8))).eval()
    path = precompute_tokens(tmp_path / "tokens.safetensors", source, vae, tok, n=300, chunk=128, val=16, bf16=False)
    stamp = path.stat().st_mtime_ns
    assert precompute_tokens(path, source, vae, tok, n=300, chunk=128, val=16, bf16=False).stat().st_mtime_ns == stamp
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["n"] == 300

    config = TransformerConfig(text_vocab=tok.vocab_size, text_len=26, pad_id=tok.pad_id, image_vocab=16, grid=4,
                               n_layer=2, n_head=2, n_embd=32)
    model = DalleTransformer(config)
    args = TrainArgs(out=str(tmp_path / "run"), steps=120, batch_size=16, lr=3e-3, warmup=5, val_every=120,
                     ckpt_every=120, log_every=1, bf16=False, workers=0)
    task = TransformerTask(model, path, vae, tok, args, TransformerRecipe(val_samples=8), judge=False)
    metrics = train(task, args)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "log.jsonl") if '"loss"' in line]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5
    assert "val_image_loss" in metrics and (tmp_path / "run" / "transformer.safetensors").exists()
    assert (tmp_path / "run" / "samples-0000120.png").exists()
