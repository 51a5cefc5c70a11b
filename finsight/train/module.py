"""The LightningModule around a Hugging Face sequence classifier, with FinBERT's recipe.

Options from the FinBERT paper (Araci 2019): discriminative learning rates (each lower
layer gets ``lr * layer_lr_decay``), gradual unfreezing (top down, one more encoder layer
every third of an epoch) and a class-weighted loss. Epoch metrics (train and validation
loss, accuracy, macro-F1) are computed here from every batch, logged for the loggers and
kept in ``history``, which travels in the checkpoint so a resumed run keeps it.
"""

from __future__ import annotations

import re

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from finsight.config import TrainSettings
from finsight.metrics import accuracy, macro_f1

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
UNFREEZE_STEPS_PER_EPOCH = 3  # FinBERT: the next layer thaws after a third of an epoch


def layer_depth(name: str, n_layers: int, base_prefix: str) -> int:
    """0 for the head and top, ``n_layers - i`` for encoder layer i, ``n_layers + 1`` for embeddings."""
    if not name.startswith(f"{base_prefix}."):
        return 0
    if "embeddings" in name:
        return n_layers + 1
    match = _LAYER.search(name)
    return n_layers - int(match.group(1)) if match else 0


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or "norm." in name


class SentimentClassifier(pl.LightningModule):
    def __init__(self, model, *, train_settings: TrainSettings, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.cfg = train_settings
        self.n_classes = model.config.num_labels
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        self.depths = {name: layer_depth(name, self.n_layers, model.base_model_prefix)
                       for name, _ in model.named_parameters()}
        self.history: list[dict] = []
        self._thawed: int | None = None
        self._reset_epoch()

    # ------------------------------------------------------------- steps

    def _reset_epoch(self) -> None:
        self._train = {"loss": 0.0, "n": 0, "preds": [], "targets": []}
        self._val = {"loss": [], "preds": [], "targets": []}

    def forward(self, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return self.model(**inputs).logits.float()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"], weight=self.class_weights)
        n = len(batch["labels"])
        self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        # Epochs count from 1 everywhere (tables, metrics.json, checkpoint names, MLflow); without
        # this Lightning adds its own 0-based "epoch" to every logged step.
        self.log("epoch", float(self.current_epoch + 1), on_step=True, on_epoch=False, batch_size=n)
        self._train["loss"] += float(loss.detach()) * n
        self._train["n"] += n
        self._train["preds"].append(logits.detach().argmax(-1).cpu())
        self._train["targets"].append(batch["labels"].cpu())
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch)
        # Per-row loss, unweighted: validation loss is comparable across loss options.
        self._val["loss"].append(F.cross_entropy(logits, batch["labels"], reduction="none").cpu())
        self._val["preds"].append(logits.argmax(-1).cpu())
        self._val["targets"].append(batch["labels"].cpu())

    def on_train_epoch_start(self) -> None:
        self._train = {"loss": 0.0, "n": 0, "preds": [], "targets": []}

    def on_validation_epoch_start(self) -> None:
        self._val = {"loss": [], "preds": [], "targets": []}

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val["preds"]:
            return
        loss, preds, targets = (self._gather(torch.cat(self._val[k])) for k in ("loss", "preds", "targets"))
        row = {"epoch": self.current_epoch + 1}
        if self._train["n"]:
            t_preds, t_targets = (self._gather(torch.cat(self._train[k])) for k in ("preds", "targets"))
            t_loss, t_n = self._gather(torch.tensor([self._train["loss"], self._train["n"]],
                                                    dtype=torch.float64)).reshape(-1, 2).sum(axis=0)
            row |= {"train_loss": float(t_loss / t_n),
                    "train_accuracy": accuracy(t_targets, t_preds),
                    "train_macro_f1": macro_f1(t_targets, t_preds, self.n_classes)}
        row |= {"val_loss": float(loss.mean()), "val_accuracy": accuracy(targets, preds),
                "val_macro_f1": macro_f1(targets, preds, self.n_classes)}
        for key, value in row.items():
            # "epoch" too: Lightning would otherwise log its own 0-based epoch beside these.
            self.log(key, float(value), prog_bar=key in ("val_loss", "val_macro_f1"), sync_dist=False)
        if self.trainer.training or self.trainer.state.fn == "fit":
            self.history.append(row)

    def _gather(self, values: torch.Tensor) -> np.ndarray:
        """All ranks' values (DDP pads the last batch, which is negligible for these metrics)."""
        if self.trainer.world_size > 1:
            values = self.all_gather(values.to(self.device)).reshape(-1).cpu()
        return values.numpy()

    # ------------------------------------------------------------- unfreezing

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if not self.cfg.gradual_unfreeze:
            return
        per_epoch = max(1, self.trainer.num_training_batches)
        stage = (self.current_epoch * UNFREEZE_STEPS_PER_EPOCH
                 + batch_idx * UNFREEZE_STEPS_PER_EPOCH // per_epoch)
        self.thaw(stage + 1)

    def thaw(self, depth: int) -> None:
        """Train parameters down to ``depth`` (0 head, 1 top layer, ...); the rest stay fixed."""
        self._thawed = depth

    def on_before_optimizer_step(self, optimizer) -> None:
        # Frozen layers are held by dropping their gradients rather than by requires_grad:
        # DDP builds its gradient buckets once, so flipping requires_grad later would leave
        # thawed layers unsynchronised across devices.
        if self._thawed is None:
            return
        for name, param in self.model.named_parameters():
            if self.depths[name] > self._thawed:
                param.grad = None

    # ------------------------------------------------------------- optimisation

    def configure_optimizers(self):
        groups: dict[tuple[int, bool], list] = {}
        for name, param in self.model.named_parameters():
            groups.setdefault((self.depths[name], _no_decay(name)), []).append(param)
        lr, decay = self.cfg.learning_rate, self.cfg.layer_lr_decay
        param_groups = [{"params": params, "lr": lr * decay ** depth,
                         "weight_decay": 0.0 if no_decay else self.cfg.weight_decay}
                        for (depth, no_decay), params in sorted(groups.items())]
        optimizer = torch.optim.AdamW(param_groups, lr=lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.cfg.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------- checkpoint state

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["finsight_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("finsight_history", []))
