"""Run one file of a project workspace -- generated, untrusted code -- in the strongest sandbox the host offers.

Every run works on a throw-away copy of the workspace (a fresh temp dir, removed afterwards), with a clean
environment (``PATH``, ``HOME``, ``LANG``, ``PYTHONUNBUFFERED``, ``PYTHONDONTWRITEBYTECODE`` only: no platform
secret such as ``ORCHESTRATOR_JWT_SECRET`` leaks in), resource limits, a wall clock, and its own session so the
whole tree can be killed. The tiers, strongest first (``probe()`` tries each one for real on this host;
``choose_tier`` refuses runs when nothing at least as strong as ``sandbox_min_tier`` works):

``bubblewrap``
    ``bwrap --unshare-all``: no network (own network namespace with only its own loopback: neither
    ``127.0.0.1:5432`` nor any other host service is reachable), own PID/IPC/UTS/user/cgroup namespaces, a
    filesystem built from read-only binds of the system dirs (``/usr``, ``/bin``, ``/lib*``, a short allow-list
    of ``/etc`` files), fresh ``/proc``, ``/dev`` and a size-capped ``/tmp`` tmpfs, and the writable copy at
    ``/workspace``. Nothing else of the host is visible: not the platform's data dir, not its source, not
    ``/run`` (the Postgres socket), not ``/root``. ``bwrap`` is launched as uid 65534 when the platform runs as
    root and unprivileged user namespaces work (otherwise as root with ``--uid 65534``, where ``RLIMIT_NPROC`` is
    not enforced: the PID namespace and the wall clock are then the fork-bomb backstop). Killing ``bwrap`` kills
    the namespace (``--die-with-parent``: its PID 1 dies, and with it every process in it). Does not protect
    against kernel exploits, and shares the host's CPU and disk bandwidth (no cgroup quotas).
``namespaces``
    ``unshare --net --pid --fork --kill-child --mount-proc`` (with a user namespace, as the run is unprivileged):
    no network, own PID namespace (the whole tree dies with it), resource limits. The host filesystem IS visible:
    the run reads whatever uid 65534 may read (world-readable files, ``/tmp``) and may write where that uid may
    write (``/tmp``, world-writable dirs). Host secrets are protected only by file permissions and the uid drop,
    which happens only when the platform runs as root.
``rlimits``
    The command directly, in its own session, as uid 65534 when the platform runs as root, with resource limits
    and a clean environment. No network isolation (it can reach Postgres, Redis, the API, the internet), the
    filesystem as above. A child that leaves the session (``setsid``), closes its output and double-forks escapes
    the kill (its CPU stays capped by ``RLIMIT_CPU``); children that keep the output pipe open are found and
    killed. Use only on trusted single-user hosts.

Resource limits (all tiers, set in the child before ``exec``): ``RLIMIT_CPU`` (``SIGXCPU``, then ``SIGKILL`` a
second later), ``RLIMIT_AS`` and ``RLIMIT_DATA`` (memory; only ``RLIMIT_DATA`` for ``node``, whose V8 reserves
gigabytes of address space up front), ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` (counted per real uid on the whole host,
threads included: concurrent runs share uid 65534's budget; it is not enforced for root; and when the platform
itself is not root there is no uid drop, so the platform user's own processes count too), ``RLIMIT_CORE`` 0,
``RLIMIT_NOFILE`` 256. Memory and file-size limits show up in Python as ``MemoryError``/``EFBIG`` (status
``failed``, with a hint in ``reason``), CPU time as ``SIGXCPU`` (status ``limit``).

Pure stdlib; callers (a Ray actor, the CLI) decide where a run happens.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import grp
import os
import pwd
import queue
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, cast

from core.settings import WorkspaceSettings

__all__ = [
    "Limits",
    "SandboxProcess",
    "SandboxResult",
    "SandboxUnavailable",
    "Tier",
    "TierCheck",
    "choose_tier",
    "command_for",
    "probe",
]


class Tier(StrEnum):
    """Sandbox tiers, strongest first (the enum's order is the strength order)."""

    bubblewrap = "bubblewrap"
    namespaces = "namespaces"
    rlimits = "rlimits"


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_s: int = 30
    memory_mb: int = 512
    processes: int = 64
    file_size_mb: int = 16
    wall_clock_s: float = 60.0
    output_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, workspaces: WorkspaceSettings) -> Limits:
        return cls(
            cpu_s=workspaces.sandbox_cpu_s,
            memory_mb=workspaces.sandbox_memory_mb,
            processes=workspaces.sandbox_processes,
            file_size_mb=workspaces.sandbox_file_size_mb,
            wall_clock_s=workspaces.sandbox_wall_clock_s,
            output_bytes=workspaces.sandbox_output_bytes,
        )


