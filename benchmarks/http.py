"""The decision service under load, beside the in-process engine measured in the same run.

    python -m benchmarks.http [--workers 1] [--concurrency 1,2,4,8,16,32] [--n 5000] [--seconds 10]
                              [--server granian|uvicorn] [--runs 3]

Starts ``policy-engine serve`` on a free loopback port (bundled pack, no state store, no decision log), then for
each concurrency keeps that many HTTP/1.1 keep-alive connections busy with ``POST /v1/decisions`` (synthetic
requests, DOMAIN §8.2) until ``--n`` responses or ``--seconds`` have passed, whichever comes first. The client
is asyncio on raw sockets (uvloop), so it costs little of the machine it shares with the server. Prints p50/p99
latency and requests/s per concurrency (medians over ``--runs``), the highest throughput with p99 ≤ 2 ms
(DESIGN §8) and its concurrency, and requests/s per server worker beside in-process ``evaluate_json`` on the same
texts. ``--server uvicorn`` runs the same application under uvicorn with uvloop and httptools (the ``bench``
extra), for the choice of server in README "Decision service". Loopback only; every response must be a 200 or
the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.run import corpus
from policy_engine import PolicyEngine
from policy_engine.resources import default_pack_path
from policy_engine.service.process import ServiceProcess, free_port
from policy_engine.service.settings import SETTINGS_ENV, Settings

P99_TARGET_MS = 2.0


@dataclass(frozen=True, slots=True)
class Row:
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float


def _requests(texts: list[str], port: int) -> list[bytes]:
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n")
    return [head.format(len(t.encode())).encode() + t.encode() for t in texts]


async def _connection(port: int, requests: list[bytes], offset: int, stop: float, budget: list[int],
                      latencies: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while budget[0] > 0 and time.perf_counter() < stop:
            budget[0] -= 1
            start = time.perf_counter_ns()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter_ns() - start)
            if status != b"200":
                raise RuntimeError(f"HTTP {status.decode()} from the service")
            i += 1
    finally:
        writer.close()


async def _level(port: int, requests: list[bytes], concurrency: int, n: int, seconds: float) -> Row:
    latencies: list[int] = []
    budget = [n]
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, requests, k * 997, start + seconds, budget, latencies)
                           for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return Row(concurrency, len(latencies), len(latencies) / elapsed, latencies[len(latencies) // 2] / 1e6,
               latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e6)


def _median_row(rows: list[Row]) -> Row:
    return Row(rows[0].concurrency, sum(r.requests for r in rows), statistics.median(r.rps for r in rows),
               statistics.median(r.p50_ms for r in rows), statistics.median(r.p99_ms for r in rows))


def in_process(texts: list[str], n: int) -> float:
    """evaluate_json decisions/s on one core, on the same texts."""
    engine = PolicyEngine.from_path()
    data = [t.encode() for t in texts]
    for t in data[:500]:
        engine.evaluate_json(t)
    start = time.perf_counter()
    for i in range(n):
        engine.evaluate_json(data[i % len(data)])
    return n / (time.perf_counter() - start)


class _Uvicorn:
    """The same application under uvicorn with uvloop and httptools (only for the choice of server)."""

    def __init__(self, workers: int):
        self.port = free_port()
        env = {**os.environ, SETTINGS_ENV: Settings(rules=str(default_pack_path())).to_env()}
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--workers", str(workers), "--loop", "uvloop", "--http",
                                      "httptools", "--no-access-log", "--log-level", "warning",
                                      "policy_engine.service.app:create_app"], env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32", help="connections per level, comma-separated")
    ap.add_argument("--n", type=int, default=5000, help="requests per level and run (default 5000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="time limit per level and run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs per level; medians are reported (default 3)")
    ap.add_argument("--server", choices=("granian", "uvicorn"), default="granian",
                    help="granian: `policy-engine serve`; uvicorn: the same application under uvicorn")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    texts = corpus(2000)
    try:
        import uvloop

        uvloop.install()
    except ModuleNotFoundError:
        pass

    baseline = in_process(texts, max(args.n, 20000))
    if args.server == "uvicorn":
        server = _Uvicorn(args.workers)
        port, stop = server.port, server.stop
    else:
        service = ServiceProcess(["--rules", str(default_pack_path()), "--workers", str(args.workers),
                                  "--log-level", "warning"]).start()
        port, stop = service.port, service.stop
    try:
        requests = _requests(texts, port)
        asyncio.run(_level(port, requests, 4, 1000, 5.0))  # warm-up: connections, code paths, caches
        rows = [_median_row([asyncio.run(_level(port, requests, c, args.n, args.seconds)) for _ in range(args.runs)])
                for c in levels]
    finally:
        stop()
    after = in_process(texts, max(args.n, 20000))
    inproc = statistics.median([baseline, after])

    print(f"server {args.server}, {args.workers} worker(s), {os.cpu_count()} cores (the client shares them); "
          f"medians of {args.runs} runs, up to {args.n} requests or {args.seconds:g}s per run")
    print(f"{'concurrency':>11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r.concurrency:>11} {r.rps:>9,.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}")
    within = [r for r in rows if r.p99_ms <= P99_TARGET_MS]
    best = max(within, key=lambda r: r.rps, default=None)
    if best is None:
        print(f"no concurrency kept p99 <= {P99_TARGET_MS} ms")
    else:
        print(f"best throughput with p99 <= {P99_TARGET_MS} ms: {best.rps:,.0f} req/s at concurrency "
              f"{best.concurrency} (p99 {best.p99_ms:.3f} ms)")
    top = max(rows, key=lambda r: r.rps)
    for label, row in (("at p99 <= 2 ms", best), ("at best throughput", top)):
        if row is not None:
            print(f"per server worker {label}: {row.rps / args.workers:,.0f} req/s beside in-process evaluate_json "
                  f"{inproc:,.0f} decisions/s on one core (ratio {row.rps / args.workers / inproc:.2f})")


if __name__ == "__main__":
    main()
