"""GET /health served by Ray Serve (HAProxy ingress and default proxy) vs the same FastAPI app under
plain uvicorn, measured in one run on this machine, printed as requests/s, latency and ratios.

Run from the repository root: `.venv/bin/python bench/health_serve_vs_uvicorn.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_load import load
from platform_process import BIN, free_port, platform_env, running_platform, wait_healthy

from cluster.runtime import find_haproxy

ROOT = Path(__file__).resolve().parent.parent


def bench_uvicorn(data_dir: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    env = platform_env(data_dir, port)
    subprocess.run([BIN / "orchestrator", "db", "upgrade"], env=env, check=True, capture_output=True)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "serve_app.app:create_app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health")
        return _measure(f"http://127.0.0.1:{port}/health", args)
    finally:
        server.terminate()
        server.wait(30)


def bench_serve(data_dir: Path, args: argparse.Namespace, fast_proxy: str) -> dict:
    with running_platform(data_dir, ORCHESTRATOR_FAST_PROXY=fast_proxy) as (base, startup_s):
        result = _measure(f"{base}/health", args)
    result["startup_s"] = startup_s
    return result


def _measure(url: str, args: argparse.Namespace) -> dict:
    return load(url, concurrency=args.concurrency, requests=args.requests, duration=args.duration, warmup=args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()

    rows: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("uvicorn (plain FastAPI, 1 process)", bench_uvicorn(Path(tmp) / "uvicorn", args)))
        if find_haproxy():
            rows.append(("Ray Serve, HAProxy ingress", bench_serve(Path(tmp) / "serve-fast", args, "on")))
        rows.append(("Ray Serve, default proxy", bench_serve(Path(tmp) / "serve-default", args, "off")))

    baseline = rows[0][1]["rps"]
    print(
        f"\nGET /health, {args.concurrency} connections, up to {args.requests} requests or {args.duration:.0f}s, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'server':<36} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs uvicorn':>11}")
    for name, result in rows:
        print(
            f"{name:<36} {result['rps']:>8.0f} {result['p50_ms']:>8.2f} {result['p90_ms']:>8.2f} "
            f"{result['p99_ms']:>8.2f} {result['errors']:>7} {result['rps'] / baseline:>10.2f}x"
        )
    for name, result in rows:
        if "startup_s" in result:
            print(f"startup to healthy ({name}): {result['startup_s']:.1f}s")


if __name__ == "__main__":
    main()