@dataclass(frozen=True, slots=True)
class TierCheck:
    tier: Tier
    available: bool
    reason: str  # why not, or what the tier gives


class SandboxUnavailable(Exception):
    """No tier at least as strong as the required one works on this host."""


@dataclass(slots=True)
class SandboxResult:
    """How a run ended. ``cpu_time_s``/``max_rss_mb`` come from the reaped child and its reaped descendants; under
    bubblewrap that child is ``bwrap``, which does not reap the namespace's init, so they read near zero there."""

    exit_code: int | None  # the program's own exit status; None when a signal, the wall clock or stop() ended it
    status: str  # completed | failed | timeout | killed | limit
    duration_ms: int
    cpu_time_s: float
    max_rss_mb: float
    output_truncated: bool
    tier: Tier
    reason: str | None


# --- host facts ----------------------------------------------------------------------------------------------

SANDBOX_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc holds service configs (postgresql, mysql, ...) and credentials: only what programs need to start is shown.
_ETC_ALLOWED: Final = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/os-release",
    "/etc/mime.types",
)
_LIMIT_SIGNALS: Final = frozenset({signal.SIGXCPU, signal.SIGXFSZ, signal.SIGKILL})
_END: Final = object()
_PROBE_WALL_CLOCK_S: Final = 20.0
_DRAIN_GRACE_S: Final = 2.0
_PARTIAL_FLUSH_S: Final = 0.1
_MAX_PENDING_CHARS: Final = 64 * 1024


def _is_root() -> bool:
    return os.geteuid() == 0


def _sandbox_ids() -> tuple[int, int]:
    """uid/gid of nobody: RLIMIT_NPROC is not enforced for root, and root reads every file."""
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 65534
    for name in ("nogroup", "nobody"):
        with contextlib.suppress(KeyError):
            return uid, grp.getgrnam(name).gr_gid
    return uid, 65534


def _tool(name: str) -> str | None:
    """Absolute path of a wrapper binary: the platform's PATH first, then the system's (the child's env is clean,
    so a bare name would be looked up in SANDBOX_PATH only)."""
    return shutil.which(name) or shutil.which(name, path=SANDBOX_PATH)


def _python() -> str:
    # The system interpreter is visible in every tier; sys.executable may live under /root (pyenv) or next to the
    # platform's source (a venv), which the sandbox must not see and uid 65534 cannot read.
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return shutil.which("python3", path=SANDBOX_PATH) or sys.executable


