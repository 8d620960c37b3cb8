"""Data sources: the world stream (resumable, per-worker) and a user's image folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from dalle_core.data import (
    Batches,
    DatasetError,
    ImageFolder,
    ShapesWorld,
    ShapesWorld2,
    batch_loader,
    make_batch,
    validation_batch,
)
from dalle_core.judge import judge_image


def test_batches_are_a_function_of_their_index():
    src = ShapesWorld(64)
    a = make_batch(src, 4, seed=1, rank=0, k=7)
    b = make_batch(src, 4, seed=1, rank=0, k=7)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert a[0].shape == (4, 3, 64, 64) and a[0].dtype == torch.uint8
    assert make_batch(src, 4, seed=1, rank=1, k=7)[1] != a[1]


def test_loader_order_is_the_same_with_workers_and_after_resume():
    src = ShapesWorld(64)
    plain = [c for _, c in zip(range(4), batch_loader(src, 2, seed=3, workers=0))]
    two = [c for _, c in zip(range(4), batch_loader(src, 2, seed=3, workers=2))]
    resumed = [c for _, c in zip(range(2), batch_loader(src, 2, seed=3, start=2, workers=0))]
    assert [x[1] for x in plain] == [x[1] for x in two]
    assert [x[1] for x in plain[2:]] == [x[1] for x in resumed]


def test_validation_is_fixed_and_held_out():
    src = ShapesWorld(64)
    imgs, caps = validation_batch(src, 8)
    assert caps == validation_batch(src, 8)[1]
    train = {c for _ in range(1) for c in make_batch(src, 64, 0, 0, 0)[1]}
    assert imgs.shape == (8, 3, 64, 64) and len(caps) == 8 and isinstance(Batches(src, 2), Batches)
    del train


def test_v2_validation_draws_are_judged_by_canonical_captions_their_images_pass():
    """The evaluator reads no paraphrases: a v2 validation draw ("DRAW A TINY DIAMOND NEXT TO ...") is judged
    against its canonical caption, and every draw's own image passes it."""
    source = ShapesWorld2(96)
    draws, judged = source.validation(40), source.judged_captions(40)
    assert any(caption != canonical for (_, caption), canonical in zip(draws, judged))
    assert all(judge_image(image, canonical)[0] for (image, _), canonical in zip(draws, judged))
    assert ShapesWorld(64).judged_captions(3) == [c for _, c in ShapesWorld(64).validation(3)]


def _folder(tmp_path, n=6):
    for i in range(n):
        Image.new("RGB", (80 + i, 50), (i * 40, 10, 10)).save(tmp_path / f"img{i}.png")
        (tmp_path / f"img{i}.txt").write_text(f"caption {i}\nother caption {i}\n")
    return tmp_path


def test_folder_dataset(tmp_path):
    _folder(tmp_path)
    Image.new("RGBA", (30, 90), (0, 0, 255, 128)).save(tmp_path / "rgba.png")
    (tmp_path / "rgba.txt").write_text("a translucent image")
    Image.new("L", (64, 64), 7).save(tmp_path / "gray.jpg")
    (tmp_path / "gray.txt").write_text("a gray image")
    (tmp_path / "nocap.png").write_bytes((tmp_path / "img0.png").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "broken.txt").write_text("x")
    (tmp_path / "empty.png").write_bytes((tmp_path / "img0.png").read_bytes())
    (tmp_path / "empty.txt").write_text("\n  \n")
    ds = ImageFolder(tmp_path, size=32)
    assert len(ds.train) + len(ds.val) == 8
    s = ds.summary()
    assert "8 pairs used" in s and "nocap.png" in s and "broken.png" in s and "empty.png" in s
    images, captions = make_batch(ds, 16, seed=0, rank=0, k=0)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8
    assert all(c for c in captions)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(DatasetError, match="holds no images"):
        ImageFolder(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="no usable.*no caption file"):
        ImageFolder(tmp_path)


def test_folder_crops_the_centre(tmp_path):
    img = np.zeros((40, 120, 3), np.uint8)
    img[:, 40:80] = 255  # a white centre square between black sides
    Image.fromarray(img).save(tmp_path / "wide.png")
    (tmp_path / "wide.txt").write_text("white")
    ds = ImageFolder(tmp_path, size=16)
    images, _ = make_batch(ds, 1, 0, 0, 0)
    assert images.float().mean() > 200
