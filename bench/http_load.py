"""HTTP/1.1 load generator for loopback benchmarks (stdlib only, asyncio keep-alive).

Run it as a script for a text or JSON summary, or `from http_load import load` in other
bench scripts. Traffic goes to loopback only and stops on request count or time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadError", "load", "run_load"]

# Retrying these after a stale keep-alive close cannot change server state twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Header names the tool must control itself to keep request framing correct.
_RESERVED = frozenset({"content-length", "transfer-encoding"})
_DISCARD_CHUNK = 1 << 16


class LoadError(ValueError):
    """Bad arguments or a non-loopback target; nothing has been sent."""


class ProtocolError(Exception):
    """The server's reply is not parseable HTTP/1.x."""


class _Target:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise LoadError(f"only http:// URLs are supported, got {url!r}")
        if not parts.hostname:
            raise LoadError(f"URL has no host: {url!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise LoadError(f"bad port in URL {url!r}: {exc}") from None
        self.url = url
        self.host = parts.hostname
        self.port = port or 80
        self.netloc = parts.netloc.rpartition("@")[2]
        path = parts.path or "/"
        self.path = f"{path}?{parts.query}" if parts.query else path
        self.addresses: list[str] = []

    async def resolve_loopback(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise LoadError(f"cannot resolve {self.host!r}: {exc}") from None
        addresses: list[str] = []
        for info in infos:
            addr = str(info[4][0])
            if not _is_loopback(addr):
                raise LoadError(
                    f"refusing to load {self.host!r}: it resolves to {addr}, which is not "
                    "loopback (only 127.0.0.0/8 and ::1 are allowed)"
                )
            if addr not in addresses:
                addresses.append(addr)
        if not addresses:
            raise LoadError(f"{self.host!r} resolved to no addresses")
        # Connect to the vetted addresses, never the name, so a DNS change mid-run
        # cannot redirect traffic off the machine.
        self.addresses = addresses


def _is_loopback(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _build_request(target: _Target, method: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
    fields: dict[str, tuple[str, str]] = {
        "host": ("Host", target.netloc),
        "connection": ("Connection", "keep-alive"),
        "user-agent": ("User-Agent", "http_load"),
    }
    if body is not None:
        fields["content-type"] = ("Content-Type", "application/json")
    for name, value in headers.items():
        key = name.strip().lower()
        if not key or any(c in name + value for c in "\r\n") or ":" in name:
            raise LoadError(f"invalid header {name!r}: {value!r}")
        if key in _RESERVED:
            raise LoadError(f"header {name!r} is set automatically")
        fields[key] = (name.strip(), value.strip())
    if body is not None or method in _BODY_METHODS:
        fields["content-length"] = ("Content-Length", str(len(body or b"")))
    lines = [f"{method} {target.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields.values()]
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LoadError(f"request line and headers must be latin-1: {exc}") from None
    return head + (body or b"")


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.errors = 0

    def record(self, outcome: str, latency: float | None, error: bool) -> None:
        self.outcomes[outcome] += 1
        self.errors += error
        # Transport failures have no meaningful service time; keeping them out stops a
        # burst of instant connection refusals from making latency look great.
        if latency is not None:
            self.latencies.append(latency)


class _Client:
    """One persistent keep-alive connection, reopened whenever the server drops it."""

    def __init__(self, target: _Target, request: bytes, method: str) -> None:
        self.target = target
        self.request = request
        self.head_only = method == "HEAD"
        self.retry_stale = method in _IDEMPOTENT
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        last: OSError | None = None
        for addr in self.target.addresses:
            try:
                self.reader, self.writer = await asyncio.open_connection(addr, self.target.port)
                return
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def aclose(self) -> None:
        writer = self.writer
        self.close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def timed_request(self, timeout: float, stats: _Stats | None) -> None:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                status = await self._request()
        # TimeoutError subclasses OSError, so it must be caught first.
        except TimeoutError:
            outcome = "timeout"
        except (OSError, asyncio.IncompleteReadError):
            outcome = "connection_error"
        except (ProtocolError, asyncio.LimitOverrunError, ValueError):
            outcome = "protocol_error"
        except asyncio.CancelledError:
            # Abandoned mid-request at the deadline: the reply may still arrive, so the
            # socket cannot be reused by a later phase.
            self.close()
            raise
        else:
            if stats is not None:
                stats.record(str(status), time.perf_counter() - start, status >= 400)
            return
        # After a failure the stream position is unknown, so the connection is unusable.
        self.close()
        if stats is not None:
            stats.record(outcome, None, True)

    async def _request(self) -> int:
        for attempt in range(2):
            reused = self.writer is not None
            if not reused:
                await self.connect()
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(self.request)
                await self.writer.drain()
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (
                asyncio.IncompleteReadError,
                ConnectionResetError,
                BrokenPipeError,
            ) as exc:
                # A server may close an idle keep-alive connection just as we reuse it;
                # nothing was processed then, so one retry on a fresh socket is safe.
                got_nothing = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if reused and got_nothing and attempt == 0 and self.retry_stale:
                    self.close()
                    continue
                raise
            status, keep_alive = await self._read_response(head)
            if not keep_alive:
                self.close()
            return status
        raise AssertionError("unreachable")

    async def _read_response(self, head: bytes) -> tuple[int, bool]:
        reader = self.reader
        assert reader is not None
        while True:
            lines = head.split(b"\r\n")
            parts = lines[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ProtocolError(f"bad status line {lines[0][:80]!r}")
            version, status = parts[0], int(parts[1])
            length: int | None = None
            chunked = False
            connection = b""
            for line in lines[1:]:
                if not line:
                    continue
                name, sep, value = line.partition(b":")
                if not sep:
                    raise ProtocolError(f"bad header line {line[:80]!r}")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = value.strip().lower().endswith(b"chunked")
                elif name == b"connection":
                    connection = value.strip().lower()
            # Interim 1xx replies precede the real one on the same connection.
            if 100 <= status < 200 and status != 101:
                head = await reader.readuntil(b"\r\n\r\n")
                continue
            # HTTP/1.1 persists unless told otherwise; HTTP/1.0 only when asked.
            keep_alive = b"close" not in connection if version != b"HTTP/1.0" else b"keep-alive" in connection
            if self.head_only or status in (101, 204, 304):
                return status, keep_alive and status != 101
            if chunked:
                await self._read_chunked(reader)
            elif length is not None:
                await _discard(reader, length)
            else:
                # No framing: the body runs to EOF, so this connection is finished.
                while await reader.read(_DISCARD_CHUNK):
                    pass
                keep_alive = False
            return status, keep_alive

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return
            await _discard(reader, size + 2)


async def _discard(reader: asyncio.StreamReader, n: int) -> None:
    if n <= _DISCARD_CHUNK:
        await reader.readexactly(n)
        return
    # Large bodies are dropped piecewise so memory stays flat whatever the size.
    while n > 0:
        chunk = await reader.read(min(n, _DISCARD_CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(chunk)


async def _run_phase(
    clients: list[_Client],
    total: int,
    deadline: float,
    timeout: float,
    stats: _Stats | None,
) -> None:
    issued = 0

    async def worker(client: _Client) -> None:
        nonlocal issued
        # Check-and-increment has no await in between, so workers never over-issue.
        while issued < total and time.perf_counter() < deadline:
            issued += 1
            await client.timed_request(timeout, stats)

    # A hard stop at the deadline keeps the run bounded even if the server stalls;
    # requests still in flight then are abandoned and not counted.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
            await asyncio.gather(*(worker(c) for c in clients))


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))  # nearest-rank
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def run_load(
    url: str,
    *,
    method: str = "GET",
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 16,
    requests: int = 5000,
    duration: float = 30.0,
    warmup: int = 200,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Load `url` until `requests` are done or `duration` seconds pass; return a summary.

    Warmup runs first under its own `duration` limit and is not counted. Requests still
    in flight when time runs out are abandoned and not counted either.

    Latency percentiles cover every request that got an HTTP response (any status);
    they are None if none did. `errors` counts status >= 400, timeouts, connection and
    protocol errors; `statuses` maps each status code or error kind to its count.
    Raises LoadError, before any traffic, for bad arguments or a non-loopback host.
    """
    if concurrency < 1 or requests < 1 or warmup < 0:
        raise LoadError("concurrency and requests must be >= 1, warmup >= 0")
    if duration <= 0 or timeout <= 0:
        raise LoadError("duration and timeout must be > 0")
    method = method.upper()
    if not method.isalpha():
        raise LoadError(f"invalid method {method!r}")
    payload = body.encode() if isinstance(body, str) else body

    target = _Target(url)
    request = _build_request(target, method, payload, headers or {})
    await target.resolve_loopback()

    clients = [_Client(target, request, method) for _ in range(concurrency)]
    try:
        # Open sockets up front so handshakes don't land in the measured latencies even
        # with --warmup 0; failures are retried (and recorded) by the requests themselves.
        await asyncio.gather(
            *(asyncio.wait_for(c.connect(), timeout) for c in clients),
            return_exceptions=True,
        )
        if warmup:
            await _run_phase(clients, warmup, time.perf_counter() + duration, timeout, None)
        stats = _Stats()
        start = time.perf_counter()
        await _run_phase(clients, requests, start + duration, timeout, stats)
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    lat = sorted(stats.latencies)
    done = sum(stats.outcomes.values())
    return {
        "url": url,
        "concurrency": concurrency,
        "requests": done,
        "elapsed_s": round(elapsed, 4),
        "rps": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _ms(_percentile(lat, 50)),
        "p90_ms": _ms(_percentile(lat, 90)),
        "p99_ms": _ms(_percentile(lat, 99)),
        "max_ms": _ms(lat[-1] if lat else None),
        "errors": stats.errors,
        "statuses": dict(sorted(stats.outcomes.items())),
    }


def load(
    url: str,
    *,
    method: str = "GET",
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 16,
    requests: int = 5000,
    duration: float = 30.0,
    warmup: int = 200,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run run_load in a fresh event loop; for callers that are not async themselves."""
    return asyncio.run(
        run_load(
            url,
            method=method,
            body=body,
            headers=headers,
            concurrency=concurrency,
            requests=requests,
            duration=duration,
            warmup=warmup,
            timeout=timeout,
        )
    )


def _parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {raw!r}")
    return name.strip(), value.strip()


def _format_summary(result: Mapping[str, Any]) -> str:
    def ms(key: str) -> str:
        value = result[key]
        return "n/a" if value is None else f"{value:.2f}"

    statuses = ", ".join(f"{k}={v}" for k, v in result["statuses"].items()) or "none"
    return "\n".join(
        [
            f"URL:          {result['url']}",
            f"Concurrency:  {result['concurrency']}",
            f"Requests:     {result['requests']}",
            f"Elapsed:      {result['elapsed_s']:.3f} s",
            f"Throughput:   {result['rps']:.1f} req/s",
            f"Latency (ms): p50 {ms('p50_ms')}  p90 {ms('p90_ms')}  p99 {ms('p99_ms')}  max {ms('max_ms')}",
            f"Errors:       {result['errors']}",
            f"Statuses:     {statuses}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="HTTP/1.1 keep-alive load generator for loopback targets. "
        "Stops at --requests or --duration, whichever comes first.",
    )
    parser.add_argument("url", help="http:// URL on 127.0.0.0/8, ::1 or localhost")
    parser.add_argument("--method", default="GET", help="HTTP method (default: GET)")
    parser.add_argument("--body", help="request body, sent as application/json unless overridden")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_parse_header,
        metavar="'NAME: VALUE'",
        help="extra request header; repeatable",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="connections (default: 16)")
    parser.add_argument("--requests", type=int, default=5000, help="measured requests (default: 5000)")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="time limit in s for the measured run; warmup gets its own (default: 30)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="unmeasured requests first (default: 200)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="per-request timeout in s (default: 10)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    try:
        result = load(
            args.url,
            method=args.method,
            body=args.body,
            headers=dict(args.header),
            concurrency=args.concurrency,
            requests=args.requests,
            duration=args.duration,
            warmup=args.warmup,
            timeout=args.timeout,
        )
    except LoadError as exc:
        print(f"http_load: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result) if args.json else _format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
