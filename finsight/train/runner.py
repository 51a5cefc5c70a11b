"""`finsight train`: fine-tune on a `prep` output dir and write a self-describing model dir.

Layout of a run directory ``<out>/``::

    model/          save_pretrained model + tokenizer + finsight.json (what every later command loads)
    metrics.json    per-epoch history, best validation metrics, run ids
    config.yaml     the resolved configuration
    checkpoints/    Lightning checkpoints (best, last) and run.json, for --resume
    .finsight.lock  held while a training writes here: a second one into the same dir is refused
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsight.artifacts import DATA_CARD
from finsight.errors import ConfigError
from finsight.paths import default_path, safe_name
from finsight.results import TrainResult
from finsight.quiet import quiet
from finsight.train.noise import QUIET_LOGGERS, QUIET_WARNINGS

if TYPE_CHECKING:
    from finsight.config import Settings

CHECKPOINTS = "checkpoints"
LOCK_FILE = ".finsight.lock"
MONITOR = "val_macro_f1"


@dataclass
class RunPaths:
    name: str
    out: Path

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def state(self) -> Path:
        return self.checkpoints / "run.json"


def run_paths(settings: Settings, *, resume: bool) -> RunPaths:
    """The run name and output dir; refuses to overwrite a run or to resume nothing."""
    cfg = settings.train
    if resume and cfg.out is None and cfg.run_name is None:
        raise ConfigError("--resume needs the run to continue: pass its --out DIR "
                          "(or set train.run_name)")
    name = cfg.run_name or (Path(cfg.out).name if cfg.out else _default_name(settings.model.name_or_path))
    paths = RunPaths(name=name, out=Path(cfg.out) if cfg.out else default_path(settings.workdir, "run", name))
    if resume and not paths.last.is_file():
        raise ConfigError(f"nothing to resume: {paths.last} not found; train without --resume first")
    if not resume and (paths.last.is_file() or (paths.out / "model").exists()):
        raise ConfigError(f"{paths.out} already holds a training run; pass --resume to continue it, "
                          "or choose another --out")
    from finsight.io import check_writable

    check_writable(paths.out)
    return paths


def _default_name(model: str) -> str:
    parts = [p for p in re.split(r"[\\/]", model) if p]
    stem = parts[-1] if parts else "model"
    if stem == "model" and len(parts) > 1:
        stem = parts[-2]
    return f"{safe_name(stem)}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed on GPUs that support it, else 16-mixed; 32-true on CPU."""
    if precision in ("32", "32-true"):
        return "32-true"
    if precision != "auto":
        return precision
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(value: str) -> Any:
    return int(value) if value.strip().isdigit() else value


def fit(data_dir: str | Path | None, settings: Settings, *, resume: bool = False, progress: bool = False,
        verbose: bool = False) -> TrainResult | None:
    """Fine-tune ``settings.model.name_or_path`` on ``data_dir`` (a prep dir); returns the run's metrics.

    Under DDP every worker runs this; only global rank 0 writes outputs and returns them
    (the others return None).
    """
    from finsight.train.data import check_data_dir, read_split

    data_path = check_data_dir(data_dir).resolve()
    frames = {split: read_split(data_path / f"{split}.parquet") for split in ("train", "validation")}
    paths = run_paths(settings, resume=resume)
    with run_lock(paths.out):
        paths = run_paths(settings, resume=resume)  # again: a run may have finished meanwhile
        with quiet(*QUIET_LOGGERS, warnings_matching=QUIET_WARNINGS, progress_bars=True,
                   enabled=not verbose):
            record = _Run(settings, paths, data_path, frames, resume=resume, progress=progress).execute()
    return TrainResult.from_record(record) if record is not None else None


