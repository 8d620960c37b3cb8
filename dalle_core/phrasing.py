"""Paraphrase families of the second edition (``shared/spec/shapes-world-v2.md``, "Phrasing").

Training captions are the grammar's, rewritten by families drawn at random and composable (a
`Style`): a filler before the caption ("draw", "there is", ...), no article or "the" for "a", a
relative clause ("a circle that is red") or "colored" ("a red colored circle"), "with" or "next
to" joining two groups in either order, capitals and final punctuation. The tokenizer normalises the
last two away (`normalise.normalise`), so they reach the model as the plain caption.

The evaluation's `phrasing` category uses phrasings outside these families (`held_out_phrasing`):
other fillers, other conjunctions, and the color after the shape ("a circle in red").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .layouts import LayoutCaption, caption_of_layout
from .world import Expectation, Group, caption_of

FILLERS = (
    "an image of",
    "there is",
    "draw",
    "show",
    "a drawing of",
    "make",
)  # "there is" says "there are" too
CONJUNCTIONS = ("with", "next to")  # join two groups, in either order
EVAL_FILLERS = (
    "a picture of",
    "please draw",
    "generate",
    "an illustration of",
    "i would like",
    "can you draw",
    "paint",
    "render",
)
EVAL_CONJUNCTIONS = ("along with", "plus", "as well as", "together with")


@dataclass(frozen=True)
class Style:
    """One draw of the training families; the defaults say a caption exactly as the grammar does."""

    filler: str | None = None  # one of FILLERS
    article: str = "a"  # "a" (the grammar's a/an), "none" or "the"
    relative: bool = False  # a stated color in a relative clause: "a circle that is red"
    colored: bool = False  # a stated color as "red colored" (when not in a relative clause)
    conjunction: str = "and"  # "and", or one of CONJUNCTIONS between exactly two groups
    swap: bool = False  # two groups joined by a conjunction in the other order
    capitals: str = ""  # "", "first" (a capital first letter) or "all"
    end: str = ""  # "", "." or "!"


def draw_style(rng: random.Random) -> Style:
    """A style with each family applied with its own probability (about half of the captions keep the
    grammar's words)."""
    return Style(
        filler=rng.choice(FILLERS) if rng.random() < 0.25 else None,
        article=rng.choices(["a", "none", "the"], weights=[0.7, 0.15, 0.15])[0],
        relative=rng.random() < 0.1,
        colored=rng.random() < 0.1,
        conjunction=rng.choices(["and", *CONJUNCTIONS], weights=[0.6, 0.2, 0.2])[0],
        swap=rng.random() < 0.5,
        capitals=rng.choices(["", "first", "all"], weights=[0.8, 0.15, 0.05])[0],
        end=rng.choices(["", ".", "!"], weights=[0.8, 0.15, 0.05])[0],
    )


def _group(g: Group, style: Style) -> str:
    """One group in the style's words (its position, if stated, last)."""
    relative = style.relative and g.color
    color = None if relative else (f"{g.color} colored" if style.colored and g.color else g.color)
    text = caption_of(Expectation((replace(g, color=color, where=None),)))
    if relative:
        text += f" that {'is' if g.count == 1 else 'are'} {g.color}"
    head, rest = text.split(" ", 1)
    if head in ("a", "an") and style.article != "a":
        text = rest if style.article == "none" else f"the {rest}"
    return f"{text} {g.where}" if g.where else text


def _join(parts: list[str], e: Expectation, conjunction: str, swap: bool) -> str:
    """Groups' texts joined as the grammar does, or by `conjunction` when there are exactly two."""
    if e.relation:
        return f"{parts[0]} {e.relation} {parts[1]}"
    if len(parts) == 2 and conjunction != "and":
        first, second = parts[::-1] if swap else parts
        return f"{first} {conjunction} {second}"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _finish(text: str, style: Style, plural: bool, filler: bool = True) -> str:
    """The filler (if any and `filler`), capitals and final punctuation; `plural` says "there are"."""
    if style.filler and filler:
        text = f"{'there are' if style.filler == 'there is' and plural else style.filler} {text}"
    if style.capitals == "first":
        text = text[0].upper() + text[1:]
    elif style.capitals == "all":
        text = text.upper()
    return text + style.end


def _scene(e: Expectation, style: Style) -> str:
    text = _join([_group(g, style) for g in e.groups], e, style.conjunction, style.swap)
    return f"{text} on a {e.background} background" if e.background else text


def phrase(e: Expectation, style: Style) -> str:
    """A scene's caption in a style (`phrase(e, Style()) == caption_of(e)`)."""
    return _finish(_scene(e, style), style, plural=e.groups[0].count > 1)


def phrase_layout(c: LayoutCaption, style: Style) -> str:
    """A layout's caption in a style: a pair's top scene phrased as a scene; no filler before a pair whose
    caption is the transform alone ("the same mirrored on the bottom")."""
    if c.kind == "pair" and c.scene:
        text = (
            f"{_scene(c.scene, style)} on the top and {caption_of_layout(replace(c, scene=None))}"
        )
        return _finish(text, style, plural=c.scene.groups[0].count > 1)
    return _finish(caption_of_layout(c), style, plural=False, filler=c.kind != "pair")


def held_out_phrasing(e: Expectation, rng: random.Random) -> str:
    """`e` said in a phrasing that no training family makes: a filler of EVAL_FILLERS, two groups joined by
    one of EVAL_CONJUNCTIONS, or every stated color after its shape ("a circle in red")."""
    kinds = ["filler"]
    if not e.relation and len(e.groups) == 2:
        kinds.append("conjunction")
    if any(g.color for g in e.groups):
        kinds.append("color after")
    kind = rng.choice(kinds)
    if kind == "filler":
        return f"{rng.choice(EVAL_FILLERS)} {caption_of(e)}"
    if kind == "conjunction":
        return _join(
            [caption_of(Expectation((g,))) for g in e.groups],
            e,
            rng.choice(EVAL_CONJUNCTIONS),
            False,
        )
    parts = [
        caption_of(Expectation((replace(g, color=None, where=None),)))
        + (f" in {g.color}" if g.color else "")
        + (f" {g.where}" if g.where else "")
        for g in e.groups
    ]
    text = _join(parts, e, "and", False)
    return f"{text} on a {e.background} background" if e.background else text
