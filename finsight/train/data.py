"""The `prep` splits as tensors: reading, checking, tokenizing, length-grouped batching."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from finsight.errors import DataError
from finsight.labels import LABELS

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import TrainSettings

SPLITS = ("train", "validation", "test")
_PREP_HINT = "run `finsight prep INPUT` and pass its output dir to --data"


def check_data_dir(data_dir: str | Path | None, *, need: Sequence[str] = ("train", "validation")) -> Path:
    """The prep output dir, checked for the splits ``need``; a DataError says what is missing."""
    if data_dir is None:
        raise DataError(f"no training data given; {_PREP_HINT}")
    path = Path(data_dir)
    if not path.exists():
        raise DataError(f"data dir {path} not found; {_PREP_HINT}")
    if not path.is_dir():
        raise DataError(f"--data {path} is a file, not a `finsight prep` output dir; {_PREP_HINT}")
    for split in need:
        if not (path / f"{split}.parquet").is_file():
            fix = ("re-run `finsight prep` with data.val_size > 0" if split == "validation"
                   else _PREP_HINT)
            have = sorted(p.name for p in path.glob("*.parquet")) or ["no .parquet files"]
            raise DataError(f"data dir {path} has no {split} split ({split}.parquet; it has "
                            f"{', '.join(have)}); {fix}")
    return path


def read_split(path: str | Path, *, source: str | None = None) -> "pd.DataFrame":
    """A labeled Parquet split with columns text and label (canonical names), checked."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_parquet(path, columns=None)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: cannot read the Parquet split ({exc})") from None
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} column (it has {', '.join(frame.columns)}); "
                        f"{_PREP_HINT}")
    frame = frame[["text", "label"]].reset_index(drop=True)
    bad = ~frame["label"].isin(LABELS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source or path}: row {row + 1} has label {frame['label'][row]!r}, not one of "
                        f"{', '.join(LABELS)}; {_PREP_HINT} to canonicalise labels")
    if frame["text"].isna().any():
        row = int(np.flatnonzero(frame["text"].isna().to_numpy())[0])
        raise DataError(f"{source or path}: row {row + 1} has no text; {_PREP_HINT} to clean the data")
    if frame.empty:
        raise DataError(f"{source or path} has no rows; {_PREP_HINT}")
    return frame


@dataclass
class LabeledTokens(Dataset):
    """Token ids per text (unpadded, as :class:`finsight.model.Encoder` makes them) and targets."""

    input_ids: list[list[int]]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "labels": int(self.targets[i])}

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self))


def encode(tokenizer, frame: "pd.DataFrame", label2id: Mapping[str, int], max_length: int) -> LabeledTokens:
    """Tokenized the way every predictor tokenizes (one Encoder rule), so training sees what
    inference sees; single-segment text, so token types are left to the model's zeros."""
    from finsight.model.tokenizer import Encoder

    encoder = Encoder.from_transformers(tokenizer, max_length=max_length)
    encoded = encoder.encode(frame["text"].astype(str).tolist())
    return LabeledTokens(encoded.ids, frame["label"].map(label2id).to_numpy(dtype=np.int64))


class LengthGroupedSampler(Sampler[int]):
    """Random order, but each run of ``batch_size`` indices has texts of similar length.

    Shuffle, cut into mega-batches of 50 batches, sort each by length, then shuffle the
    batches: little padding, yet every epoch sees a different mix. Seeded per epoch, so a
    resumed run draws the same order as an uninterrupted one.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mega: int = 50):
        self.lengths, self.batch_size, self.seed, self.mega = lengths, batch_size, seed, mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.mega
        batches = []
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        for b in rng.permutation(len(batches)):
            yield from batches[b].tolist()


class SeededRandomSampler(Sampler[int]):
    """A plain shuffle seeded per epoch (reproducible across resume)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def _collator(tokenizer):
    """Pads each batch to its own longest text (dynamic padding) and builds the attention mask."""
    from transformers import DataCollatorWithPadding
    from transformers.utils import logging as hf_logging

    # tokenizer.pad on pre-tokenized ids is the point here; its "use __call__" advice is not.
    hf_logging.get_logger("transformers.tokenization_utils_base").setLevel(hf_logging.ERROR)
    return DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")


class SentimentDataModule(pl.LightningDataModule):
    """Train/validation loaders over the splits of a `finsight prep` output dir (from read_split).

    ``label2id`` is the model's own order (a checkpoint's head may not use canonical order).
    """

    def __init__(self, frames: Mapping[str, "pd.DataFrame"], tokenizer, label2id: Mapping[str, int], *,
                 train_settings: TrainSettings, max_length: int):
        super().__init__()
        self.frames, self.tokenizer, self.label2id = dict(frames), tokenizer, dict(label2id)
        self.cfg, self.max_length = train_settings, max_length
        self.encoded: dict[str, LabeledTokens] = {}
        self.collate = _collator(tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if not self.encoded:
            self.encoded = {split: encode(self.tokenizer, frame, self.label2id, self.max_length)
                            for split, frame in self.frames.items()}

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency in the training split, in model id order, mean 1."""
        counts = np.bincount(self.frames["train"]["label"].map(self.label2id), minlength=len(self.label2id))
        weights = len(self.frames["train"]) / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32)

    def train_dataloader(self) -> DataLoader:
        data = self.encoded["train"]
        sampler = (LengthGroupedSampler(data.lengths, self.cfg.batch_size, self.cfg.seed)
                   if self.cfg.group_by_length else SeededRandomSampler(len(data), self.cfg.seed))
        return DataLoader(data, batch_size=self.cfg.batch_size, sampler=sampler, collate_fn=self.collate,
                          num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        data = self.encoded["validation"]
        return DataLoader(data, batch_size=self.cfg.eval_batch_size, shuffle=False, collate_fn=self.collate,
                          num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.frames["train"]) / self.cfg.batch_size)