@contextlib.contextmanager
def run_lock(out: Path):
    """One training at a time per run dir; a run that trained nothing leaves nothing behind.

    Only the first process of a (multi-GPU, multi-node) run takes the lock: DDP workers re-run
    the command with the same --out.
    """
    if not _first_process():
        yield
        return
    from filelock import FileLock, Timeout

    created = next((p for p in (out, out / CHECKPOINTS) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from finsight.io import output_error

        raise output_error(out, exc) from None
    lock = FileLock(out / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"another finsight train is writing to {out} (it holds {out / LOCK_FILE}); "
                          "wait for it to finish or pass another --out") from None
    try:
        yield
    except BaseException:
        if created is not None and not (out / CHECKPOINTS / "last.ckpt").exists():
            shutil.rmtree(created, ignore_errors=True)  # nothing was trained
            if created != out:
                (out / LOCK_FILE).unlink(missing_ok=True)
        raise
    finally:
        lock.release()


def _first_process() -> bool:
    env = os.environ
    if "RANK" in env:  # torchrun / SLURM-style launchers
        return env["RANK"] == "0"
    return env.get("LOCAL_RANK", "0") == "0" and env.get("NODE_RANK", "0") == "0"


class _Run:
    """One training run: build, fit, pick the best checkpoint, write and track the outputs."""

    def __init__(self, settings: Settings, paths: RunPaths, data_path: Path, frames: dict, *, resume: bool,
                 progress: bool):
        self.settings, self.paths, self.data_path, self.frames = settings, paths, data_path, frames
        self.resume, self.progress = resume, progress
        self.started = time.time()
        # Read before training: a card that cannot be read fails now, not after the last epoch.
        self.cleaning = _card_cleaning(data_path / DATA_CARD)

    def execute(self) -> dict[str, Any] | None:
        import lightning.pytorch as pl

        from finsight.train.data import SentimentDataModule
        from finsight.train.model import load_start
        from finsight.train.module import SentimentClassifier

        cfg = self.settings.train
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
        start = load_start(self.settings.model, train_texts=self.frames["train"]["text"].tolist(),
                           tiny_dir=self.paths.checkpoints / "tiny-base", seed=cfg.seed)
        _check_length(start, self.settings.model.max_length)
        start.tokenizer.model_max_length = self.settings.model.max_length
        datamodule = SentimentDataModule(self.frames, start.tokenizer, start.model.config.label2id,
                                         train_settings=cfg, max_length=self.settings.model.max_length)
        weights = datamodule.class_weights() if cfg.class_weighted_loss else None
        start.model.train()  # from_pretrained returns eval mode (dropout off)
        module = SentimentClassifier(start.model, train_settings=cfg, class_weights=weights)
        logger = self._open_tracking(start)
        trainer, checkpoint = self._trainer(logger, datamodule.steps_per_epoch())
        # A tracking server makes mlflow print the run's URL on stdout at the end of fit; --json
        # needs stdout for JSON alone, so that chatter goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            trainer.fit(module, datamodule=datamodule,
                        ckpt_path=str(self.paths.last) if self.resume else None)
        if not trainer.is_global_zero:
            return None
        best = self._load_best(module, checkpoint)
        result = self._result(start, module, trainer, best, logger)
        self._write(start, module, result)
        if logger is not None:
            self._track_outputs(logger, result)
        return result

    # ------------------------------------------------------------- setup

    def _open_tracking(self, start):
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank != 0:
            return None  # DDP workers re-run this command; only rank 0 tracks and writes
        if not self.settings.registry.track_runs:
            self._save_state(None)
            return None
        from finsight.config import settings_as_dict
        from finsight.io import read_json
        from finsight.registry import tracking

        previous = read_json(self.paths.state).get("mlflow_run_id") if self.resume else None
        logger = tracking.open_run(self.settings, run_name=self.paths.name, run_id=previous)
        params = tracking.flat_params(settings_as_dict(self.settings))
        params |= {"data.dir": str(self.data_path), "model.base": start.base_model, "model.head": start.head,
                   "model.labels": ",".join(start.labels),
                   "data.train_rows": str(len(self.frames["train"])),
                   "data.validation_rows": str(len(self.frames["validation"]))}
        tracking.log_params(logger, params)
        self._save_state(logger.run_id)
        return logger

    def _save_state(self, run_id: str | None) -> None:
        from finsight.io import atomic_write_json

        atomic_write_json(self.paths.state, {"run_name": self.paths.name, "mlflow_run_id": run_id})

    def _trainer(self, logger, steps_per_epoch: int):
        import lightning.pytorch as pl
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        cfg = self.settings.train
        # {epoch} is the 1-based "epoch" the module logs (module.py), as in tables and metrics.
        checkpoint = ModelCheckpoint(dirpath=self.paths.checkpoints, filename="best-epoch{epoch:.0f}",
                                     auto_insert_metric_name=False, monitor=MONITOR, mode="max",
                                     save_top_k=1)
        # Lightning 2.6 writes save_last only when the best improves; --resume needs every epoch.
        last = ModelCheckpoint(dirpath=self.paths.checkpoints, filename=self.paths.last.stem,
                               monitor=None, save_top_k=1, enable_version_counter=False)
        callbacks = [checkpoint, last]
        if cfg.early_stopping_patience > 0:
            callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.early_stopping_patience))
        if self.progress:
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar(leave=True, console_kwargs={"stderr": True}))
        try:
            trainer = pl.Trainer(
                max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices),
                strategy=cfg.strategy, num_nodes=cfg.num_nodes,
                precision=resolve_precision(cfg.precision, cfg.accelerator),
                accumulate_grad_batches=cfg.accumulate_grad_batches,
                gradient_clip_val=cfg.gradient_clip_val, logger=logger if logger is not None else False,
                callbacks=callbacks, enable_model_summary=False, enable_progress_bar=self.progress,
                num_sanity_val_steps=0, default_root_dir=str(self.paths.out),
                log_every_n_steps=max(1, min(50, steps_per_epoch // cfg.accumulate_grad_batches)))
        except (ValueError, RuntimeError) as exc:  # Lightning's MisconfigurationException is a ValueError
            raise ConfigError(f"Lightning rejected the train settings (train.accelerator="
                              f"{cfg.accelerator}, devices={cfg.devices}, strategy={cfg.strategy}, "
                              f"precision={cfg.precision}): {exc}") from None
        return trainer, checkpoint

    # ------------------------------------------------------------- results

    def _load_best(self, module, checkpoint) -> dict:
        """Put the best epoch's weights into ``module``; return that epoch's history row."""
        import torch

        path = checkpoint.best_model_path or str(self.paths.last)
        state = torch.load(path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        epoch = int(state["epoch"]) + 1
        rows = [row for row in module.history if row["epoch"] == epoch]
        return rows[-1] if rows else (module.history[-1] if module.history else {"epoch": epoch})

    def _result(self, start, module, trainer, best: dict, logger) -> dict[str, Any]:
        history = module.history
        stopped = any(getattr(cb, "stopped_epoch", 0) for cb in trainer.callbacks)
        return {
            "run_name": self.paths.name,
            "out": str(self.paths.out.resolve()),
            "model_dir": str((self.paths.out / "model").resolve()),
            "data_dir": str(self.data_path),
            "base_model": start.base_model,
            "head": start.head,
            "labels": start.labels,
            "max_length": self.settings.model.max_length,
            "precision": trainer.precision,
            "epochs_run": len(history),
            "stopped_early": bool(stopped),
            "best_epoch": best.get("epoch"),
            "best_val": {k.removeprefix("val_"): v for k, v in best.items() if k.startswith("val_")},
            "history": history,
            "mlflow_run_id": logger.run_id if logger is not None else None,
            "tracking_uri": self.settings.tracking_uri() if logger is not None else None,
            "duration_s": round(time.time() - self.started, 2),
        }

    def _write(self, start, module, result: dict) -> None:
        import yaml

        from finsight.artifacts import file_hashes, write_manifest
        from finsight.config import settings_as_dict
        from finsight.io import atomic_dir, atomic_write_json, atomic_write_text, sha256_file

        card = self.data_path / DATA_CARD
        with atomic_dir(self.paths.out / "model") as tmp:
            module.model.save_pretrained(tmp)
            start.tokenizer.save_pretrained(tmp)
            write_manifest(tmp, {
                "kind": "model", "format": "hf", "labels": result["labels"],
                "max_length": result["max_length"], "base_model": result["base_model"],
                "data_card_sha256": sha256_file(card) if card.is_file() else None,
                "cleaning": self.cleaning,
                "data_dir": result["data_dir"], "best_val": result["best_val"],
                "best_epoch": result["best_epoch"], "mlflow_run_id": result["mlflow_run_id"],
                "files": file_hashes(tmp)})
        atomic_write_json(self.paths.out / "metrics.json", result)
        atomic_write_text(self.paths.out / "config.yaml",
                          yaml.safe_dump(settings_as_dict(self.settings), sort_keys=False))

    def _track_outputs(self, logger, result: dict) -> None:
        from finsight.registry import tracking

        best = {f"best_val_{k}": float(v) for k, v in result["best_val"].items()}
        logger.log_metrics(best | {"best_epoch": float(result["best_epoch"] or 0)})
        tracking.set_tags(logger, {"finsight.out": result["out"], "finsight.base_model": result["base_model"]})
        card = self.data_path / DATA_CARD
        items = [(card, "data")] if card.is_file() else []
        items += [(self.paths.out / "metrics.json", None), (self.paths.out / "config.yaml", None),
                  (self.paths.out / "model", "model")]
        tracking.log_artifacts(logger, items)


def _card_cleaning(card: Path) -> dict[str, bool] | None:
    """The cleaning recipe prep recorded in the data card, as finsight.json records it; None when
    the card (or its record) is absent: inference then says it assumes the default."""
    from finsight.data.recipe import CleaningRecipe
    from finsight.errors import DataError
    from finsight.io import read_json

    recorded = read_json(card).get("cleaning")
    if recorded is None:
        return None
    try:
        return CleaningRecipe.from_dict(recorded).as_dict()
    except ValueError as exc:
        raise DataError(f"{card}: cleaning: {exc}; re-run finsight prep") from None


def _check_length(start, max_length: int) -> None:
    from finsight.errors import ModelError

    limit = getattr(start.model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ModelError(f"model.max_length={max_length} exceeds the model's {limit} positions; "
                         f"set model.max_length <= {limit}")