def command_for(path: str) -> list[str]:
    """argv running a workspace file, chosen by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".py":
        return [_python(), path]
    if suffix == ".sh":
        return ["/bin/sh", path]
    if suffix in {".js", ".mjs", ".cjs"}:
        node = shutil.which("node", path=SANDBOX_PATH)
        if node is None:
            raise ValueError(f"cannot run {suffix} files: node is not installed")
        return [node, path]
    raise ValueError(f"cannot run {suffix or 'extension-less'} files")


def confine(workspace_dir: Path, relative_path: str) -> Path:
    """The file ``relative_path`` names inside the workspace; ValueError when it would leave it."""
    if not relative_path or "\x00" in relative_path:
        raise ValueError("the path is empty or contains NUL")
    rel = Path(relative_path)
    if rel.is_absolute():
        raise ValueError(f"{relative_path!r} is absolute: give a path relative to the workspace")
    if ".." in rel.parts:
        raise ValueError(f"{relative_path!r} contains '..': paths must stay inside the workspace")
    root = workspace_dir.resolve()
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{relative_path!r} resolves outside the workspace (a symlink?)")
    if not target.is_file():
        raise ValueError(f"{relative_path!r} is not a file of the workspace")
    return target


# --- limits and spawning ---------------------------------------------------------------------------------------


def _rlimits(limits: Limits, argv0: str) -> list[tuple[int, tuple[int, int]]]:
    memory = limits.memory_mb * 1024 * 1024
    pairs = [
        # Hard one second above soft: SIGXCPU first (a clear "limit"), SIGKILL if the program ignores it.
        (resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),
        (resource.RLIMIT_DATA, (memory, memory)),
        (resource.RLIMIT_FSIZE, (limits.file_size_mb * 1024 * 1024,) * 2),
        (resource.RLIMIT_NPROC, (limits.processes, limits.processes)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (256, 256)),
    ]
    if Path(argv0).name != "node":
        pairs.append((resource.RLIMIT_AS, (memory, memory)))
    return pairs


def _preexec(pairs: list[tuple[int, tuple[int, int]]]) -> Callable[[], None]:
    # Runs in the forked child before exec (after Popen's uid drop): only setrlimit calls on precomputed values.
    def apply() -> None:
        for which, value in pairs:
            resource.setrlimit(which, value)

    return apply


def _env(home: str) -> dict[str, str]:
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _system_binds() -> list[str]:
    args: list[str] = []
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    for entry in _ETC_ALLOWED:
        args += ["--ro-bind-try", entry, entry]
    return args


def _interpreter_binds(argv: list[str]) -> tuple[list[str], list[str]]:
    """Extra binds (and the rewritten argv) for an interpreter outside the system dirs (e.g. pyenv's)."""
    real = os.path.realpath(argv[0])
    if not os.path.isabs(argv[0]) or real.startswith(tuple(d + "/" for d in _SYSTEM_DIRS)):
        return [], argv
    prefix = str(Path(real).parent.parent)
    return ["--ro-bind", prefix, prefix], [real, *argv[1:]]


def _bwrap_argv(argv: list[str], copy: Path, limits: Limits, *, as_root: bool) -> list[str]:
    extra, argv = _interpreter_binds(argv)
    env = _env("/workspace")
    args = [
        _tool("bwrap") or "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if as_root:
        args += ["--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
    # --unshare-user is implied by --unshare-all only "if possible"; --disable-userns needs it for certain.
    args += ["--unshare-user", "--disable-userns", *_system_binds(), *extra]
    # /tmp is RAM: capped at the run's memory budget so it cannot fill the host's memory.
    tmp_size = str(limits.memory_mb * 1024 * 1024)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", tmp_size, "--tmpfs", "/tmp"]  # noqa: S108 -- its own tmpfs
    args += ["--bind", str(copy), "/workspace", "--chdir", "/workspace", "--", *argv]
    return args


@functools.cache
def _unshare_user_flag() -> str:
    # --map-current-user keeps the run a plain uid inside (no capabilities in its namespaces); util-linux < 2.38
    # only has --map-root-user.
    try:
        helptext = subprocess.run(  # noqa: S603 -- a fixed argv
            [_tool("unshare") or "unshare", "--help"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "--map-root-user"
    return "--map-current-user" if "--map-current-user" in helptext else "--map-root-user"


def _namespaces_argv(argv: list[str]) -> list[str]:
    # sh is PID 1 of the namespace, so the program is an ordinary process (PID 1 ignores default-action signals
    # such as SIGXCPU) and its signal death comes back as 128+n.
    return [
        _tool("unshare") or "unshare",
        "--user",
        _unshare_user_flag(),
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        "/bin/sh",
        "-c",
        '"$@"; exit $?',
        "sandbox",
        *argv,
    ]


# --- the workspace copy ------------------------------------------------------------------------------------------


def _copy_regular(src: str, dst: str) -> str:
    # Only regular files: a FIFO would block the copy, a device must not be opened. Symlinks are kept as links
    # (copytree symlinks=True), never followed with the platform's privileges.
    if stat.S_ISREG(os.lstat(src).st_mode):
        shutil.copy2(src, dst)
    return dst


def _make_copy(workspace_dir: Path, owner: tuple[int, int] | None) -> tuple[Path, Path]:
    root = Path(tempfile.mkdtemp(prefix="orchestrator-sandbox-"))
    copy = root / "workspace"
    shutil.copytree(workspace_dir, copy, symlinks=True, copy_function=_copy_regular)
    if owner is not None:
        os.lchown(root, *owner)
        # os.walk never descends through symlinks: a link to /etc in the workspace must not get /etc chowned.
        for directory, dirs, files in os.walk(copy):
            for name in (".", *dirs, *files):
                os.lchown(os.path.join(directory, name), *owner)
    return root, copy


def _remove(root: Path) -> None:
    def retry(func: Callable[..., object], path: str, _exc: object) -> None:
        # The run may have left dirs without write/exec permission; the platform owns the temp root.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)

    shutil.rmtree(root, onerror=retry)


def _pipe_holders(read_fd: int, uid: int) -> list[int]:
    """PIDs of ``uid`` holding the write end of our output pipe: the run's descendants, even those that left its
    session. Only write ends count (both ends share the inode): a child the platform forks meanwhile may briefly
    hold a copy of our read end, and must not be killed for it."""
    target = f"pipe:[{os.fstat(read_fd).st_ino}]"
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid != uid:
                continue
            for fd in os.scandir(f"{entry.path}/fd"):
                if os.readlink(fd.path) == target and _is_write_end(f"{entry.path}/fdinfo/{fd.name}"):
                    found.append(int(entry.name))
                    break
    return found


def _is_write_end(fdinfo: str) -> bool:
    for line in Path(fdinfo).read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE == os.O_WRONLY
    return False


# --- a run -------------------------------------------------------------------------------------------------------


class SandboxProcess:
    """One run of one workspace file.

    ``start()`` copies the workspace into a fresh temp dir (the writable copy) and spawns the program; iterate
    ``lines()`` (or ``chunks()`` for ``(monotonic_ts, text)`` pairs) for its combined stdout/stderr as it arrives;
    ``wait()`` returns the :class:`SandboxResult`; ``stop()`` kills the whole process tree. The copy is removed
    when the run ends. Output past ``limits.output_bytes`` is read and dropped (the program never blocks on a
    full pipe) and the result says it was truncated.
    """

    def __init__(
        self,
        workspace_dir: Path,
        relative_path: str,
        *,
        tier: Tier,
        limits: Limits,
        argv: list[str] | None = None,
    ) -> None:
        self._workspace = Path(workspace_dir)
        confine(self._workspace, relative_path)
        self.relative_path = relative_path
        self.tier = Tier(tier)
        self.limits = limits
        self.argv = list(argv) if argv is not None else command_for(relative_path)
        self._bwrap_as_root: bool | None = None  # None: as probe() found works
        self._queue: queue.Queue[object] = queue.Queue()
        self._done = threading.Event()
        self._exhausted = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self._result: SandboxResult | None = None
        self._started = 0.0
        self._stopped = False
        self._timed_out = False
        self._finished = False
        self._out_bytes = 0
        self._tail = ""  # the last output kept, for the failure's reason
        self._truncated = False
        self._drain_deadline: float | None = None
        self._timer: threading.Timer | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the sandbox process has not started")
        return self._proc.pid

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("the sandbox process was already started")
        owner = _sandbox_ids() if _is_root() else None
        # Root-launched bwrap maps the sandbox's uid to root: the copy then stays root's.
        root_bwrap = self.tier is Tier.bubblewrap and owner is not None and self._launch_bwrap_as_root()
        self._root, copy = _make_copy(self._workspace, None if root_bwrap else owner)
        try:
            self._proc = self._spawn(copy, owner)
        except BaseException:
            _remove(self._root)
            raise
        self._started = time.monotonic()
        self._reader = threading.Thread(target=self._read_loop, name=f"sandbox-out-{self.pid}", daemon=True)
        self._reader.start()
        self._timer = threading.Timer(self.limits.wall_clock_s, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()
        threading.Thread(target=self._wait_loop, name=f"sandbox-wait-{self.pid}", daemon=True).start()

    def lines(self) -> Iterator[str]:
        for _, text in self.chunks():
            yield text

    def chunks(self) -> Iterator[tuple[float, str]]:
        """``(time.monotonic(), text)`` for each piece of output (a line with its newline, or a partial line that
        waited 0.1 s for its end), until the run ends."""
        if self._proc is None:
            raise RuntimeError("the sandbox process has not started")
        while not self._exhausted:
            item = self._queue.get()
            if item is _END:
                self._exhausted = True
                return
            yield cast(tuple[float, str], item)

    def stop(self) -> None:
        if self._proc is None or self._finished:
            return
        self._stopped = True
        self._kill_tree()

    def wait(self) -> SandboxResult:
        if self._proc is None:
            raise RuntimeError("the sandbox process has not started")
        self._done.wait()
        assert self._result is not None
        return self._result

    # --- internals

    def _spawn(self, copy: Path, owner: tuple[int, int] | None) -> subprocess.Popen[bytes]:
        argv, home = self._tier_argv(copy), str(copy)
        cwd = "/" if self.tier is Tier.bubblewrap else str(copy)  # bwrap's --chdir puts the program in /workspace
        drop = owner is not None and not (self.tier is Tier.bubblewrap and self._launch_bwrap_as_root())
        return subprocess.Popen(  # noqa: S603 -- argv built here; the untrusted part is the sandboxed file
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_env(home),
            start_new_session=True,
            close_fds=True,
            user=owner[0] if drop and owner else None,
            group=owner[1] if drop and owner else None,
            extra_groups=[] if drop else None,
            preexec_fn=_preexec(_rlimits(self.limits, self.argv[0])),
        )

    def _launch_bwrap_as_root(self) -> bool:
        if self._bwrap_as_root is None:
            self._bwrap_as_root = _bwrap_needs_root()
        return self._bwrap_as_root

    def _tier_argv(self, copy: Path) -> list[str]:
        if self.tier is Tier.bubblewrap:
            return _bwrap_argv(self.argv, copy, self.limits, as_root=_is_root() and self._launch_bwrap_as_root())
        if self.tier is Tier.namespaces:
            return _namespaces_argv(self.argv)
        return list(self.argv)

    def _on_timeout(self) -> None:
        if not self._finished:
            self._timed_out = True
            self._kill_tree()

    def _kill_tree(self) -> None:
        assert self._proc is not None
        # The session/process group holds the program and its ordinary children; for bubblewrap and namespaces,
        # killing the wrapper kills the namespace's PID 1 and so every process in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self.tier is Tier.rlimits and self._proc.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                uid = _sandbox_ids()[0] if _is_root() else os.getuid()
                for pid in _pipe_holders(self._proc.stdout.fileno(), uid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)

    def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        poller = select.poll()  # not select(): a busy platform process may have fds above FD_SETSIZE
        poller.register(fd, select.POLLIN)
        while True:
            ready = poller.poll((_PARTIAL_FLUSH_S if pending else 0.5) * 1000)
            if not ready:
                if pending:
                    self._emit(pending)
                    pending = ""
                if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                    break
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            pending += decoder.decode(data)
            *complete, pending = pending.split("\n")
            for line in complete:
                self._emit(line + "\n")
            if len(pending) > _MAX_PENDING_CHARS:
                self._emit(pending)
                pending = ""
        pending += decoder.decode(b"", final=True)
        if pending:
            self._emit(pending)

    def _emit(self, text: str) -> None:
        if self._truncated:
            return
        data = text.encode()
        room = self.limits.output_bytes - self._out_bytes
        if len(data) > room:
            self._truncated = True
            text = data[:room].decode(errors="ignore")
        self._out_bytes += min(len(data), room)
        if text:
            self._tail = (self._tail + text)[-2048:]
            self._queue.put((time.monotonic(), text))

    def _wait_loop(self) -> None:
        try:
            self._result = self._reap()
        except BaseException as exc:  # never leave wait() hanging
            self._result = SandboxResult(None, "failed", 0, 0.0, 0.0, self._truncated, self.tier, f"sandbox: {exc}")
            raise
        finally:
            self._queue.put(_END)
            self._done.set()

    def _reap(self) -> SandboxResult:
        assert self._proc is not None and self._timer is not None and self._reader is not None
        # Wait without reaping first: while the child is a zombie its PID (the process group's id) cannot be
        # reused, so killing the leftovers -- background children of a program that exited -- hits only them.
        os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT)
        duration_ms = int((time.monotonic() - self._started) * 1000)
        self._finished = True
        self._timer.cancel()
        self._kill_tree()
        _, status, usage = os.wait4(self._proc.pid, 0)
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        self._drain_deadline = time.monotonic() + _DRAIN_GRACE_S
        self._reader.join()
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        if self._root is not None:
            _remove(self._root)
        status_, exit_code, reason = self._classify(self._proc.returncode)
        return SandboxResult(
            exit_code=exit_code,
            status=status_,
            duration_ms=duration_ms,
            cpu_time_s=round(usage.ru_utime + usage.ru_stime, 3),
            max_rss_mb=round(usage.ru_maxrss / 1024, 1),
            output_truncated=self._truncated,
            tier=self.tier,
            reason=reason,
        )

    def _classify(self, returncode: int) -> tuple[str, int | None, str | None]:
        if self._stopped:
            return "killed", None, "stopped"
        if self._timed_out:
            return "timeout", None, f"wall clock of {self.limits.wall_clock_s:g} s exceeded"
        if returncode == 0:
            return "completed", 0, None
        signum = self._signal_of(returncode)
        if signum is None:
            return "failed", returncode, f"exit code {returncode}{_error_hint(self._tail)}"
        name = signal.Signals(signum).name
        if signum in _LIMIT_SIGNALS:
            return "limit", None, f"killed by {name} ({_limit_hint(signum)})"
        return "failed", None, f"killed by {name}"

    def _signal_of(self, returncode: int) -> int | None:
        if returncode < 0:
            return -returncode
        # bwrap and the namespaces tier's sh report a signal death of the program as 128+n.
        wrapped = self.tier is not Tier.rlimits and 128 < returncode < 128 + signal.NSIG
        if wrapped and (returncode - 128) in {s.value for s in signal.Signals}:
            return returncode - 128
        return None


def _error_hint(tail: str) -> str:
    # Python turns the memory and file-size limits into exceptions (it ignores SIGXFSZ), not signals.
    if "MemoryError" in tail:
        return " (MemoryError: the memory limit?)"
    if "File too large" in tail:
        return " (File too large: the file size limit)"
    return ""


def _limit_hint(signum: int) -> str:
    return {
        signal.SIGXCPU: "CPU time limit",
        signal.SIGXFSZ: "file size limit",
        signal.SIGKILL: "CPU hard limit or out of memory",
    }.get(signal.Signals(signum), "resource limit")


# --- probing -------------------------------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_cache: list[TierCheck] | None = None
_bwrap_root_mode: bool = False


def _bwrap_needs_root() -> bool:
    if _is_root():
        probe()
    return _bwrap_root_mode


def _try(tier: Tier, *, bwrap_as_root: bool = False) -> str | None:
    """None when a trivial program runs to completion in ``tier``; else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-probe-") as tmp:
        Path(tmp, "probe.py").write_text("pass\n")
        limits = Limits(cpu_s=10, wall_clock_s=_PROBE_WALL_CLOCK_S, output_bytes=4096)
        try:
            run = SandboxProcess(Path(tmp), "probe.py", tier=tier, limits=limits)
            run._bwrap_as_root = bwrap_as_root
            run.start()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return f"could not start: {exc}"
        output = "".join(run.lines()).strip()
        result = run.wait()
    if result.status == "completed":
        return None
    return f"{result.status} ({result.reason}): {output[-300:] or 'no output'}"


def _check_bubblewrap() -> TierCheck:
    global _bwrap_root_mode
    if _tool("bwrap") is None:
        return TierCheck(Tier.bubblewrap, False, "bwrap is not installed (apt-get install bubblewrap)")
    error = _try(Tier.bubblewrap, bwrap_as_root=False)
    who = "uid 65534 (unprivileged user namespace)" if _is_root() else f"uid {os.getuid()}"
    if error is not None and _is_root():
        root_error = _try(Tier.bubblewrap, bwrap_as_root=True)
        if root_error is None:
            _bwrap_root_mode = True
            error, who = None, "root with --uid 65534 (unprivileged user namespaces fail: RLIMIT_NPROC not enforced)"
        else:
            error = f"{error}; launched as root: {root_error}"
    if error is not None:
        return TierCheck(Tier.bubblewrap, False, f"bwrap fails here: {error}")
    return TierCheck(
        Tier.bubblewrap,
        True,
        f"bwrap launched as {who}: no network; own PID/IPC/UTS/user/cgroup namespaces; read-only system dirs; "
        "only the workspace copy writable; resource limits",
    )


def _check_namespaces() -> TierCheck:
    if _tool("unshare") is None:
        return TierCheck(Tier.namespaces, False, "unshare (util-linux) is not installed")
    error = _try(Tier.namespaces)
    if error is not None:
        return TierCheck(Tier.namespaces, False, f"unshare fails here (user namespaces disabled?): {error}")
    who = "uid 65534" if _is_root() else f"uid {os.getuid()}"
    return TierCheck(
        Tier.namespaces,
        True,
        f"unshare as {who}: no network, own PID namespace, resource limits; the host filesystem is visible "
        "(file permissions protect it)",
    )


def _check_rlimits() -> TierCheck:
    error = _try(Tier.rlimits)
    if error is not None:
        return TierCheck(Tier.rlimits, False, f"a plain run fails here: {error}")
    who = "uid 65534" if _is_root() else f"uid {os.getuid()} (the platform's own user: it can read its files)"
    return TierCheck(
        Tier.rlimits,
        True,
        f"resource limits and a clean environment as {who}; no network or filesystem isolation",
    )


def probe(refresh: bool = False) -> list[TierCheck]:
    """Each tier, strongest first, actually tried on this host (cached per process)."""
    global _probe_cache
    with _probe_lock:
        if _probe_cache is None or refresh:
            _probe_cache = [_check_bubblewrap(), _check_namespaces(), _check_rlimits()]
        return list(_probe_cache)


def choose_tier(minimum: Tier | str) -> Tier:
    """The strongest tier that works here, refusing anything weaker than ``minimum``."""
    try:
        floor = Tier(str(minimum).strip().lower())
    except ValueError:
        raise ValueError(f"unknown sandbox tier {minimum!r}: bubblewrap, namespaces or rlimits") from None
    order = list(Tier)
    acceptable = order[: order.index(floor) + 1]
    checks = {check.tier: check for check in probe()}
    for tier in acceptable:
        if checks[tier].available:
            return tier
    why = "; ".join(f"{tier}: {checks[tier].reason}" for tier in acceptable)
    raise SandboxUnavailable(f"no sandbox at least as strong as {floor} works on this host ({why})")
