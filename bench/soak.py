"""Soak: a mixed load through the platform as `orchestrator up` runs it (Serve, Postgres, Redis) for
--minutes, with what it holds sampled as it goes. Not run in CI.

Four client threads, one keep-alive httpx connection each, each pausing --pause-ms between iterations:
tasks (POST /api/v1/tasks, then the owner completes it: PATCH /tasks/{id}/status, so the router's queue
stays bounded as it would with workers), reads (GET /tasks/{id} of a recent task and GET /tasks?limit=20),
workflow runs (POST /workflows/{id}/execute of a 1-step workflow created once, then GET /executions/{id}
until it ended) and events (GET /events?limit=20). The run stops at --minutes or --max-requests requests,
whichever comes first.

Per minute: requests/s and p99 per route kind; at the end of each minute (and every --sample-s for the plot):
resident memory of every process of the platform (the `orchestrator up` process and its descendants: gcs_server,
raylet, Ray's Python helpers, the actors by Ray title, Serve's proxy and replicas, haproxy), grouped by kind; their
open file descriptors; the Postgres connections they hold (pg_stat_activity rows of the database whose client port
is one of theirs, so other users of a shared database are not counted); Ray actors alive, counted as their worker
processes (an actor has a process of its own, titled `ray::<Class>`; Ray's state API would need the cluster's
authentication token, which a benchmark does not read) and all of the platform's processes.

Target, after the first minute's warm-up: resident memory and Postgres connections flat (end / minute 2 <= 1.05)
and no actor or process leaked (end <= minute 2). The baseline is minute 2 of the same run. Writes a plot of the
series to --plot (docs/soak.png) and prints the per-minute tables as Markdown for bench/README.md.

Run from the repository root:
`.venv/bin/python bench/soak.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
--redis-url redis://127.0.0.1:6379/12 [--minutes 10] [--max-requests N]`. A Postgres URL is used in a scratch
schema of its own, dropped at the end; the platform is stopped on exit, Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).parent))

from approvals import _account, _workflow
from platform_process import running_platform
from tasks import _percentile, scratch_database

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("task create", "task complete", "task read", "task list", "run execute", "run poll", "event list")
TERMINAL = {"completed", "failed", "cancelled", "timeout"}
GROWTH_LIMIT = 1.05


# --- the load --------------------------------------------------------------------------------------------


@dataclass
class Load:
    """Every request's (kind, completion time, ms, ok), shared by the client threads; the request ceiling."""

    max_requests: int
    pause_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    records: list[tuple[str, float, float, bool]] = field(default_factory=list)
    runs: list[tuple[float, float, str]] = field(default_factory=list)  # (ended at, execute → ended ms, status)
    recent_tasks: deque = field(default_factory=lambda: deque(maxlen=200))
    failures: list[str] = field(default_factory=list)
    _sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, http: httpx.Client, kind: str, method: str, url: str, **kwargs) -> httpx.Response | None:
        with self._lock:
            if self._sent >= self.max_requests:
                self.stop.set()
            if self.stop.is_set():
                return None
            self._sent += 1
        started = time.perf_counter()
        try:
            response = http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self._record(kind, started, False, f"{kind}: {type(exc).__name__}")
            return None
        ok = response.status_code < 400
        self._record(kind, started, ok, None if ok else f"{kind}: {response.status_code} {response.text[:200]}")
        return response

    def _record(self, kind: str, started: float, ok: bool, failure: str | None) -> None:
        now = time.perf_counter()
        with self._lock:
            self.records.append((kind, now, (now - started) * 1000, ok))
            if failure and len(self.failures) < 20:
                self.failures.append(failure)

    @property
    def sent(self) -> int:
        return self._sent


def _client(base: str, load: Load, body) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        while not load.stop.is_set():
            try:
                body(http)
            except Exception as exc:  # a client's bug must not stop the others; recorded, then go on
                load.failures.append(f"client: {type(exc).__name__}: {exc}"[:300])
            load.stop.wait(load.pause_s)


