"""Tests of dalle_core.transformer and dalle_core.sampling on tiny random-weight models."""

import dataclasses
import json

import pytest
import torch

from dalle_core import sampling
from dalle_core.layouts import LAYOUTS, completed_region
from dalle_core.sampling import SamplingParams, generate, stream, stream_length
from dalle_core.transformer import (
    MASK_KINDS,
    DalleTransformer,
    DecodeStep,
    TransformerConfig,
    attention,
    build_mask,
    token_order,
)

torch.set_num_threads(1)

T, G, N = 6, 4, 16  # text_len, grid, image tokens
TEXT_VOCAB, IMAGE_VOCAB, PAD = 30, 24, 0


def make_model(
    attn_masks: tuple[str, ...] = ("causal", "conv"),
    seed: int = 0,
    scale: float = 1.0,
    grid: int = G,
    order: str = "raster",
) -> DalleTransformer:
    """A random model; scale > 1 multiplies all but the LayerNorm weights, making it more opinionated."""
    config = TransformerConfig(
        text_vocab=TEXT_VOCAB, text_len=T, pad_id=PAD, image_vocab=IMAGE_VOCAB, grid=grid,
        n_layer=len(attn_masks), n_head=2, n_embd=32, attn_masks=attn_masks, conv_kernel=3, order=order,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = DalleTransformer(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" not in name and not name.startswith("ln_"):
                p.mul_(scale)
    return model


def random_inputs(batch: int, seed: int = 1, grid: int = G) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, TEXT_VOCAB, (batch, T), generator=g)
    text[:, T - 2 :] = PAD  # padded captions
    return text, torch.randint(0, IMAGE_VOCAB, (batch, grid * grid), generator=g)


def brute_force_mask(
    kind: str, text_len: int, grid: int, kernel: int, order: list[int] | None = None
) -> torch.Tensor:
    """The module docstring's mask definitions, one (query, key) pair at a time; `order`: the cell of each image
    position (default raster)."""
    L = text_len + grid * grid
    order = order or list(range(grid * grid))
    mask = torch.zeros(L, L, dtype=torch.bool)
    for p in range(L):
        for q in range(p + 1):
            if p < text_len or q < text_len or q == p or kind == "causal":
                mask[p, q] = True
            elif q > text_len:  # an image key holding token q - text_len - 1
                r, c = divmod(order[p - text_len], grid)
                kr, kc = divmod(order[q - text_len - 1], grid)
                h = kernel // 2
                mask[p, q] = {
                    "row": kr == r,
                    "column": kc == c,
                    "conv": r - h <= kr <= r and abs(kc - c) <= h,
                }[kind]
    return mask


def greedy_reference(
    model: DalleTransformer, text: torch.Tensor, image: torch.Tensor, cells, guidance: float = 1.0
):
    """Greedily fills the given cells in the order given by recomputing full forward passes."""
    image = image.clone()
    for j in cells:
        with torch.no_grad():
            logits = model(text, image)[1][:, j]
            if guidance > 1:
                uncond = model(torch.full_like(text, PAD), image)[1][:, j]
                logits = uncond + guidance * (logits - uncond)
        image[:, j] = logits.argmax(-1)
    return image.view(-1, model.config.grid, model.config.grid)


def test_stream_layout_and_embeddings():
    model = make_model()
    text, image = random_inputs(1)
    ids = model.stream_ids(text, image)[0]
    assert ids[T] == model.config.image_bos == IMAGE_VOCAB and torch.equal(
        ids[T + 1 :], image[0, :-1]
    )
    w = {name: p.detach() for name, p in model.named_parameters()}
    with torch.no_grad():
        x = model.embed(ids[None], 0)[0]  # (L, C)
        torch.testing.assert_close(model.embed(ids[None, 3:], 3)[0], x[3:])
    for t in range(T):
        token = (
            TEXT_VOCAB + t if ids[t] == PAD else ids[t]
        )  # one learned padding vector per position
        torch.testing.assert_close(x[t], w["text_emb.weight"][token] + w["text_pos.weight"][t])
    for j in range(N):  # position T+j: BOS or token j-1, at the cell of token j
        cell = w["row_emb.weight"][j // G] + w["col_emb.weight"][j % G]
        torch.testing.assert_close(x[T + j], w["image_emb.weight"][ids[T + j]] + cell)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("kernel", [3, 5])
def test_masks_match_brute_force(kind, kernel):
    for text_len, grid in [(3, 4), (1, 5)]:
        assert torch.equal(
            build_mask(kind, text_len, grid, kernel), brute_force_mask(kind, text_len, grid, kernel)
        )


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_receptive_field_of_one_layer_is_its_mask(kind):
    model = make_model((kind,))
    L = model.config.seq_len
    text, image = random_inputs(1)
    ids = model.stream_ids(text, image).repeat(L + 1, 1)  # row q+1 changes input q
    for q in range(L):
        ids[q + 1, q] = (ids[q + 1, q] + 1) % (
            IMAGE_VOCAB + 1 if q >= T else TEXT_VOCAB
        )  # BOS becomes 0
    with torch.no_grad():
        h = model.forward_stream(ids)  # (L+1, L, C)
    changed = (h[1:] - h[0]).abs().amax(-1).T > 1e-6  # (query, key)
    assert torch.equal(changed, getattr(model, f"mask_{kind}"))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_cached_logits_equal_full_recompute(kind):
    model = make_model((kind, kind))
    text, image = random_inputs(3)
    ids = model.stream_ids(text, image)
    with torch.no_grad():
        logits_text, logits_image = model(text, image)
        full = model.forward_stream(ids)
        for bounds in ([0, T + 1, *range(T + 2, T + N + 1)], [0, 2, 9, 10, 17, T + N]):
            cache = model.new_cache(3)
            chunks = zip(bounds, bounds[1:], strict=False)
            cached = torch.cat([model.forward_stream(ids[:, a:b], a, cache) for a, b in chunks], 1)
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
            torch.testing.assert_close(
                model.image_head(cached[:, T:]), logits_image, atol=1e-5, rtol=0
            )
            torch.testing.assert_close(
                model.text_head(cached[:, : T - 1]), logits_text, atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("shared", [False, True])
def test_decode_steps_equal_full_recompute(kind, shared):
    model = make_model(("causal", kind))
    text, image = random_inputs(4)
    given = 5  # image tokens in the prefix
    if shared:  # rows 0-1 and rows 2-3 share their caption and first image tokens
        text[1], text[3] = text[0].clone(), text[2].clone()
        image[1, :given], image[3, :given] = image[0, :given].clone(), image[2, :given].clone()
    ids = model.stream_ids(text, image)
    P = T + 1 + given
    with torch.no_grad():
        _, logits_image = model(text, image)
        first = ids[::2, :P] if shared else ids[:, :P]
        cache = model.new_cache(len(first), room=P)
        model.forward_stream(first, 0, cache)
        step = DecodeStep(model, torch.float32, cache, rows=4)
        stepped = torch.stack([step(ids[:, p], p) for p in range(P, T + N)], 1)  # (4, T+N-P, V)
    torch.testing.assert_close(stepped, logits_image[:, given + 1 :], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_later_tokens_never_change_earlier_logits(kind):
    model = make_model(("causal", kind))
    text, image = random_inputs(1)
    with torch.no_grad():
        base_text, base_image = model(text, image)
        for j in [0, 5, N - 2]:
            other = image.clone()
            other[:, j] = (other[:, j] + 1) % IMAGE_VOCAB
            _, logits = model(text, other)
            assert torch.equal(
                logits[:, : j + 1], base_image[:, : j + 1]
            )  # token j is fed at T+j+1
            assert not torch.allclose(logits, base_image)
        other = text.clone()
        other[:, 2] = 7
        logits_text, logits_image = model(other, image)
        assert torch.equal(logits_text[:, :2], base_text[:, :2])
        assert not torch.allclose(logits_image, base_image)


def test_loss_weights_and_all_pad_text():
    model = make_model()
    text, image = random_inputs(2)
    total, text_loss, image_loss = model.loss(text, image)
    logits_text, logits_image = model(text, image)
    keep = text[:, 1:] != PAD
    expected_text = torch.nn.functional.cross_entropy(logits_text[keep], text[:, 1:][keep])
    torch.testing.assert_close(text_loss, expected_text)
    torch.testing.assert_close(total, text_loss / 8 + 7 * image_loss / 8)
    total.backward()
    assert (
        model.text_emb.weight.grad[TEXT_VOCAB + T - 1].abs().sum() > 0
    )  # the last position's pad embedding

    total, text_loss, image_loss = model.loss(torch.full_like(text, PAD), image)
    assert text_loss.item() == 0.0 and torch.isfinite(image_loss) and torch.isfinite(total)


def test_config_round_trips_through_json_and_validates():
    config = make_model(("row", "column", "conv")).config
    assert TransformerConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    assert TransformerConfig(n_layer=3).attn_masks == ("causal", "causal", "conv")
    for bad in [dict(n_layer=2, attn_masks=("causal",)), dict(attn_masks=("causal",) * 7 + ("diag",)),
                dict(conv_kernel=4), dict(pad_id=-1), dict(n_head=3)]:  # fmt: skip
        with pytest.raises(ValueError):
            TransformerConfig(**bad)


def test_same_seed_same_tokens():
    model = make_model()
    text, _ = random_inputs(1)
    params = SamplingParams(temperature=1.5, top_k=10, top_p=0.95, guidance=2.0, seed=7)
    first = generate(model, text[0], 4, params)
    assert torch.equal(first, generate(model, text[0], 4, params))
    assert not torch.equal(first, generate(model, text[0], 4, dataclasses.replace(params, seed=8)))
    assert first.shape == (4, G, G) and first.min() >= 0 and first.max() < IMAGE_VOCAB


@pytest.mark.parametrize(
    "params", [SamplingParams(top_k=1, seed=3), SamplingParams(top_p=1e-6, temperature=3)]
)
def test_greedy_equals_argmax_of_full_recompute(params):
    model = make_model(("row", "conv"))
    text, image = random_inputs(2)
    expected = greedy_reference(model, text, image, range(N))
    assert torch.equal(generate(model, text, 2, params), expected)
    assert torch.equal(generate(model, text[:1], 3, params), expected[:1].expand(3, G, G))


def test_guidance(monkeypatch):
    model = make_model(("column", "causal"), scale=10.0)
    text, image = random_inputs(1)
    batch_sizes = []

    def recording_step(step, ids, *args):
        batch_sizes.append(len(ids))
        return DecodeStep.__call__(step, ids, *args)

    with monkeypatch.context() as patch:
        patch.setattr(
            sampling,
            "DecodeStep",
            type("RecordingStep", (DecodeStep,), {"__call__": recording_step}),
        )
        generate(model, text, 3, SamplingParams(guidance=1.0))
        assert max(batch_sizes) == 3  # scale 1 runs no unconditional rows
        generate(model, text, 3, SamplingParams(guidance=1.01))
        assert max(batch_sizes) == 6
    unguided = greedy_reference(model, text, image, range(N))
    for scale in [1.5, 3.0]:
        greedy = greedy_reference(model, text, image, range(N), guidance=scale)
        assert torch.equal(
            generate(model, text, 1, SamplingParams(top_k=1, guidance=scale)), greedy
        )
        assert not torch.equal(greedy, unguided)


def test_completion_resamples_only_the_rectangle():
    model = make_model(("causal", "row"), scale=10.0)
    text, image = random_inputs(1)
    r, c = 1, 2
    inside = torch.zeros(G, G, dtype=torch.bool)
    inside[r:, c:] = True
    out = generate(
        model, text, 5, SamplingParams(temperature=2.0, seed=1), image=image, region=(r, c)
    )
    assert torch.equal(out[:, ~inside], image.view(G, G)[~inside].expand(5, -1))
    assert (out[:, inside] != image.view(G, G)[inside]).any()

    cells = inside.flatten().nonzero().flatten().tolist()
    expected = greedy_reference(model, text, image, cells)
    greedy = generate(
        model, text, 1, SamplingParams(top_k=1), image=image.view(1, G, G), region=(r, c)
    )
    assert torch.equal(greedy, expected)


def test_stream_fills_rows_progressively_and_ends_with_generate():
    model = make_model()
    text, image = random_inputs(1)
    model.train()
    params = SamplingParams(seed=5, guidance=1.5)
    grids = list(stream(model, text[0], 2, params))
    assert model.training  # sampling ran in eval mode and restored the mode
    model.eval()
    assert len(grids) == G
    for row, grid in enumerate(grids):
        assert grid.shape == (2, G, G)
        assert (grid[:, : row + 1] >= 0).all() and (grid[:, row + 1 :] == -1).all()
        assert torch.equal(grid[:, : row + 1], grids[-1][:, : row + 1])
    assert torch.equal(grids[-1], generate(model, text[0], 2, params))

    grids = list(stream(model, text[0], 2, params, image=image[0], region=(2, 1)))
    assert len(grids) == G - 2
    assert (grids[0][:, 3, 1:] == -1).all() and (grids[0][:, 3, :1] >= 0).all()
    assert torch.equal(
        grids[-1], generate(model, text[0], 2, params, image=image[0], region=(2, 1))
    )


def test_bfloat16_autocast():
    model = make_model()
    text, _ = random_inputs(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.new_cache(2).dtype == torch.bfloat16
        out = generate(model, text, 2, SamplingParams(guidance=2.0, top_k=5))
    assert out.shape == (2, G, G) and out.min() >= 0 and out.max() < IMAGE_VOCAB


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(params=dict(temperature=0.0)),
        dict(params=dict(temperature=float("nan"))),
        dict(params=dict(top_k=-1)),
        dict(params=dict(top_k=2.5)),
        dict(params=dict(top_p=0.0)),
        dict(params=dict(top_p=1.5)),
        dict(params=dict(guidance=0.5)),
        dict(params=dict(guidance=float("nan"))),
        dict(n=0),
        dict(text=torch.zeros(T + 1, dtype=torch.long)),
        dict(text=torch.zeros(2, T, dtype=torch.long)),
        dict(text=torch.full((T,), TEXT_VOCAB)),
        dict(image=torch.zeros(N, dtype=torch.long)),
        dict(region=(0, 0)),
        dict(image=torch.zeros(N + 1, dtype=torch.long), region=(0, 0)),
        dict(image=torch.full((N,), IMAGE_VOCAB), region=(0, 0)),
        dict(image=torch.zeros(G, G, dtype=torch.long), region=(G, 0)),
        dict(image=torch.zeros(G, G, dtype=torch.long), region=(0, -1)),
        dict(image=torch.zeros(G, G, dtype=torch.long), region=(1,)),
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    model = make_model()
    args = dict(text=torch.ones(T, dtype=torch.long), n=3, image=None, region=None) | kwargs
    with pytest.raises(ValueError):
        params = SamplingParams(**args.pop("params", {}))
        stream(model, args.pop("text"), args.pop("n"), params, **args)


def test_attention_on_a_cpu_runs_in_fp32_under_bf16_autocast():
    """bf16 activations in and out, the attention itself in fp32 (faster there than PyTorch's bf16 kernel)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8).bfloat16().requires_grad_() for _ in range(3))
    mask = torch.ones(10, 10, dtype=torch.bool).tril()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(q, k, v, mask, 0.0)
    exact = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask
    )
    assert y.dtype == torch.bfloat16 and torch.equal(y, exact.bfloat16())
    y.float().sum().backward()
    assert all(t.grad.dtype == torch.bfloat16 and t.grad.abs().sum() > 0 for t in (q, k, v))


# ------------------------------------------------------------------ the second edition's panel order


def test_the_panel_order_puts_every_second_edition_completion_last():
    assert torch.equal(token_order("raster", 12), torch.arange(144))
    order = token_order("panels", 12)
    assert sorted(order.tolist()) == list(range(144))
    assert torch.equal(order[:72], torch.arange(72))  # the top half first, in raster order
    for kind in LAYOUTS:  # a pair's bottom half, panel D, panel 9: each the end of the stream
        r, c = completed_region(kind, 12)
        rectangle = {row * 12 + col for row in range(r, 12) for col in range(c, 12)}
        assert set(order[-len(rectangle) :].tolist()) == rectangle, kind
        first = 144 - len(rectangle)  # one update per 12 positions, from the run holding the first
        assert stream_length(make_model(grid=12, order="panels"), (r, c)) == 12 - first // 12
    with pytest.raises(ValueError, match="divisible by 6"):
        make_model(grid=8, order="panels")
    with pytest.raises(ValueError, match="unknown token order"):
        make_model(order="spiral")


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_panel_order_masks_and_cache_follow_the_cells(kind):
    model = make_model(("causal", kind), grid=6, order="panels")
    order = token_order("panels", 6).tolist()
    assert torch.equal(build_mask(kind, T, 6, 3, "panels"), brute_force_mask(kind, T, 6, 3, order))
    text, image = random_inputs(3, grid=6)
    ids = model.stream_ids(text, image)
    assert torch.equal(ids[:, T + 1 :], image[:, order[:-1]])
    with torch.no_grad():
        _, logits_image = model(text, image)  # (3, 36, V), in raster order
        P = T + 1 + 10
        cache = model.new_cache(3, room=P)
        model.forward_stream(ids[:, :P], 0, cache)
        step = DecodeStep(model, torch.float32, cache, rows=3)
        stepped = torch.stack([step(ids[:, p], p) for p in range(P, T + 36)], 1)
        # position T+j predicts the token of cell order[j], and changing a later one changes nothing before
        torch.testing.assert_close(stepped, logits_image[:, order[11:]], atol=1e-5, rtol=0)
        later = image.clone()
        later[:, order[20]] = (later[:, order[20]] + 1) % IMAGE_VOCAB
        assert torch.equal(model(text, later)[1][:, order[:21]], logits_image[:, order[:21]])


def test_panel_order_sampling_and_completion_follow_the_stream():
    model = make_model(("causal", "causal"), scale=10.0, grid=6, order="panels")
    order = token_order("panels", 6).tolist()
    text, image = random_inputs(1, grid=6)
    assert torch.equal(
        generate(model, text, 1, SamplingParams(top_k=1)),
        greedy_reference(model, text, image, order),
    )
    r, c = completed_region("analogy", 6)  # panel D: the last 9 cells of the stream
    inside = [j for j in order if j // 6 >= r and j % 6 >= c]
    params = SamplingParams(top_k=1, guidance=1.5)
    grids = list(stream(model, text[0], 2, params, image=image[0], region=(r, c)))
    assert len(grids) == stream_length(model, (r, c)) == 2
    given = image.view(6, 6)
    outside = torch.ones(6, 6, dtype=torch.bool)
    outside[r:, c:] = False
    for g in grids:  # the given cells from the start, the rectangle filled in stream order
        assert torch.equal(g[:, outside], given[outside].expand(2, -1))
    assert (grids[0].flatten(1)[:, inside[:3]] >= 0).all() and (
        grids[0].flatten(1)[:, inside[3:]] == -1
    ).all()
    expected = greedy_reference(model, text, image, inside, guidance=1.5)
    assert torch.equal(grids[-1], expected.expand(2, 6, 6))
