"""`finsight serve` under load, next to the offline `analyze` rate and a naive litestar app, in one run.

Each server runs as a real process on 127.0.0.1 and is driven by N closed-loop clients (httpx,
keep-alive; each sends one headline, waits for the answer, sends the next), bounded by a
duration and a request count. Reported per setup: p50/p95/p99 latency, requests/s, errors,
time from process start to ready, and resident memory (the server process and its children).

Setups:
  finsight serve   `finsight serve --model MODEL --backend BACKEND` (micro-batching), score
                   cache off (`serve.cache_size=0`) so every request reaches the model.
  naive litestar   a plain litestar app whose sync handler calls
                   `transformers.pipeline("text-classification")` per request (torch, the HF
                   model dir the export was made from): what users wire up by hand.
  offline analyze  `finsight analyze` of the same texts with the same model and backend (rows/s):
                   the ceiling the server is compared with.

Texts: Financial PhraseBank sentences (Sentences_50Agree.txt, one headline per request), from
../shared/data or $BENCH_DATA_DIR. The load generator runs on the same cores as the server, and
the machine may be shared: the 1-minute load average is printed with every figure.

  python benchmarks/serve_load.py --model RUN/export-onnx-int8
  python benchmarks/serve_load.py --model RUN/export-onnx-int8 --clients 1 32 --duration 20 --no-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze_speed import phrasebank  # noqa: E402  (PhraseBank from ../shared/data or $BENCH_DATA_DIR)

from finsight.triton.server import free_port  # noqa: E402

NAIVE_APP = '''
import os
from litestar import Litestar, post
from transformers import pipeline

pipe = pipeline("text-classification", model=os.environ["NAIVE_MODEL"], top_k=None, device=-1)

@post("/predict", status_code=200)
def predict(data: dict) -> dict:
    return {"scores": pipe(data["text"], truncation=True)}

app = Litestar([predict])
'''


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def stop_server(proc: subprocess.Popen, log) -> None:
    """SIGTERM (a drained shutdown), SIGKILL after a minute; then close its log."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log.close()


