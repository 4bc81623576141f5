"""Project workspaces: the files a requirement pipeline writes, run in a sandbox, archived by a
reset and restored from archives.

A project's workspace is a directory `<workspace dir>/<project id>/` holding `files/` (the workspace) and
`archives/` (`<name>.tar.gz` with `<name>.json`, its manifest). Every path a client or a pipeline names is
relative to `files/`: absolute paths, `..`, and anything that resolves outside (a symlink pointing out) are
refused, as are archive names that are not plain names. Files, counts and total bytes are limited by
settings (`ORCHESTRATOR_WORKSPACE_MAX_*`). Writes go to a temporary file renamed into place, so a reader
never sees half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core.clock import utcnow
from core.errors import FieldIssue, NotFound, WorkspaceError
from core.settings import Settings, WorkspaceSettings

RUNNERS = {".py": "python", ".sh": "sh", ".js": "node"}
ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_PATH = 255


def workspace_root(settings: Settings) -> Path:
    configured = settings.workspaces.workspace_dir
    return Path(configured).expanduser().resolve() if configured else settings.data_dir / "workspaces"


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path  # <workspace dir>/<project id>
    limits: WorkspaceSettings

    @classmethod
    def of(cls, settings: Settings, project_id: str) -> Workspace:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", project_id):
            raise ValueError(f"invalid project id {project_id!r}")
        return cls(workspace_root(settings) / project_id, settings.workspaces)

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    # --- files -------------------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """The file `path` names inside the workspace, refused if it could name anything outside."""
        relative = _relative(path)
        base = self.files.resolve()
        target = (base / relative).resolve()
        if target != base and base not in target.parents:
            raise _refused(path, "resolves outside the workspace (a symlink pointing out?)")
        return target

    def list_files(self) -> list[dict[str, Any]]:
        if not self.files.is_dir():
            return []
        found = []
        base = self.files.resolve()
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not Path(dirpath, d).is_symlink())
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or name.startswith(".upload-"):
                    continue
                found.append(describe(path.relative_to(base).as_posix(), path.stat()))
        return found

    def read(self, path: str) -> Path:
        target = self.resolve(path)
        if not target.is_file():
            raise NotFound("File not found in the workspace")
        return target

    def write(self, path: str, content: bytes | str) -> dict[str, Any]:
        """Create or replace a file, within the workspace's limits."""
        data = content.encode() if isinstance(content, str) else content
        limits = self.limits
        if len(data) > limits.workspace_max_file_bytes:
            raise _refused(path, f"larger than the {limits.workspace_max_file_bytes} bytes a workspace file may be")
        target = self.resolve(path)
        existing = self.list_files()
        replaced = next((f for f in existing if f["path"] == target.relative_to(self.files.resolve()).as_posix()), None)
        if replaced is None and len(existing) >= limits.workspace_max_files:
            raise _refused(path, f"the workspace holds its limit of {limits.workspace_max_files} files")
        total = sum(f["size"] for f in existing) - (replaced["size"] if replaced else 0) + len(data)
        if total > limits.workspace_max_bytes:
            raise _refused(path, f"the workspace would exceed its limit of {limits.workspace_max_bytes} bytes")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(path)  # a directory created meanwhile may not be a symlink out
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return describe(target.relative_to(self.files.resolve()).as_posix(), target.stat())

    # --- archives ----------------------------------------------------------------------------------

    def reset(self, *, context: dict[str, Any]) -> dict[str, Any]:
        """Archive the workspace (a `.tar.gz` and a manifest of files, sizes and hashes, plus `context`: the
        requirements and runs), then clear it."""
        files = self.list_files()
        name = self._new_archive_name()
        self.archives.mkdir(parents=True, exist_ok=True)
        entries = []
        tmp = self.archives / f".{name}.tar.gz"
        with tarfile.open(tmp, "w:gz") as archive:
            for item in files:
                source = self.files / item["path"]
                data = source.read_bytes()
                entries.append({"path": item["path"], "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
                info = tarfile.TarInfo(item["path"])
                info.size, info.mtime, info.mode = len(data), int(source.stat().st_mtime), 0o644
                archive.addfile(info, io.BytesIO(data))
        os.replace(tmp, self.archives / f"{name}.tar.gz")
        manifest = {
            "name": name,
            "created": _iso(utcnow()),
            "files": entries,
            "size_bytes": sum(e["size"] for e in entries),
            **context,
        }
        (self.archives / f"{name}.json").write_text(json.dumps(manifest, indent=2, default=str))
        if self.files.exists():
            shutil.rmtree(self.files)
        self.files.mkdir(parents=True, exist_ok=True)
        return {
            "status": "success",
            "archive_path": f"archives/{name}",
            "archive_name": name,
            "files_archived": len(entries),
            "workspace_cleared": True,
        }

    def list_archives(self) -> list[dict[str, Any]]:
        if not self.archives.is_dir():
            return []
        found = []
        for manifest in sorted(self.archives.glob("*.json"), reverse=True):
            data = json.loads(manifest.read_text())
            found.append(
                {
                    "name": data["name"],
                    "created": data["created"],
                    "files": len(data["files"]),
                    "size": human_size(data["size_bytes"]),
                    "size_bytes": data["size_bytes"],
                }
            )
        return found

    def manifest(self, name: str) -> dict[str, Any]:
        if not ARCHIVE_NAME.fullmatch(name):
            raise WorkspaceError("Invalid archive name", details=[FieldIssue("name", "a name from the archive list")])
        path = self.archives / f"{name}.json"
        if not path.is_file():
            raise NotFound("Archive not found")
        return json.loads(path.read_text())

    def restore(self, name: str, path: str) -> dict[str, Any]:
        """Copy one file of an archive back into the workspace (replacing the file of that path)."""
        manifest = self.manifest(name)
        relative = _relative(path).as_posix()
        if not any(entry["path"] == relative for entry in manifest["files"]):
            raise NotFound("File not found in the archive")
        with tarfile.open(self.archives / f"{name}.tar.gz", "r:gz") as archive:
            member = archive.getmember(relative)
            if not member.isfile():
                raise NotFound("File not found in the archive")
            source = archive.extractfile(member)
            data = source.read() if source else b""
        return self.write(relative, data)

    def _new_archive_name(self) -> str:
        base = f"project_{utcnow().strftime('%Y%m%d_%H%M%S')}"
        name, n = base, 1
        while (self.archives / f"{name}.json").exists():
            n += 1
            name = f"{base}_{n}"
        return name


def describe(path: str, stat: os.stat_result) -> dict[str, Any]:
    suffix = PurePosixPath(path).suffix.lower()
    runner = RUNNERS.get(suffix)
    metadata: dict[str, Any] = {"command": f"{runner} {path}"} if runner else {}
    return {
        "name": PurePosixPath(path).name,
        "path": path,
        "size": stat.st_size,
        "created": _iso(datetime.fromtimestamp(stat.st_mtime, UTC)),
        "runnable": runner is not None,
        "metadata": metadata,
    }


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def _relative(path: str) -> PurePosixPath:
    if not path or len(path) > MAX_PATH or "\x00" in path or "\\" in path:
        raise _refused(path, f"a relative path of at most {MAX_PATH} characters")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise _refused(path, "absolute paths are refused: name a path inside the workspace")
    if any(part in ("..", ".") for part in pure.parts) or not pure.parts:
        raise _refused(path, "'..' and '.' are refused: name a path inside the workspace")
    if any(part.startswith(".upload-") for part in pure.parts):
        raise _refused(path, "names starting with '.upload-' are reserved")
    return pure


def _refused(path: str, why: str) -> WorkspaceError:
    return WorkspaceError(f"Workspace path refused: {why}", details=[FieldIssue("path", why)])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
