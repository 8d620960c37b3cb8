"""Scenes per second of the shapes world (sampling + anti-aliased rendering) on one core, and the evaluator."""
import torch
from common import median_seconds, record

from dalle_core.judge import parse
from dalle_core.world import sample


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for size in (64, 128):
        n = 2000
        t = median_seconds(lambda: [sample(i, size) for i in range(n)], repeat=3)
        rows.append({"what": "sample + render", "size": size, "per_s": n / t, "target_per_s": 2000 if size == 64 else "-"})
    images = [sample(i).image for i in range(200)]
    t = median_seconds(lambda: [parse(im) for im in images], repeat=3)
    rows.append({"what": "evaluator parse", "size": 64, "per_s": 200 / t, "target_per_s": "-"})
    record("world", rows, "Scenes per second on one core (median of 3 runs of 2,000 scenes).")


if __name__ == "__main__":
    main()
