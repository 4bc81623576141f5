"""The Python SDK's own cost per call: 500 `GET /api/v1/users/me` through `orchestrator_sdk.Client` and 500
through a bare `httpx.Client` (same connection reuse, same auth header), interleaved in rounds in one run,
against the API under plain uvicorn (one process, SQLite) or an already running platform (`--url`).
A second figure isolates the client side: ten times as many calls against an in-memory transport (no server).

Run from the repository root: `.venv/bin/python bench/sdk_overhead.py [--calls 500] [--url URL]`.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from orchestrator_sdk import Client
from platform_process import BIN, free_port, platform_env, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 5
USER = {
    "id": "u1",
    "email": "a@example.com",
    "first_name": None,
    "last_name": None,
    "role": "agent",
    "subscription_tier": "free",
    "is_active": True,
    "email_verified": False,
    "preferences": {},
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
    "last_login_at": None,
}


def _timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def compare(base: str, token: str, calls: int, transport: httpx.BaseTransport | None = None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    bare = httpx.Client(base_url=base, headers=headers, timeout=30, transport=transport)
    sdk = Client(base, token=token, transport=transport)

    def bare_call() -> object:
        response = bare.get("/api/v1/users/me")
        response.raise_for_status()
        return response.json()

    def sdk_call() -> object:
        return sdk.users.me()

    _timed(bare_call, 30), _timed(sdk_call, 30)  # warm both connections
    bare_s: list[float] = []
    sdk_s: list[float] = []
    for _ in range(ROUNDS):
        bare_s += _timed(bare_call, calls // ROUNDS)
        sdk_s += _timed(sdk_call, calls // ROUNDS)
    bare.close()
    sdk.close()
    return {
        "bare_mean_ms": statistics.fmean(bare_s) * 1000,
        "sdk_mean_ms": statistics.fmean(sdk_s) * 1000,
        "bare_p50_ms": statistics.median(bare_s) * 1000,
        "sdk_p50_ms": statistics.median(sdk_s) * 1000,
        "n": len(sdk_s),
    }


def _token(base: str, email: str, password: str, register: bool) -> str:
    with httpx.Client(base_url=base, timeout=30) as http:
        if register:
            http.post("/api/v1/auth/register", json={"email": email, "password": password}).raise_for_status()
        login = http.post("/api/v1/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        return login.json()["access_token"]


def _print(title: str, result: dict[str, float]) -> None:
    overhead_us = (result["sdk_mean_ms"] - result["bare_mean_ms"]) * 1000
    print(f"{title}: {result['n']} calls each")
    print(f"  bare httpx       mean {result['bare_mean_ms']:.3f} ms   p50 {result['bare_p50_ms']:.3f} ms")
    print(f"  orchestrator_sdk mean {result['sdk_mean_ms']:.3f} ms   p50 {result['sdk_p50_ms']:.3f} ms")
    mean_ratio = result["sdk_mean_ms"] / result["bare_mean_ms"]
    p50_ratio = result["sdk_p50_ms"] / result["bare_p50_ms"]
    print(f"  ratio sdk/bare {mean_ratio:.2f}x (mean), {p50_ratio:.2f}x (p50); SDK overhead {overhead_us:+.0f} µs/call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--url", help="a running platform (default: start the API under uvicorn)")
    parser.add_argument("--email")
    parser.add_argument("--password")
    args = parser.parse_args()

    in_memory = httpx.MockTransport(lambda request: httpx.Response(200, json=USER))
    _print("client side only (in-memory transport)", compare("http://bench", "t", args.calls * 10, in_memory))

    if args.url:
        email = args.email or f"bench-{secrets.token_hex(4)}@example.com"
        password = args.password or "bench password 1"
        _print(
            f"GET /api/v1/users/me on {args.url}",
            compare(args.url, _token(args.url, email, password, not args.email), args.calls),
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = platform_env(Path(tmp), port)
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
            base = f"http://127.0.0.1:{port}"
            wait_healthy(f"{base}/health")
            token = _token(base, f"bench-{secrets.token_hex(4)}@example.com", "bench password 1", True)
            _print("GET /api/v1/users/me, API under uvicorn (1 process)", compare(base, token, args.calls))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
