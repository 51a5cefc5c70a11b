"""Seeded, label-stratified split with largest-remainder allocation per label.

Each label's rows are shuffled and cut into split counts proportional to the split sizes,
so every split's label proportions are as close to the input's as whole rows allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def allocate(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` rows by ``fractions`` (summing to 1): floors, then the largest remainders.

    Ties go to the split listed first.
    """
    # rounded: 30 * 0.1 is 3.0000000000000004, 10 * 0.7 is 6.999999999999999
    quotas = {name: round(n * share, 9) for name, share in fractions.items()}
    counts = {name: int(q) for name, q in quotas.items()}
    order = sorted(quotas, key=lambda name: -(quotas[name] - counts[name]))
    for name in order[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def stratified_split(labels: "pd.Series", sizes: Mapping[str, float], *, seed: int,
                     rest: str = "train") -> "np.ndarray":
    """A split name per row: ``sizes`` gives the fraction of each named split, ``rest`` the rest."""
    import numpy as np

    fractions = {rest: 1.0 - sum(sizes.values()), **sizes}
    rng = np.random.default_rng(seed)
    values = labels.to_numpy()
    result = np.full(len(values), rest, dtype=object)
    for label in sorted(set(values)):
        rows = rng.permutation(np.flatnonzero(values == label))
        start = 0
        for name, count in allocate(len(rows), fractions).items():
            result[rows[start:start + count]] = name
            start += count
    return result
