"""What the routes call: clean -> cache -> micro-batched predictor -> the shared score schema.

Scoring is ``finsight.predict.scores.score_records`` on the predictor's probabilities and, for
documents, ``finsight.predict.document.score_documents``: the same functions ``analyze`` uses,
with its empty/missing-text rule, so a text gets the same label here and in a scored file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from finsight.artifacts import read_manifest
from finsight.config import Settings
from finsight.data.recipe import CleaningRecipe, clean_text
from finsight.labels import LABELS
from finsight.predict.base import Predictor
from finsight.predict.scores import score_records
from finsight.serve.batching import MicroBatcher, ScoreCache
from finsight.serve.metrics import metrics
from finsight.serve.schemas import Cleaning, DocumentScore, ModelInfo, ModelRef, Probabilities, Score


def clean(texts: Sequence[str], recipe: CleaningRecipe) -> tuple[list[str], np.ndarray]:
    """``analyze``'s rule (finsight.data.clean.texts_to_score) for which texts cannot be scored,
    and every other text cleaned with the model's recipe: what the model scores, and the cache
    key, so two texts that clean to the same string share one entry and one model call."""
    from finsight.data.clean import texts_to_score

    texts, errors = texts_to_score(texts)
    return [text if error is not None else clean_text(text, recipe) for text, error in zip(texts, errors)], errors


def model_info(predictor: Predictor, settings: Settings) -> ModelInfo:
    """Name, version and export validation of what ``predictor`` runs.

    The version is a digest of the artifact's finsight.json (which, for an export, holds the
    sha256 of every file), else of its config.json and weight file sizes: a new model gives a
    new version, so cached scores of the old one are never served.
    """
    ref = str(settings.predict.model or settings.model.name_or_path)
    source = Path(str(predictor.source))
    manifest = read_manifest(source) if source.is_dir() else None
    digest = hashlib.sha256(str(predictor.name).encode())
    if manifest:
        digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    elif source.is_dir():
        for item in sorted(source.iterdir()):
            if item.is_file():
                digest.update(f"{item.name}:{item.stat().st_size}".encode())
                if item.name == "config.json":
                    digest.update(item.read_bytes())
    else:
        digest.update(str(predictor.source).encode())
    manifest = manifest or {}
    is_export = manifest.get("kind") == "export"
    name = ref if ref.startswith("models:/") or not Path(ref).exists() else \
        "/".join(Path(ref).resolve().parts[-2:])
    return ModelInfo(
        name=name, version=digest.hexdigest()[:12], ref=ref, backend=str(predictor.name),
        device=str(predictor.device), labels=list(LABELS), max_length=int(predictor.max_length),
        format=str(manifest.get("format")) if is_export else "hf",
        precision=manifest.get("precision") if is_export else None,
        validation=manifest.get("validation") if is_export else None,
        valid=bool(manifest.get("valid")) if is_export else None,
        cleaning=cleaning_info(predictor.cleaning))


def cleaning_info(recipe: CleaningRecipe) -> Cleaning:
    return Cleaning(provenance=recipe.provenance, recorded=not recipe.assumed, recipe=recipe.as_dict())


def _probabilities(record: dict) -> Probabilities:
    return Probabilities(**{label: record["probabilities"][label] for label in LABELS})


@dataclass
class Service:  # litestar evaluates these annotations (dependency injection): real imports above
    """One predictor behind a micro-batcher and a cache; routes get it by dependency injection."""

    predictor: Predictor
    settings: Settings
    info: ModelInfo
    batcher: MicroBatcher
    cache: ScoreCache
    ready: bool = False

    @classmethod
    def build(cls, predictor: Predictor, settings: Settings) -> "Service":
        """The service over ``predictor``, as built (its serving defaults were decided before it
        was loaded: :func:`finsight.serve.defaults.for_serving`)."""
        opts = settings.serve
        info = model_info(predictor, settings)
        m = metrics()

        def on_batch(texts: int, requests: int) -> None:
            m["batch_size"].observe(texts)
            m["batch_requests"].observe(requests)
            m["model_calls"].inc()

        batcher = MicroBatcher(predictor, max_batch_size=opts.max_batch_size, max_wait_ms=opts.max_wait_ms,
                               max_queue=opts.max_queue, on_batch=on_batch)
        m["queue_depth"].set_function(lambda: batcher.depth)
        return cls(predictor=predictor, settings=settings, info=info, batcher=batcher,
                   cache=ScoreCache(opts.cache_size, info.version))

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.info.name, version=self.info.version)

    async def warm_up(self) -> None:
        from finsight.samples import SAMPLE_SENTENCES

        n = self.settings.serve.warmup_texts
        if n:
            texts = list(SAMPLE_SENTENCES) * (n // len(SAMPLE_SENTENCES) + 1)
            # One text and a full batch: the shapes a live server sees first.
            await self.batcher.run(self.predictor.predict, texts[:1])
            await self.batcher.run(self.predictor.predict, texts[:n])
        self.ready = True

    async def score(self, texts: Sequence[str]) -> list[Score]:
        """Scores in input order; cached texts skip the model, the rest share micro-batches."""
        m = metrics()
        cleaned, errors = clean(texts, self.predictor.cleaning)
        rows: list[np.ndarray | None] = [None] * len(cleaned)
        cached = [False] * len(cleaned)
        todo: dict[str, list[int]] = {}
        for i, (text, error) in enumerate(zip(cleaned, errors)):
            if error is not None:
                continue
            row = self.cache.get(text)
            if row is not None:
                rows[i], cached[i] = row, True
            else:
                todo.setdefault(text, []).append(i)
        hits = sum(cached)
        if hits:
            m["cache_hits"].inc(hits)
        if todo:
            m["cache_misses"].inc(len(todo))
            probs = await self.batcher.predict(list(todo))
            for (text, where), row in zip(todo.items(), probs):
                self.cache.put(text, row)
                for i in where:
                    rows[i] = row
        valid = [i for i, row in enumerate(rows) if row is not None]
        records = score_records(np.stack([rows[i] for i in valid])) if valid else []
        results = [Score(label=None, confidence=None, probabilities=None, sentiment=None, cached=False,
                         error=str(error)) for error in errors]
        for i, record in zip(valid, records):
            m["predictions"].labels(record["label"]).inc()
            results[i] = Score(label=record["label"], confidence=record["confidence"],
                               probabilities=_probabilities(record), sentiment=record["sentiment"],
                               cached=cached[i])
        return results

    async def score_documents(self, documents: Sequence[str]) -> list[DocumentScore]:
        """``analyze --mode document`` on each document (split, score, token-weighted mean)."""
        from finsight.predict.document import score_documents

        from finsight.data.clean import texts_to_score

        m = metrics()
        # Whole documents keep their line breaks: score_documents cleans them line by line.
        texts, errors = texts_to_score(documents)
        valid = [i for i, error in enumerate(errors) if error is None]
        results = [DocumentScore(label=None, confidence=None, probabilities=None, sentiment=None,
                                 n_sentences=0, error=str(error)) for error in errors]
        if not valid:
            return results
        scored = await self.batcher.run(score_documents, self.predictor, [texts[i] for i in valid])
        probs, batch = scored.probs, scored.batch
        for i, record, n in zip(valid, score_records(probs), batch.n_sentences):
            m["predictions"].labels(record["label"]).inc()
            results[i] = DocumentScore(label=record["label"], confidence=record["confidence"],
                                       probabilities=_probabilities(record), sentiment=record["sentiment"],
                                       n_sentences=int(n))
        return results
