"""A laptop-sized DALL·E: a discrete VAE, a transformer and a contrastive reranker.

    from dalle_core import Dalle
    best = Dalle().generate("two red circles above a blue square")

`Dalle` (and what it returns) loads torch, so it is imported when first asked for: the
settings and their limits can be read without it.
"""

from .settings import DEFAULT_CHECKPOINT, DEFAULTS, MAX_CANDIDATES, Settings

__all__ = [
    "DEFAULTS",
    "DEFAULT_CHECKPOINT",
    "MAX_CANDIDATES",
    "CheckpointError",
    "Dalle",
    "Part",
    "Progress",
    "Result",
    "Settings",
]
_LAZY = {
    "Dalle": "dalle",
    "Part": "dalle",
    "Progress": "dalle",
    "Result": "dalle",
    "CheckpointError": "checkpoint",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
