"""`finsight serve` under overload: goodput, latency of answered requests and refusals at 1x, 2x
and 10x the connections the server sustains, with a small ``serve.max_queue``.

One real `finsight serve` process on 127.0.0.1 (score cache off, so every answer reaches the
model; access log on, as in production, written to a file). Per level, for ``--duration``
seconds:
  - wrk (closed loop, keep-alive) with N connections POSTs one headline per request; a Lua
    script counts responses by status code (wrk's own latency figures mix answers and refusals);
  - a Python probe (``--probe`` closed-loop connections of its own, on top of wrk's) measures the
    client-side latency of answered (200) and refused (503) requests separately, and checks that
    every refusal carries Retry-After;
  - the server's request-duration histogram by status gives its own p99 for 200 and 503.
Reported side by side: successful answers/s, p99 of answered (probe and server side), refusals/s
and their p99 (all, and those right after an answer: a connection refused again at once is read
again only after the server's 50 ms shed pause, see finsight/serve/protocol.py), refusals
without Retry-After, other statuses and socket errors, and the 1-minute load average (the load
generator shares the machine's cores with the server, and the machine may be shared).

Model: ``--model DIR`` (e.g. the int8 MiniLM export), else a tiny untrained 2-layer BERT built
from examples/headlines.csv and exported to int8 ONNX (speed only: its answers are meaningless,
and the HTTP layer, not the model, is then the bottleneck, which is the harder case for
shedding: every refusal takes event-loop time the answers need).

  python benchmarks/serve_overload.py                       # tiny model, max_queue=8
  python benchmarks/serve_overload.py --levels 1 2 10 32      # 32x: 256 connections, as in issue 19
  python benchmarks/serve_overload.py --model RUN/export-onnx-int8 --levels 1 2 10 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from finsight.triton.server import free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import stop_server  # noqa: E402  (the same drained stop as the load benchmark)

HEADLINES = REPO / "examples" / "headlines.csv"

WRK_SCRIPT = r'''
-- globals: done() reads each thread's counts with thread:get, which sees globals only
texts = {}
counts = {}
n = 0
function init(args)
  for line in io.lines(args[1]) do texts[#texts + 1] = line end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, texts[(n % #texts) + 1])
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
local threads = {}
function setup(thread) threads[#threads + 1] = thread end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, c in pairs(t:get("counts")) do total[status] = (total[status] or 0) + c end
  end
  local parts = {}
  for status, c in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', status, c) end
  io.write("COUNTS {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("ERRORS %d %d %d %d %d\n", summary.errors.connect, summary.errors.read,
                         summary.errors.write, summary.errors.status, summary.errors.timeout))
end
'''


def tiny_export(work: Path) -> Path:
    """The tiny BERT exported to int8 ONNX, as a server would run it (one ONNX Runtime call per
    batch, which releases the GIL; torch's per-op Python dispatch would make the model thread
    wait on the busy event loop for the GIL, and measure that instead of the HTTP edge)."""
    import pandas as pd

    from finsight.train.tiny import build_tiny_model

    model = build_tiny_model(pd.read_csv(HEADLINES)["text"].tolist(), work / "tiny")
    out = work / "export-onnx-int8"
    subprocess.run([sys.executable, "-m", "finsight", "export", str(model), "--format", "onnx",
                    "--quantize", "int8", "--out", str(out)], check=True, cwd=work,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    return out


def bodies(work: Path) -> tuple[Path, list[bytes]]:
    import pandas as pd

    texts = pd.read_csv(HEADLINES)["text"].tolist()
    lines = [json.dumps({"text": t}) for t in texts]
    path = work / "bodies.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, [line.encode() for line in lines]


class Server:
    def __init__(self, model: Path, sets: list[str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "finsight"]
        for item in sets:
            args += ["--set", item]
        args += ["serve", "--model", str(model), "--port", str(self.port)]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                sys.exit(f"finsight serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        sys.exit("finsight serve not ready")

    def stop(self) -> None:
        stop_server(self.proc, self._log)


def histogram(text: str, status: str) -> dict[float, float]:
    """Cumulative bucket counts of finsight_request_duration_seconds for POST /v1/predict."""
    buckets: dict[float, float] = {}
    pattern = re.compile(r'^finsight_request_duration_seconds_bucket\{(.*)\} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = match.group(1)
        if '"/v1/predict"' not in labels or f'status_code="{status}"' not in labels:
            continue
        le = re.search(r'le="([^"]+)"', labels).group(1)
        buckets[float("inf") if le == "+Inf" else float(le)] = float(match.group(2))
    return buckets


def bucket_p99(before: dict, after: dict) -> float | None:
    """Upper bound of the bucket holding the 99th percentile of what the level added."""
    diff = sorted((le, after.get(le, 0) - before.get(le, 0)) for le in after)
    if not diff or diff[-1][1] <= 0:
        return None
    total = diff[-1][1]
    for le, count in diff:
        if count >= 0.99 * total:
            return le
    return None


async def probe(url: str, payloads: list[bytes], *, clients: int, duration: float) -> dict:
    """Closed-loop probes next to wrk: client-side latency of 200s and 503s, kept apart."""
    import httpx

    lat: dict[int, list[float]] = {}
    first_refusals: list[float] = []  # a 503 right after an answer: not behind the shed pause
    missing_retry_after = 0
    stop = time.perf_counter() + duration

    async def one(i: int) -> None:
        nonlocal missing_retry_after
        k, previous = i, None
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1)) as http:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                try:
                    response = await http.post(url, content=payloads[k % len(payloads)],
                                               headers={"content-type": "application/json"})
                    code = response.status_code
                    if code == 503 and "retry-after" not in response.headers:
                        missing_retry_after += 1
                except httpx.HTTPError:
                    code = 0
                lat.setdefault(code, []).append(time.perf_counter() - began)
                if code == 503 and previous == 200:
                    first_refusals.append(time.perf_counter() - began)
                previous = code
                k += clients

    await asyncio.gather(*(one(i) for i in range(clients)))
    return {"latency": lat, "first_refusals": first_refusals, "missing_retry_after": missing_retry_after}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_level(server: Server, wrk_connections: int, args, script: Path, body_file: Path,
              payloads: list[bytes]) -> dict:
    import httpx

    before = httpx.get(server.url + "/metrics").text
    load = round(os.getloadavg()[0], 2)
    wrk = subprocess.Popen(
        ["wrk", "-t", str(min(args.wrk_threads, wrk_connections)), "-c", str(wrk_connections),
         "-d", f"{int(args.duration)}s", "--timeout", "5s", "-s", str(script), server.url + "/v1/predict",
         "--", str(body_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)  # let wrk's connections reach steady state before the probe starts
    probed = asyncio.run(probe(server.url + "/v1/predict", payloads, clients=args.probe,
                               duration=max(1.0, args.duration - 2.0)))
    out, _ = wrk.communicate(timeout=args.duration + 60)
    after = httpx.get(server.url + "/metrics").text
    if "COUNTS" not in out:
        sys.exit(f"wrk failed:\n{out}")
    counts = json.loads(re.search(r"^COUNTS (\{.*\})$", out, re.M).group(1))
    errors = dict(zip(("connect", "read", "write", "status", "timeout"),
                      map(int, re.search(r"^ERRORS (.*)$", out, re.M).group(1).split())))
    seconds = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
    if re.search(r"requests in [\d.]+ms", out):
        seconds /= 1000
    lat = probed["latency"]
    return {
        "connections": wrk_connections + args.probe, "seconds": round(seconds, 2), "load_1min": load,
        "ok_per_s": round(counts.get("200", 0) / seconds, 1),
        "refused_per_s": round(counts.get("503", 0) / seconds, 1),
        "other": {k: v for k, v in counts.items() if k not in ("200", "503")},
        "socket_errors": errors,
        "probe_ok_p99_ms": _ms(pct(lat.get(200, []), 0.99)),
        "probe_ok_p50_ms": _ms(pct(lat.get(200, []), 0.50)),
        "probe_refused_p99_ms": _ms(pct(lat.get(503, []), 0.99)),
        "probe_first_refused_p99_ms": _ms(pct(probed["first_refusals"], 0.99)),
        "probe_counts": {str(k): len(v) for k, v in lat.items()},
        "refusals_without_retry_after": probed["missing_retry_after"],
        "server_ok_p99_le_s": bucket_p99(histogram(before, "200"), histogram(after, "200")),
        "server_refused_p99_le_s": bucket_p99(histogram(before, "503"), histogram(after, "503")),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def report(rows: list[dict], base: int) -> None:
    unloaded = rows[0]["ok_per_s"] or 1.0
    cols = ("level", "conns", "ok/s", "vs 1x", "ok p50 ms", "ok p99 ms", "srv ok p99<=s", "refused/s",
            "refused p99 ms", "1st refused p99 ms", "no Retry-After", "other", "load")
    print(" | ".join(cols))
    for row in rows:
        errors = {k: v for k, v in row["socket_errors"].items() if v and k != "status"}  # status: non-2xx
        print(" | ".join(str(v) for v in (
            f"{row['connections'] / base:g}x", row["connections"], row["ok_per_s"],
            f"{100 * row['ok_per_s'] / unloaded:.0f}%", row["probe_ok_p50_ms"], row["probe_ok_p99_ms"],
            row["server_ok_p99_le_s"], row["refused_per_s"], row["probe_refused_p99_ms"],
            row["probe_first_refused_p99_ms"], row["refusals_without_retry_after"],
            {**row["other"], **errors} or "-", row["load_1min"])))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model or export dir (default: a tiny BERT)")
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--base", type=int, default=None,
                        help="connections at 1x, probe included (default: max_queue, which it sustains "
                             "without refusals)")
    parser.add_argument("--levels", type=float, nargs="+", default=[1, 2, 10])
    parser.add_argument("--duration", type=int, default=10, help="seconds per level")
    parser.add_argument("--probe", type=int, default=1, help="probe connections (on top of wrk's)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    base = args.base or args.max_queue
    with tempfile.TemporaryDirectory(prefix="serve-overload-") as tmp:
        work = Path(tmp)
        model = args.model or tiny_export(work)
        script = work / "count.lua"
        script.write_text(WRK_SCRIPT)
        body_file, payloads = bodies(work)
        sets = [f"serve.max_queue={args.max_queue}", "serve.cache_size=0", *args.overrides]
        server = Server(model, sets, work / "serve.log")
        try:
            server.wait_ready()
            rows = [run_level(server, max(1, round(base * level) - args.probe), args, script, body_file, payloads)
                    for level in args.levels]
        finally:
            server.stop()
    print(f"finsight serve, model {args.model or 'tiny BERT (2 layers, hidden 32), int8 ONNX'}, "
          f"serve.max_queue={args.max_queue}, {args.duration:g} s per level, wrk + {args.probe} probe "
          f"connections; {os.cpu_count()} cores shared by server and load generator")
    report(rows, base)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
