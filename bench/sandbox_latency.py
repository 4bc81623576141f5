"""What a workspace sandbox costs to start: time from `SandboxProcess.start()` (the workspace copy included) to
the first line of a hello-world Python file, per tier this host offers, p50/p95 over --runs runs, and the
bubblewrap tier's p50 as a multiple of the rlimits tier's (the baseline: the same program with limits only).

Run from the repository root: `.venv/bin/python bench/sandbox_latency.py [--runs 20]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runtime.sandbox import Limits, SandboxProcess, Tier, probe


def first_output_ms(workspace: Path, tier: Tier) -> float:
    started = time.monotonic()
    run = SandboxProcess(workspace, "hello.py", tier=tier, limits=Limits(wall_clock_s=30))
    run.start()
    first = None
    for ts, _ in run.chunks():
        first = first or ts
    result = run.wait()
    if result.status != "completed" or first is None:
        raise RuntimeError(f"{tier}: {result}")
    return (first - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    p50s: dict[Tier, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        (workspace / "hello.py").write_text("print('Hello World')\n")
        for check in probe():
            if not check.available:
                print(f"{check.tier:<11} unavailable: {check.reason}")
                continue
            first_output_ms(workspace, check.tier)  # warmup
            samples = sorted(first_output_ms(workspace, check.tier) for _ in range(args.runs))
            p50s[check.tier] = statistics.median(samples)
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            print(f"{check.tier:<11} p50 {p50s[check.tier]:6.1f} ms  p95 {p95:6.1f} ms  ({args.runs} runs)")
    if Tier.bubblewrap in p50s and Tier.rlimits in p50s:
        print(f"bubblewrap / rlimits p50: {p50s[Tier.bubblewrap] / p50s[Tier.rlimits]:.2f}x")


if __name__ == "__main__":
    main()
