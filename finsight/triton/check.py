"""`finsight triton check`: serve a repository in a real tritonserver and compare it with ONNX locally.

The server is the one at ``--url``, or a tritonserver started here on the repository
(:class:`~finsight.triton.server.TritonServer`) and stopped afterwards. Real sentences (short
ones, headlines, filings longer than max_length) go through the ensemble one at a time and as
one batch; probabilities must match the local ONNX predictor on the same export within
``triton.max_abs_diff`` and every label must agree.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from finsight.errors import BackendError, ModelError
from finsight.results import TritonCheckResult
from finsight.triton.repository import read_repository

if TYPE_CHECKING:
    from finsight.config import Settings, TritonSettings


def check_repository(repo: str, settings: Settings, *, url: str | None = None,
                     texts: Sequence[str] | None = None,
                     on_step: Callable[[str], None] | None = None) -> TritonCheckResult:
    """The comparison report; ``passed`` says whether the repository serves correctly."""
    from finsight.samples import SAMPLE_SENTENCES
    from finsight.model.ref import resolve_artifact
    from finsight.predict import load_predictor
    from finsight.predict.triton_backend import TritonPredictor

    step = on_step or (lambda message: None)
    manifest = read_repository(repo)
    texts = list(texts or SAMPLE_SENTENCES)
    settings = settings.model_copy(deep=True)
    settings.triton.model_name = manifest["name"]
    if not Path(manifest["source"]).is_dir():
        raise ModelError(f"{manifest['path']} was built from {manifest['source']}, which is gone; the "
                         "check compares against that export: rebuild the repository from one")
    step(f"loading the local ONNX predictor on {manifest['source']}")
    local = load_predictor(manifest["source"], settings, backend="onnx")
    with _server(manifest["path"], settings, url, step) as server_url:
        settings.triton.url = server_url
        remote = TritonPredictor(resolve_artifact(manifest["source"], settings), settings.predict,
                                 model=settings.model, triton=settings.triton)
        step(f"sending {len(texts)} texts to '{manifest['name']}' at {server_url}, one by one and batched")
        try:
            single, latencies = [], []
            for text in texts:
                started = time.perf_counter()
                single.append(remote.predict([text]))
                latencies.append(time.perf_counter() - started)
            started = time.perf_counter()
            batched = remote.predict(texts)
            batch_s = time.perf_counter() - started
        finally:
            remote.client.close()
    reference = local.predict(texts)
    return _report(manifest, settings.triton, server_url, url is None, texts, reference,
                   {"1": np.concatenate(single), str(len(texts)): batched},
                   latencies, batch_s, int(local.encode(texts).truncated.sum()))


@contextlib.contextmanager
def _server(repo: str, settings: Settings, url: str | None, step: Callable[[str], None]) -> Iterator[str]:
    if url:
        yield url
        return
    from finsight.triton.server import TritonServer

    server = TritonServer(repo, settings)
    step(f"starting {server.install.binary} on {repo}")
    with server:
        yield server.url(settings.triton.protocol)


def _report(manifest: dict[str, Any], triton: TritonSettings, server_url: str, started: bool,
            texts: list[str], reference: np.ndarray, results: dict[str, np.ndarray],
            latencies: list[float], batch_s: float, truncated: int) -> TritonCheckResult:
    from finsight.predict.scores import label_ids

    int8 = manifest.get("source_precision") == "int8"
    limit = float(triton.max_abs_diff_int8 if int8 else triton.max_abs_diff)
    ref_labels = label_ids(reference)
    by_batch = {}
    for size, probs in results.items():
        diff = np.abs(probs - reference).max(axis=1)
        disagree = int((label_ids(probs) != ref_labels).sum())
        by_batch[size] = {"max_abs_diff": float(diff.max()), "disagreements": disagree,
                          "worst_row": int(diff.argmax())}
    worst = max(by_batch.values(), key=lambda b: b["max_abs_diff"])
    max_diff = worst["max_abs_diff"]
    disagreements = max(b["disagreements"] for b in by_batch.values())
    ms = np.asarray(latencies) * 1e3
    return TritonCheckResult(
        repository=manifest["path"], model=manifest["name"], source=manifest["source"],
        server=server_url, protocol=triton.protocol, started_server=started,
        rows=len(texts), truncated_rows=truncated, by_batch_size=by_batch,
        max_abs_diff=max_diff, max_abs_diff_limit=limit,
        max_abs_diff_key="triton.max_abs_diff_int8" if int8 else "triton.max_abs_diff",
        agreement=1.0 - disagreements / len(texts), disagreements=disagreements,
        worst_text=texts[worst["worst_row"]],
        latency_ms={"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                    "batch_of": len(texts), "batch": batch_s * 1e3},
        passed=bool(max_diff <= limit and disagreements == 0),
    )


def failure_message(report: TritonCheckResult) -> str:
    problems = []
    if report.max_abs_diff > report.max_abs_diff_limit:
        problems.append(f"max |probability diff| {report.max_abs_diff:.2e} > "
                        f"{report.max_abs_diff_limit:g} ({report.max_abs_diff_key})")
    if report.disagreements:
        problems.append(f"{report.disagreements} of {report.rows} labels differ")
    return (f"Triton repository {report.repository} does not match the local ONNX predictor: "
            f"{'; '.join(problems)}")


def raise_if_failed(report: TritonCheckResult) -> None:
    if not report.passed:
        raise BackendError(failure_message(report))
