"""Meta-train, meta-val and meta-test splits of a dataset's classes (or of its tasks).

The config keys `val_fraction` and `test_fraction` say what share of the classes each held-out
split takes; meta-train keeps the rest. Splits are disjoint and drawn from the job's seed. A
non-zero fraction takes at least the classes of one task (n_way); a fraction of 0 leaves its
split empty (with test_fraction 0 the final metrics come from meta-val).
"""

from __future__ import annotations

import numpy as np

from models.episodes import Split


class SplitError(ValueError):
    """Fractions that leave a split too few classes; `param` names the config key to change."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def held_out_sizes(
    n: int, val_fraction: float, test_fraction: float, min_size: int = 1, unit: str = "classes"
) -> tuple[int, int]:
    """How many of n groups go to meta-val and meta-test; meta-train keeps at least min_size."""
    n_val, n_test = (0 if f == 0 else max(min_size, round(f * n)) for f in (val_fraction, test_fraction))
    left = n - n_val - n_test
    if left < min_size:
        key = "val_fraction" if val_fraction > test_fraction else "test_fraction"
        raise SplitError(
            f"val_fraction {val_fraction:g} and test_fraction {test_fraction:g} of the dataset's {n} {unit} leave "
            f"{max(left, 0)} for meta-training, fewer than the {min_size} each non-empty split needs for "
            f"n_way-class tasks: lower n_way, val_fraction or test_fraction",
            key,
        )
    return n_val, n_test


def split_at_random(
    n: int, val_fraction: float, test_fraction: float, seed: int, min_size: int = 1, unit: str = "classes"
) -> dict[Split, list[int]]:
    """Disjoint train/val/test indices of n groups, drawn from the seed (test first, then val)."""
    n_val, n_test = held_out_sizes(n, val_fraction, test_fraction, min_size, unit)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def split_in_order(
    n: int, val_fraction: float, test_fraction: float, min_size: int = 1, unit: str = "classes"
) -> dict[Split, list[int]]:
    """Disjoint train/val/test indices in order: the first groups train, the last test."""
    n_val, n_test = held_out_sizes(n, val_fraction, test_fraction, min_size, unit)
    n_train = n - n_val - n_test
    return {
        "train": list(range(n_train)),
        "val": list(range(n_train, n_train + n_val)),
        "test": list(range(n_train + n_val, n)),
    }