def clients(base: str, headers: dict, workflow_id: str, load: Load) -> list[threading.Thread]:
    def tasks(http: httpx.Client) -> None:
        body = {"type": "feature", "priority": "P3", "title": "soak"}
        created = load.request(http, "task create", "POST", "/api/v1/tasks", headers=headers, json=body)
        if created is None or created.status_code != 201:
            return
        task_id = created.json()["id"]
        load.recent_tasks.append(task_id)
        load.request(
            http,
            "task complete",
            "PATCH",
            f"/api/v1/tasks/{task_id}/status",
            headers=headers,
            json={"status": "completed"},
        )

    def reads(http: httpx.Client) -> None:
        if load.recent_tasks:
            task_id = random.choice(list(load.recent_tasks))
            load.request(http, "task read", "GET", f"/api/v1/tasks/{task_id}", headers=headers)
        load.request(http, "task list", "GET", "/api/v1/tasks", headers=headers, params={"limit": 20})

    def runs(http: httpx.Client) -> None:
        sent = time.perf_counter()
        started = load.request(
            http,
            "run execute",
            "POST",
            f"/api/v1/workflows/{workflow_id}/execute",
            headers=headers,
            json={"input_data": {"value": 1}},
        )
        if started is None or started.status_code != 201:
            return
        execution_id = started.json()["execution_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            load.stop.wait(0.05)
            polled = load.request(http, "run poll", "GET", f"/api/v1/executions/{execution_id}", headers=headers)
            if polled is None:
                return
            if polled.status_code == 200 and (status := polled.json()["status"]) in TERMINAL:
                now = time.perf_counter()
                with load._lock:
                    load.runs.append((now, (now - sent) * 1000, status))
                return

    def events(http: httpx.Client) -> None:
        load.request(http, "event list", "GET", "/api/v1/events", headers=headers, params={"limit": 20})

    return [
        threading.Thread(target=_client, args=(base, load, body), name=f"soak-{body.__name__}", daemon=True)
        for body in (tasks, reads, runs, events)
    ]


# --- what the platform holds -----------------------------------------------------------------------------


def process_kind(process: psutil.Process) -> str:
    """A process's kind: its Ray title without the method it runs, Ray's binaries and Python helpers by name."""
    try:
        cmdline = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "gone"
    first = cmdline[0] if cmdline else name
    if first.startswith("ray::"):
        title = first.split()[0].removeprefix("ray::")
        return "ray::" + (title if title.startswith("ServeReplica") else title.split(".")[0])
    if "haproxy" in name:
        return "haproxy"
    for binary in ("raylet", "gcs_server"):
        if first.endswith(binary) or name == binary:
            return binary
    if any(arg.endswith("orchestrator") for arg in cmdline[:2]) and "up" in cmdline:
        return "orchestrator up (driver)"
    if len(cmdline) > 2 and cmdline[1:3] == ["-B", "-c"]:  # the dashboard's forkserver and resource tracker
        return "multiprocessing " + ("forkserver" if "forkserver" in cmdline[3] else "helper")
    scripts = [Path(arg).name for arg in cmdline if arg.endswith(".py")]
    if scripts:
        parent = Path(next(arg for arg in cmdline if arg.endswith(".py"))).parent.name
        return f"{parent}/{scripts[0]}"
    return name


def platform_processes(root_pid: int) -> list[psutil.Process]:
    root = psutil.Process(root_pid)
    return [root, *root.children(recursive=True)]


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss_mb: dict[str, float]
    count: dict[str, int]
    fds: int
    pg_platform: int
    pg_database: int
    actors: int  # processes titled ray::<actor class>


def sample(root_pid: int, monitor, pg_port: int, began: float) -> Sample:
    rss: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    fds, ports = 0, []
    for process in platform_processes(root_pid):
        try:
            kind = process_kind(process)
            rss[kind] += process.memory_info().rss / 2**20
            count[kind] += 1
            fds += process.num_fds()
            ports += [c.laddr.port for c in process.net_connections("tcp") if c.raddr and c.raddr.port == pg_port]
        except psutil.Error:  # exited between the listing and the reading
            continue
    with monitor.connect() as conn:
        pg_database = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        ).scalar_one()
        pg_platform = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY(:ports)"
            ),
            {"ports": ports},
        ).scalar_one()
    return Sample(
        time.perf_counter() - began, dict(rss), dict(count), fds, pg_platform, pg_database, actor_processes(count)
    )


