"""Figures written as PNG: captioned grids of images, and line charts."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import enlarge


def grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    cols: int = 8,
    scale: int = 3,
) -> Image.Image:
    """A grid of uint8 (S, S, 3) images, enlarged `scale` times, each with its caption below."""
    s = images[0].shape[0] * scale
    font = ImageFont.load_default()
    width = max(12, s // 6)
    lines = [textwrap.wrap(c, width)[:4] for c in captions] if captions else [[] for _ in images]
    text_h = 11 * max((len(x) for x in lines), default=0) + (4 if captions else 0)
    cols = min(cols, len(images))
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (s + 4) + 4, rows * (s + text_h + 4) + 4), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    for i, img in enumerate(images):
        x, y = 4 + (i % cols) * (s + 4), 4 + (i // cols) * (s + text_h + 4)
        canvas.paste(enlarge(img, s), (x, y))
        for j, line in enumerate(lines[i]):
            draw.text((x, y + s + 2 + 11 * j), line, fill=(20, 20, 20), font=font)
    return canvas


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (480, 300),
) -> Image.Image:
    """A plain line chart of named (x, y) series, axes fitted to the data (y from 0 when all y >= 0)."""
    W, H, m = *size, 46
    points = [p for s in series.values() for p in s]
    if not points:
        raise ValueError("line_chart needs at least one point")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0 = 0.0 if min(ys) >= 0 else min(ys)
    y1 = max(ys) if max(ys) > y0 else y0 + 1

    def at(x: float, y: float) -> tuple[float, float]:
        return m + (x - x0) / (x1 - x0) * (W - 2 * m), H - m - (y - y0) / (y1 - y0) * (H - 2 * m)

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.line([(m, m), (m, H - m), (W - m, H - m)], fill="black")
    for v in (y0, (y0 + y1) / 2, y1):
        d.text((4, at(x0, v)[1] - 5), f"{v:.3g}", fill="black", font=font)
    for v in (x0, (x0 + x1) / 2, x1):
        d.text((at(v, y0)[0] - 12, H - m + 6), f"{v:.3g}", fill="black", font=font)
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        pts = [at(x, y) for x, y in s]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for x, y in pts if len(pts) <= 12 else []:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        d.text((W - m - 150, m - 30 + 12 * i), name, fill=c, font=font)
    d.text((W // 2 - 3 * len(x_label), H - 16), x_label, fill="black", font=font)
    d.text((m, 8), y_label, fill="black", font=font)
    return img


def bar_chart(rows: dict[str, dict[str, float | None]], x_label: str, bar: int = 7) -> Image.Image:
    """Horizontal bars in [0, 1]: one group per row name, one bar per series (None is written "n/a")."""
    names = list(dict.fromkeys(k for row in rows.values() for k in row))
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    font = ImageFont.load_default()
    left, right, top = 8 + 6 * max(len(r) for r in rows), 300, 24
    group = bar * len(names) + 6
    img = Image.new("RGB", (left + right + 40, top + group * len(rows) + 30), "white")
    d = ImageDraw.Draw(img)
    for j, name in enumerate(names):
        d.rectangle([left + 110 * j, 6, left + 110 * j + 8, 14], fill=colors[j % len(colors)])
        d.text((left + 110 * j + 12, 4), name, fill="black", font=font)
    for i, (row_name, row) in enumerate(rows.items()):
        y = top + group * i
        d.text((4, y + group / 2 - 7), row_name, fill="black", font=font)
        for j, name in enumerate(names):
            value, y0 = row.get(name), y + bar * j
            if value is None:
                d.text((left + 2, y0 - 2), "n/a", fill="gray", font=font)
            else:
                d.rectangle(
                    [left, y0, left + max(1, round(value * right)), y0 + bar - 2],
                    fill=colors[j % len(colors)],
                )
    bottom = top + group * len(rows)
    d.line([(left, top - 2), (left, bottom)], fill="black")
    for v in (0, 0.5, 1):
        d.text((left + v * right - 6, bottom + 2), f"{v:g}", fill="black", font=font)
    d.text((left + right // 2 - 3 * len(x_label), bottom + 14), x_label, fill="black", font=font)
    return img
