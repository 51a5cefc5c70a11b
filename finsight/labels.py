"""The canonical label schema: names, order, and remapping of source labels onto it."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
