"""runtime.sandbox: each tier this host offers (probe() says which; the others are skipped with its reason) runs
hostile workspace files -- network, secrets, fork bomb, memory, file size, wall clock, orphans -- and is held."""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import sandbox
from runtime.sandbox import Limits, SandboxProcess, SandboxResult, SandboxUnavailable, Tier, TierCheck

SMALL = Limits(cpu_s=10, memory_mb=256, processes=32, file_size_mb=4, wall_clock_s=20, output_bytes=64 * 1024)


@pytest.fixture(params=list(Tier), ids=str)
def tier(request: pytest.FixtureRequest) -> Tier:
    check = {check.tier: check for check in sandbox.probe()}[request.param]
    if not check.available:
        pytest.skip(f"the {check.tier} tier is unavailable here: {check.reason}")
    return request.param


def _run(
    workspace: Path, tier: Tier, code: str, limits: Limits = SMALL, name: str = "main.py"
) -> tuple[str, SandboxResult]:
    (workspace / name).write_text(textwrap.dedent(code))
    run = SandboxProcess(workspace, name, tier=tier, limits=limits)
    run.start()
    output = "".join(run.lines())
    return output, run.wait()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


def _gone(marker: str, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while _processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port listening on the host's loopback, so the network case never depends on Postgres running."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_hello_world_streams_and_completes(tmp_path: Path, tier: Tier) -> None:
    (tmp_path / "hello.py").write_text("import time\nprint('Hello World')\ntime.sleep(1)\nprint('bye')\n")
    run = SandboxProcess(tmp_path, "hello.py", tier=tier, limits=SMALL)
    run.start()
    chunks = list(run.chunks())
    ended = time.monotonic()
    result = run.wait()
    assert [text for _, text in chunks] == ["Hello World\n", "bye\n"]
    assert ended - chunks[0][0] > 0.5, "the first line arrived only at the end: output is not streamed"
    assert (result.status, result.exit_code, result.tier, result.output_truncated) == ("completed", 0, tier, False)
    assert not list(tmp_path.glob("__pycache__")), "the run wrote into the workspace instead of its copy"


def test_network_is_unreachable(tmp_path: Path, tier: Tier, listener: int) -> None:
    if tier is Tier.rlimits:
        pytest.skip("the rlimits tier has no network isolation")
    output, result = _run(
        tmp_path,
        tier,
        f"""
        import socket
        for port in (5432, {listener}):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=3).close()
                print("CONNECTED", port)
            except OSError as exc:
                print("BLOCKED", port, exc)
        """,
    )
    assert result.status == "completed", output
    assert "CONNECTED" not in output
    assert output.count("BLOCKED") == 2


def test_platform_secrets_stay_outside(
    tmp_path_factory: pytest.TempPathFactory, tier: Tier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_JWT_SECRET", "topsecret")
    data_dir = tmp_path_factory.mktemp("data-dir")
    secret = data_dir / "secrets.json"
    secret.write_text("topsecret")
    secret.chmod(0o600)
    data_dir.chmod(0o755)  # only the file's own mode protects it
    output, result = _run(
        tmp_path_factory.mktemp("ws"),
        tier,
        f"""
        import os
        leaked = "ORCHESTRATOR_JWT_SECRET" in os.environ or "topsecret" in os.environ.values()
        print("ENV LEAK" if leaked else "env clean")
        try:
            print("FILE LEAK", open({str(secret)!r}).read())
        except FileNotFoundError:
            print("file invisible")
        except PermissionError:
            print("file denied")
        for path in ({str(Path.cwd())!r}, "/run/postgresql", "/root", os.path.expanduser("~root")):
            print("visible" if os.path.exists(path) else "hidden", path)
        """,
    )
    assert result.status == "completed", output
    assert "env clean" in output and "LEAK" not in output
    if tier is Tier.bubblewrap:
        assert "file invisible" in output
        assert "visible " not in output, f"bubblewrap shows host paths:\n{output}"
    elif os.geteuid() != 0:
        pytest.skip("the platform does not run as root: no uid drop, the run reads what the platform reads")
    else:
        assert "file denied" in output


def test_fork_bomb_is_contained(tmp_path: Path, tier: Tier) -> None:
    marker = f"bomb_{uuid.uuid4().hex}"
    started = time.monotonic()
    output, result = _run(
        tmp_path,
        tier,
        """
        import os
        print("forking", flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        limits=Limits(cpu_s=10, memory_mb=128, processes=32, wall_clock_s=5),
        name=f"{marker}.py",
    )
    assert "forking" in output
    assert result.status in {"timeout", "limit"}, result
    assert time.monotonic() - started < 15
    assert _gone(marker), f"fork bomb processes left: {_processes_with(marker)}"
    # The platform still works (and so does the sandbox uid's process budget).
    output, result = _run(tmp_path, tier, "print('still here')")
    assert (result.status, output) == ("completed", "still here\n")


def test_memory_limit(tmp_path: Path, tier: Tier) -> None:
    output, result = _run(
        tmp_path, tier, "block = bytearray(256 * 1024 * 1024)\nprint('ALLOCATED')", limits=Limits(memory_mb=64)
    )
    assert "ALLOCATED" not in output
    assert result.status in {"failed", "limit"}, result
    assert "MemoryError" in output or result.status == "limit", output


def test_file_size_limit(tmp_path: Path, tier: Tier) -> None:
    output, result = _run(
        tmp_path,
        tier,
        """
        with open("big.bin", "wb") as out:
            for _ in range(4):
                out.write(b"x" * 1024 * 1024)
        print("WROTE")
        """,
        limits=Limits(file_size_mb=1),
    )
    assert "WROTE" not in output
    assert result.status in {"failed", "limit"}, result
    assert "File too large" in output or result.status == "limit", output


def test_wall_clock(tmp_path: Path, tier: Tier) -> None:
    started = time.monotonic()
    _, result = _run(tmp_path, tier, "import time\ntime.sleep(30)", limits=Limits(wall_clock_s=1))
    assert result.status == "timeout" and result.exit_code is None
    assert time.monotonic() - started < 5


def test_stop_kills_the_whole_tree(tmp_path: Path, tier: Tier) -> None:
    marker = f"orphan_{uuid.uuid4().hex}"
    (tmp_path / "main.py").write_text(
        textwrap.dedent(
            f"""
            import os, subprocess, sys, time
            sleeper = [sys.executable, "-c", "import time; time.sleep(300)", "{marker}"]
            subprocess.Popen(sleeper)
            subprocess.Popen(sleeper, start_new_session=True)  # leaves the process group
            print("ready", flush=True)
            time.sleep(300)
            """
        )
    )
    run = SandboxProcess(tmp_path, "main.py", tier=tier, limits=SMALL)
    run.start()
    lines = run.lines()
    assert next(lines) == "ready\n"
    assert len(_processes_with(marker)) == 2
    run.stop()
    assert list(lines) == []
    result = run.wait()
    assert result.status == "killed"
    assert _gone(marker), f"processes left after stop(): {_processes_with(marker)}"


def test_background_children_die_with_the_run(tmp_path: Path, tier: Tier) -> None:
    marker = f"leftover_{uuid.uuid4().hex}"
    output, result = _run(
        tmp_path,
        tier,
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
        print("exiting")
        """,
    )
    assert (result.status, output) == ("completed", "exiting\n")
    assert _gone(marker)


def test_output_is_capped(tmp_path: Path, tier: Tier) -> None:
    output, result = _run(
        tmp_path, tier, "for i in range(10000):\n    print('line', i)", limits=Limits(output_bytes=1024)
    )
    assert result.status == "completed"
    assert result.output_truncated
    assert len(output.encode()) == 1024


def test_the_copy_is_removed(tmp_path: Path, tier: Tier) -> None:
    output, result = _run(tmp_path, tier, "import os\nos.mkdir('locked')\nos.chmod('locked', 0)\nprint(os.getcwd())")
    assert result.status == "completed"
    if tier is not Tier.bubblewrap:  # bubblewrap shows /workspace
        assert not Path(output.strip()).exists()


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "sub/../../x", "link.py", "missing.py", ""])
def test_paths_are_confined(tmp_path: Path, path: str) -> None:
    (tmp_path / "link.py").symlink_to("/etc/passwd")
    with pytest.raises(ValueError):
        SandboxProcess(tmp_path, path, tier=Tier.rlimits, limits=SMALL)


