from __future__ import annotations

import subprocess
import sys
import time

from cluster.runtime import pid_alive


def test_an_exited_but_unreaped_process_is_not_alive() -> None:
    # `orchestrator down` must see a platform that exited even when its parent has not reaped it yet.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_a_running_process_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_haproxy_is_found_as_serve_would_find_it(monkeypatch, tmp_path) -> None:
    from cluster.runtime import find_haproxy

    binary = tmp_path / "haproxy"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(binary))
    assert find_haproxy() == str(binary)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "missing"))
    assert find_haproxy() is None
    monkeypatch.delenv("RAY_SERVE_HAPROXY_BINARY_PATH")
    assert find_haproxy()  # ray[serve]'s bundled binary (or one on PATH)