NOT_ACTORS = {"ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}  # Ray's own, titled like actors


def actor_processes(count: dict[str, int]) -> int:
    return sum(n for kind, n in count.items() if kind.startswith("ray::") and kind not in NOT_ACTORS)


GROUPS = {  # process kind -> the group the tables and the plot show
    "gcs_server": "Ray core (gcs_server, raylet)",
    "raylet": "Ray core (gcs_server, raylet)",
    "ray::ServeController": "Serve (controller, proxies, haproxy)",
    "ray::ProxyActor": "Serve (controller, proxies, haproxy)",
    "ray::HAProxyManager": "Serve (controller, proxies, haproxy)",
    "haproxy": "Serve (controller, proxies, haproxy)",
    "ray::WorkflowRunActor": "run actors",
    "orchestrator up (driver)": "orchestrator up (driver)",
}


def group(kind: str) -> str:
    if kind in GROUPS:
        return GROUPS[kind]
    if kind.startswith("ray::ServeReplica"):
        return "API replica"
    if kind.startswith("ray::") and kind not in NOT_ACTORS:
        return "platform actors (store, router, pool, hub, reconciler)"
    return "Ray dashboard and helpers"


def grouped(values: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for kind, value in values.items():
        out[group(kind)] += value
    return out


# --- figures ---------------------------------------------------------------------------------------------


def per_minute(load: Load, began: float, minute_s: float, minutes: int) -> list[dict[str, tuple[float, float, int]]]:
    """For each minute: kind -> (requests/s, p99 ms, errors)."""
    buckets: list[dict[str, list[tuple[float, bool]]]] = [defaultdict(list) for _ in range(minutes)]
    for kind, at, ms, ok in load.records:
        index = int((at - began) // minute_s)
        if 0 <= index < minutes:
            buckets[index][kind].append((ms, ok))
    out = []
    for bucket in buckets:
        row = {}
        for kind in KINDS:
            values = bucket.get(kind, [])
            latencies = [ms for ms, _ in values]
            row[kind] = (
                len(values) / minute_s,
                _percentile(latencies, 0.99) if latencies else float("nan"),
                sum(1 for _, ok in values if not ok),
            )
        out.append(row)
    return out


def run_latency(load: Load, began: float, minute_s: float, minutes: int) -> list[tuple[float, int]]:
    """For each minute: (p99 ms from execute to the run's end as polled, runs ended not `completed`)."""
    out = []
    for index in range(minutes):
        inside = [(ms, status) for at, ms, status in load.runs if index <= (at - began) / minute_s < index + 1]
        p99 = _percentile([ms for ms, _ in inside], 0.99) if inside else float("nan")
        out.append((p99, sum(1 for _, status in inside if status != "completed")))
    return out


def verdicts(baseline: Sample, end: Sample) -> list[tuple[str, float, float, bool, str]]:
    """(figure, minute 2, end, passed, rule) for the targets."""
    rows = []
    base_groups, end_groups = grouped(baseline.rss_mb), grouped(end.rss_mb)
    for name in sorted(set(base_groups) | set(end_groups), key=lambda k: -end_groups.get(k, 0)):
        before, after = base_groups.get(name, 0.0), end_groups.get(name, 0.0)
        passed = after <= before * GROWTH_LIMIT if before else after == 0
        rows.append((f"RSS {name} (MB)", before, after, passed, "<= 1.05x"))
    total_before, total_after = sum(baseline.rss_mb.values()), sum(end.rss_mb.values())
    rows.append(
        (
            "RSS all platform processes (MB)",
            total_before,
            total_after,
            total_after <= total_before * GROWTH_LIMIT,
            "<= 1.05x",
        )
    )
    rows.append(
        (
            "Postgres connections (platform)",
            baseline.pg_platform,
            end.pg_platform,
            end.pg_platform <= baseline.pg_platform * GROWTH_LIMIT,
            "<= 1.05x",
        )
    )
    rows.append(("open file descriptors", baseline.fds, end.fds, end.fds <= baseline.fds * GROWTH_LIMIT, "<= 1.05x"))
    processes_before, processes_after = sum(baseline.count.values()), sum(end.count.values())
    rows.append(
        ("platform processes", processes_before, processes_after, processes_after <= processes_before, "no growth")
    )
    rows.append(
        ("Ray actors alive (processes)", baseline.actors, end.actors, end.actors <= baseline.actors, "no growth")
    )
    return rows


def _ratio(before: float, after: float) -> str:
    return f"{after / before:.3f}x" if before else "n/a"


def markdown(rates, run_p99, minute_samples: list[Sample]) -> str:
    last = grouped(minute_samples[-1].rss_mb)
    kinds = sorted({group(kind) for s in minute_samples for kind in s.rss_mb}, key=lambda k: -last.get(k, 0))
    lines = ["| minute | " + " | ".join(f"{k} req/s (p99 ms)" for k in KINDS) + " | run p99 ms | errors |"]
    lines.append("|---:|" + "---:|" * (len(KINDS) + 2))
    for index, (row, (p99, bad)) in enumerate(zip(rates, run_p99, strict=True), start=1):
        cells = [f"{row[k][0]:.1f} ({row[k][1]:.0f})" for k in KINDS]
        errors = sum(row[k][2] for k in KINDS) + bad
        lines.append(f"| {index} | " + " | ".join(cells) + f" | {p99:.0f} | {errors} |")
    lines.append("")
    lines.append(
        "| minute | RSS all MB | "
        + " | ".join(f"{k} MB (n)" for k in kinds)
        + " | fds | PG conns (platform / db) | actors | processes |"
    )
    lines.append("|---:|---:|" + "---:|" * (len(kinds) + 4))
    for index, s in enumerate(minute_samples, start=1):
        rss, count = grouped(s.rss_mb), grouped(s.count)
        cells = [f"{rss.get(k, 0):.0f} ({count.get(k, 0):.0f})" for k in kinds]
        lines.append(
            f"| {index} | {sum(s.rss_mb.values()):.0f} | "
            + " | ".join(cells)
            + f" | {s.fds} | {s.pg_platform} / {s.pg_database} | {s.actors}"
            f" | {sum(s.count.values())} |"
        )
    return "\n".join(lines)


def plot(path: Path, rates, samples: list[Sample], minute_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(14, 11), sharex=True)
    minutes = [index + 1 for index in range(len(rates))]  # a minute's figure at its end
    at = [s.at / minute_s for s in samples]
    for kind in KINDS:
        axes[0][0].plot(minutes, [row[kind][0] for row in rates], marker="o", label=kind)
        axes[0][1].plot(minutes, [row[kind][1] for row in rates], marker="o", label=kind)
    axes[0][0].set_title("throughput per route kind (req/s, per minute)")
    axes[0][1].set_title("p99 latency per route kind (ms, per minute)")
    axes[0][1].set_yscale("log")
    last = grouped(samples[-1].rss_mb)
    kinds = sorted({group(k) for s in samples for k in s.rss_mb}, key=lambda k: -last.get(k, 0))
    axes[1][0].plot(at, [sum(s.rss_mb.values()) for s in samples], color="black", linewidth=2, label="all")
    axes[1][0].set_title("resident memory, all platform processes (MB)")
    baseline = [sum(s.rss_mb.values()) for s in samples if s.at <= 2 * minute_s + 1]
    if baseline:  # the target's band, so that a flat line is not drawn as a slope by autoscaling
        axes[1][0].axhline(baseline[-1] * GROWTH_LIMIT, color="red", linestyle="--", label="1.05x minute 2")
        axes[1][0].set_ylim(baseline[-1] * 0.9, baseline[-1] * 1.1)
    for kind in kinds:
        axes[1][1].plot(at, [grouped(s.rss_mb).get(kind, 0) for s in samples], label=kind)
    axes[1][1].set_title("resident memory by process group (MB)")
    axes[2][0].plot(at, [s.pg_platform for s in samples], label="Postgres connections (platform)")
    axes[2][0].plot(at, [s.actors for s in samples], label="Ray actors alive (processes)")
    axes[2][0].plot(at, [sum(s.count.values()) for s in samples], label="platform processes")
    axes[2][0].set_title("connections, actors, processes")
    axes[2][1].plot(at, [s.fds for s in samples], label="open file descriptors")
    axes[2][1].set_title("open file descriptors, all platform processes")
    for ax in axes.flat:
        ax.axvline(2, color="grey", linestyle=":", linewidth=1)  # the baseline: minute 2's end
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in axes[2]:
        ax.set_xlabel("minutes since the load started (dotted: end of minute 2, the baseline)")
    fig.suptitle("bench/soak.py: mixed load through Serve on Postgres + Redis", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# --- the run ---------------------------------------------------------------------------------------------


def _stop_on_sigterm() -> None:
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> None:
    _stop_on_sigterm()
    minute_s = args.minute_s
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "platform"
        extra = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_REDIS_URL": args.redis_url,
            "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
            "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "100000000/h",
            "ORCHESTRATOR_ROUTER_TICK_S": "1",
            "PYTHONPATH": str(ROOT),
        }
        monitor = create_engine(database_url, poolclass=NullPool, connect_args={"application_name": "soak-monitor"})
        pg_port = make_url(database_url).port or 5432
        load = Load(max_requests=args.max_requests, pause_s=args.pause_ms / 1000)
        threads: list[threading.Thread] = []
        samples: list[Sample] = []
        minute_samples: list[Sample] = []
        try:
            with (
                running_platform(data_dir, **extra) as (base, ready_s),
                httpx.Client(base_url=base, timeout=60) as http,
            ):
                state = _state(data_dir)
                root_pid = state["pid"]
                print(f"platform ready in {ready_s:.1f}s (pid {root_pid}, Ray {state['ray_address']})", flush=True)
                headers = _account(http, "soak")
                workflow_id = _workflow(http, headers, gated=False)

                began = time.perf_counter()
                threads = clients(base, headers, workflow_id, load)
                for thread in threads:
                    thread.start()
                minutes = 0
                next_sample = began
                while minutes < args.minutes and not load.stop.is_set():
                    load.stop.wait(max(0.0, next_sample + args.sample_s - time.perf_counter()))
                    next_sample += args.sample_s
                    if load.stop.is_set():
                        break
                    samples.append(sample(root_pid, monitor, pg_port, began))
                    if samples[-1].at >= (minutes + 1) * minute_s - args.sample_s / 2:
                        minutes += 1
                        minute_samples.append(samples[-1])
                        _print_minute(load, began, minute_s, minutes, samples[-1])
                load.stop.set()
                for thread in threads:
                    thread.join(90)
                ended_by = "--max-requests" if load.sent >= args.max_requests else "--minutes"
                time.sleep(args.settle_s)  # what is still held once the load stopped (informative)
                settled = sample(root_pid, monitor, pg_port, began)
        except BaseException:
            log = data_dir / "up.log"
            if log.exists():  # the platform's own account, before its temporary directory goes
                print("`orchestrator up` said:\n" + "\n".join(log.read_text().splitlines()[-40:]), file=sys.stderr)
            raise
        finally:
            load.stop.set()
            monitor.dispose()
    report(args, load, began, minute_s, minutes, samples, minute_samples, settled, ended_by)


def _state(data_dir: Path, timeout_s: float = 60) -> dict:
    """`orchestrator up`'s state file (pid, Ray and dashboard addresses), written just after /health answers."""
    path, deadline = data_dir / "run" / "orchestrator.json", time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return json.loads(path.read_text())


def _print_minute(load: Load, began: float, minute_s: float, minute: int, s: Sample) -> None:
    row = per_minute(load, began, minute_s, minute)[-1]
    rates = "  ".join(f"{k} {row[k][0]:.1f}/s p99 {row[k][1]:.0f}ms" for k in KINDS)
    print(
        f"minute {minute}: {rates}  | RSS {sum(s.rss_mb.values()):.0f} MB, fds {s.fds}, PG {s.pg_platform}, "
        f"actors {s.actors}, processes {sum(s.count.values())}",
        flush=True,
    )


def report(args, load, began, minute_s, minutes, samples, minute_samples, settled, ended_by) -> None:
    rates = per_minute(load, began, minute_s, minutes)
    run_p99 = run_latency(load, began, minute_s, minutes)
    print(
        f"\nsoak: {minutes} minute(s) of {minute_s:.0f} s, ended by {ended_by}; {load.sent} requests, "
        f"{sum(1 for r in load.records if not r[3])} errors, {len(load.runs)} runs ended "
        f"({sum(1 for r in load.runs if r[2] != 'completed')} not completed); {os.cpu_count()} cores, "
        f"load average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} at the end (the machine is shared)"
    )
    for failure in load.failures[:10]:
        print(f"  failure: {failure}")
    print("\n" + markdown(rates, run_p99, minute_samples) + "\n")
    if minutes < 3:
        print("fewer than 3 minutes measured: no flatness verdict (the baseline is minute 2)")
        return
    baseline, end = minute_samples[1], minute_samples[-1]
    rows = verdicts(baseline, end)
    print(f"| figure | minute 2 | minute {minutes} | end / minute 2 | target | verdict |")
    print("|---|---:|---:|---:|---|---|")
    for name, before, after, passed, rule in rows:
        verdict = "PASS" if passed else "FAIL"
        print(f"| {name} | {before:.0f} | {after:.0f} | {_ratio(before, after)} | {rule} | {verdict} |")
    print("\nresident memory per process kind, end / minute 2:")
    for kind in sorted(set(baseline.rss_mb) | set(end.rss_mb), key=lambda k: -end.rss_mb.get(k, 0)):
        before, after = baseline.rss_mb.get(kind, 0.0), end.rss_mb.get(kind, 0.0)
        flag = "" if before and after <= before * GROWTH_LIMIT else "   (over 1.05x)"
        print(f"  {kind:<44} {before:7.1f} -> {after:7.1f} MB  {_ratio(before, after)}{flag}")
    base_rates, end_rates = rates[1], rates[-1]
    print("\nthroughput and p99 per route kind, end / minute 2 (informative, no target):")
    for kind in KINDS:
        (r0, p0, _), (r1, p1, _) = base_rates[kind], end_rates[kind]
        print(
            f"  {kind:<14} {r0:7.1f} -> {r1:7.1f} req/s ({_ratio(r0, r1)})   "
            f"p99 {p0:6.0f} -> {p1:6.0f} ms ({_ratio(p0, p1)})"
        )
    print(
        f"\n{args.settle_s:.0f} s after the load stopped: RSS {sum(settled.rss_mb.values()):.0f} MB, "
        f"fds {settled.fds}, PG {settled.pg_platform}, actors {settled.actors}, processes {sum(settled.count.values())}"
    )
    verdict = all(row[3] for row in rows)
    print(f"\nflat after warm-up and nothing leaked: {'PASS' if verdict else 'FAIL'}")
    plot(Path(args.plot), rates, samples, minute_s)
    print(f"plot: {args.plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--max-requests", type=int, default=500_000, help="a ceiling on the requests sent")
    parser.add_argument("--pause-ms", type=float, default=10.0, help="each client's pause between iterations")
    parser.add_argument("--sample-s", type=float, default=15.0, help="how often the platform's figures are read")
    parser.add_argument("--settle-s", type=float, default=15.0, help="wait after the load before the last sample")
    parser.add_argument("--minute-s", type=float, default=60.0, help="length of a reporting interval (smoke tests)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "soak.png"))
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a Postgres URL (connections are counted in pg_stat_activity)")
    try:
        run(args)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the platform was stopped on the way out
        print(f"interrupted ({exc or 'Ctrl-C'}); the platform was stopped, no figures", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