def test_a_symlinked_dir_leaving_the_workspace_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.py").write_text("print(1)")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "d").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the workspace"):
        SandboxProcess(workspace, "d/x.py", tier=Tier.rlimits, limits=SMALL)


def test_command_for() -> None:
    assert sandbox.command_for("a/b.py")[1:] == ["a/b.py"]
    assert sandbox.command_for("run.sh") == ["/bin/sh", "run.sh"]
    with pytest.raises(ValueError, match=r"cannot run \.exe files"):
        sandbox.command_for("x.exe")


def test_choose_tier_refuses_what_the_host_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [
        TierCheck(Tier.bubblewrap, False, "bwrap is not installed"),
        TierCheck(Tier.namespaces, False, "user namespaces are disabled"),
        TierCheck(Tier.rlimits, True, "limits only"),
    ]
    monkeypatch.setattr(sandbox, "probe", lambda refresh=False: checks)
    with pytest.raises(SandboxUnavailable, match="bubblewrap: bwrap is not installed"):
        sandbox.choose_tier("bubblewrap")
    with pytest.raises(SandboxUnavailable, match="namespaces: user namespaces are disabled"):
        sandbox.choose_tier(Tier.namespaces)
    assert sandbox.choose_tier("rlimits") is Tier.rlimits


def test_limits_from_settings() -> None:
    from core.settings import WorkspaceSettings

    limits = Limits.from_settings(WorkspaceSettings(sandbox_cpu_s=7, sandbox_output_bytes=2048))
    assert (limits.cpu_s, limits.output_bytes) == (7, 2048)