class Server:
    """A server process: started, timed to ready, measured (RSS), stopped by PID with SIGTERM."""

    def __init__(self, title: str, args: list[str], ready_path: str, log: Path, env: dict | None = None):
        self.title, self.log_path = title, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self._log = open(log, "wb")
        args = [a.replace("{port}", str(self.port)) for a in args]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 300.0) -> float:
        import httpx

        while time.perf_counter() - self.started < timeout:
            if self.proc.poll() is not None:
                sys.exit(f"{self.title} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                response = httpx.get(self.url + self.ready_path, timeout=2)
                if response.status_code < 500:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        sys.exit(f"{self.title} not ready after {timeout} s; see {self.log_path}")

    def rss_mib(self) -> float:
        import psutil

        proc = psutil.Process(self.proc.pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20

    def stop(self) -> None:
        stop_server(self.proc, self._log)


async def drive(url: str, texts: list[str], *, clients: int, duration: float, max_requests: int,
                warmup: int = 8) -> dict:
    """Closed-loop clients, one headline per request; every client warms its connection first,
    then all start together and run for ``duration`` seconds (or ``max_requests`` in all)."""
    import httpx

    latencies: list[float] = []
    counts = {"errors": 0, "sent": 0}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    start, warmed = asyncio.Event(), []
    clock: dict[str, float] = {}

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            for k in range(warmup):  # connection set-up and first requests: not counted
                await http.post(url, json={"text": texts[(i * 7919 + k) % len(texts)]})
            warmed.append(i)
            await start.wait()
            k = warmup
            while time.perf_counter() < clock["deadline"] and counts["sent"] < max_requests:
                counts["sent"] += 1
                text = texts[(i * 7919 + k) % len(texts)]
                k += 1
                began = time.perf_counter()
                try:
                    ok = (await http.post(url, json={"text": text})).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                counts["errors"] += not ok

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    while len(warmed) < clients:
        await asyncio.sleep(0.01)
    load_before = load_average()
    began = time.perf_counter()
    clock["deadline"] = began + duration
    start.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - began
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else float("nan")

    return {"clients": clients, "requests": len(latencies), "errors": counts["errors"],
            "seconds": round(seconds, 2), "rps": round(len(latencies) / seconds, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "load_before": load_before, "load_after": load_average()}


def offline_rate(model: str, backend: str, texts: list[str], work: Path, force: bool = False) -> dict:
    """`finsight analyze` of the texts, same model and backend: rows/s from its --json summary."""
    import pandas as pd

    csv = work / "texts.csv"
    pd.DataFrame({"text": texts}).to_csv(csv, index=False)
    load_before = load_average()
    flags = ["--set", "predict.force=true"] if force else []
    result = subprocess.run([sys.executable, "-m", "finsight", *flags, "analyze", str(csv), "--model", model,
                             "--backend", backend, "--out", str(work / "scored.csv"), "--json"],
                            capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout)
    return {"rows": summary["rows"], "rows_per_s": summary["rows_per_s"], "load_before": load_before,
            "load_after": load_average()}


def model_floor(model: str, backend: str, texts: list[str], n: int = 300, force: bool = False) -> dict:
    """The predictor alone, in this process, one headline per call: the floor under a
    1-client latency (the server's own predictor settings: no ONNX Runtime spinning)."""
    from finsight.config import load_settings
    from finsight.predict import load_predictor
    from finsight.serve.defaults import for_serving

    settings = for_serving(load_settings(flags={"predict.model": model, "predict.backend": backend,
                                                "predict.force": force}))
    predictor = load_predictor(model, settings)
    predictor.predict(texts[:16])
    load_before = load_average()
    times = []
    for text in texts[:n]:
        began = time.perf_counter()
        predictor.predict([text])
        times.append(time.perf_counter() - began)
    times.sort()
    return {"calls": len(times), "p50_ms": round(times[len(times) // 2] * 1000, 1),
            "p95_ms": round(times[int(0.95 * len(times))] * 1000, 1), "load_before": load_before,
            "load_after": load_average()}


def naive_model_dir(model: str) -> str:
    """The HF model dir for the naive app: the model itself, or the source of an export."""
    manifest = Path(model) / "finsight.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("kind") == "export" and data.get("source_model"):
            return data["source_model"]
    return model


def measure(server: Server, texts: list[str], args) -> dict:
    ready_s = server.wait_ready()
    time.sleep(0.5)
    rss = server.rss_mib()
    runs = [asyncio.run(drive(server.url + server.path, texts, clients=n, duration=args.duration,
                              max_requests=args.max_requests)) for n in args.clients]
    rss_after = server.rss_mib()
    return {"setup": server.title, "ready_s": round(ready_s, 2), "rss_mib": round(rss, 1),
            "rss_after_mib": round(rss_after, 1), "runs": runs}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model or export dir (int8 ONNX export for the goals)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per client count")
    parser.add_argument("--max-requests", type=int, default=20000, help="cap per client count")
    parser.add_argument("--texts", type=int, default=2000, help="PhraseBank sentences cycled through")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive litestar app")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra finsight --set for the server, e.g. serve.max_wait_ms=2")
    parser.add_argument("--force", action="store_true",
                        help="predict.force=true everywhere: measure an export that failed its gate")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    texts = phrasebank(args.texts)
    results: dict = {"model": args.model, "backend": args.backend, "cpus": os.cpu_count(), "setups": []}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        work = Path(tmp)
        sets = ["serve.cache_size=0", *(["predict.force=true"] if args.force else []), *args.overrides]
        cmd = [sys.executable, "-m", "finsight", *[x for s in sets for x in ("--set", s)], "serve",
               "--model", args.model, "--backend", args.backend, "--port", "{port}"]
        server = Server("finsight serve", cmd, "/ready", work / "finsight.log")
        server.path = "/v1/predict"
        try:
            server_ready = server.wait_ready()
            # /ready answers 503 while warming up: time the moment it says 200.
            import httpx

            while httpx.get(server.url + "/ready", timeout=5).status_code != 200:
                time.sleep(0.02)
            server_ready = time.perf_counter() - server.started
            setup = measure(server, texts, args)
            setup["ready_s"] = round(server_ready, 2)
            results["setups"].append(setup)
        finally:
            server.stop()
        results["offline"] = offline_rate(args.model, args.backend, texts, work, args.force)
        results["model_only"] = model_floor(args.model, args.backend, texts, force=args.force)
        if not args.no_baseline:
            naive = work / "naive_app.py"
            naive.write_text(NAIVE_APP)
            baseline = Server("naive litestar + transformers.pipeline",
                              [sys.executable, "-m", "uvicorn", "naive_app:app", "--port", "{port}",
                               "--log-level", "warning", "--app-dir", str(work)],
                              "/schema/openapi.json", work / "naive.log",
                              env={"NAIVE_MODEL": naive_model_dir(args.model)})
            baseline.path = "/predict"
            try:
                results["setups"].append(measure(baseline, texts, args))
            finally:
                baseline.stop()
    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


def report(results: dict) -> None:
    offline = results["offline"]
    print(f"\nmodel {results['model']} (backend {results['backend']}), {results['cpus']} CPUs")
    print(f"offline finsight analyze: {offline['rows_per_s']:.1f} rows/s on {offline['rows']} texts "
          f"(load {offline['load_before']} -> {offline['load_after']})")
    floor = results["model_only"]
    print(f"predictor alone, one headline per call (no HTTP): p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms "
          f"(load {floor['load_before']} -> {floor['load_after']})\n")
    print("| setup | clients | p50 ms | p95 ms | p99 ms | req/s | vs offline | errors | requests | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setup in results["setups"]:
        for run in setup["runs"]:
            ratio = run["rps"] / offline["rows_per_s"] if offline["rows_per_s"] else float("nan")
            print(f"| {setup['setup']} | {run['clients']} | {run['p50_ms']} | {run['p95_ms']} | {run['p99_ms']} "
                  f"| {run['rps']} | {ratio:.0%} | {run['errors']} | {run['requests']} "
                  f"| {run['load_before']} -> {run['load_after']} |")
    print()
    for setup in results["setups"]:
        print(f"{setup['setup']}: ready {setup['ready_s']} s after start, RSS {setup['rss_mib']} MiB "
              f"(after load {setup['rss_after_mib']} MiB)")
    served = results["setups"][0]
    by_clients = {run["clients"]: run for run in served["runs"]}
    print("\ngoals (finsight serve):")
    if 1 in by_clients:
        print(f"  1 client p50 <= 10 ms: {by_clients[1]['p50_ms']} ms")
    if 32 in by_clients:
        run = by_clients[32]
        target = min(300.0, 0.8 * offline["rows_per_s"])
        print(f"  32 clients >= min(300, 80% of offline = {0.8 * offline['rows_per_s']:.0f}) = {target:.0f} req/s: "
              f"{run['rps']} req/s ({run['rps'] / offline['rows_per_s']:.0%} of offline); p99 <= 250 ms: "
              f"{run['p99_ms']} ms; errors 0: {run['errors']}")
    rss = max(served["rss_mib"], served["rss_after_mib"])
    print(f"  ready <= 3 s: {served['ready_s']} s; RSS <= 400 MiB: {rss} MiB")


if __name__ == "__main__":
    main()
