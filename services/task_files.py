"""Files attached to tasks: checked, stored in the file store, recorded, downloaded.

An upload is accepted when its media type is in `ORCHESTRATOR_UPLOAD_CONTENT_TYPES`, its bytes agree with
that type (the signature of images, PDF and archives; UTF-8 without NUL bytes for text) and it is within
`ORCHESTRATOR_MAX_UPLOAD_BYTES`. The bytes are stored first and the row written after; if the row cannot be
written the bytes are removed, so the store never keeps a file the database does not know.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, PayloadTooLarge, ValidationFailed
from core.ids import new_id
from core.settings import Settings
from persistence.files import LocalFileStore, TooLarge
from persistence.models import TaskFile
from services import events, tasks
from services.principal import Principal

# Leading bytes each binary type must start with.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "application/zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "application/gzip": (b"\x1f\x8b",),
}
TEXT_TYPES = frozenset({"application/json", "application/yaml", "application/x-yaml"})
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@lru_cache(maxsize=4)
def file_store(root: Path) -> LocalFileStore:
    return LocalFileStore(root)


def store_for(settings: Settings) -> LocalFileStore:
    return file_store(settings.file_storage_dir)


def media_type(declared: str | None, filename: str) -> str:
    """The declared type without parameters; a generic or missing one is guessed from the file name."""
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind in ("", "application/octet-stream"):
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        kind = guessed or "application/octet-stream"
    return kind


def content_problem(kind: str, head: bytes) -> str | None:
    """Why the first bytes of a file do not fit its media type, or None if they do."""
    if kind == "image/webp":
        return None if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else "the content is not a WebP image"
    if kind in SIGNATURES:
        if not head.startswith(SIGNATURES[kind]):
            return f"the content does not match {kind}"
        return None
    if kind.startswith("text/") or kind in TEXT_TYPES:
        if b"\x00" in head:
            return f"{kind} must be text, and this content is binary"
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.end < len(head) - 3 or exc.reason != "unexpected end of data":  # not a cut multi-byte char
                return f"{kind} must be UTF-8 text"
    return None


def safe_name(filename: str | None) -> str:
    """The name a download will carry: the last path part, printable, at most 255 characters."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255] or "file"


def upload(
    session_factory,
    settings: Settings,
    principal: Principal,
    task_id: str,
    source: BinaryIO,
    *,
    filename: str | None,
    declared_type: str | None,
    description: str | None,
) -> TaskFile:
    """Check, store and record one file. `session_factory` opens the transaction after the bytes are
    stored, so no database lock is held while a large upload is copied."""
    name = safe_name(filename)
    kind = media_type(declared_type, name)
    if not MEDIA_TYPE.match(kind) or kind not in settings.files.content_types:
        raise ValidationFailed("File type not accepted", details=[FieldIssue("file", f"{kind} is not accepted")])
    with session_factory.session() as session:
        tasks.get_task(session, principal, task_id)  # 404 before anything is stored
    file_id = new_id()
    store = store_for(settings)
    key = f"{task_id}/{file_id}"
    try:
        stored = store.put(key, source, max_bytes=settings.files.max_upload_bytes)
    except TooLarge as exc:
        raise PayloadTooLarge(f"File exceeds {exc.limit} bytes") from None
    try:
        problem = content_problem(kind, stored.head)
        if problem:
            raise ValidationFailed("File content does not match its type", details=[FieldIssue("file", problem)])
        with session_factory.transaction() as session:
            task = tasks.get_task(session, principal, task_id)
            record = TaskFile(
                id=file_id,
                task_id=task.id,
                name=name,
                description=description,
                mime_type=kind,
                size=stored.size,
                sha256=stored.sha256,
                storage_key=key,
                uploaded_by=principal.user_id,
            )
            session.add(record)
            events.emit(
                session,
                "task.updated",
                {**tasks.summary(task), "changed": ["files"], "file_id": file_id, "name": name},
                source="tasks",
                owner=task,
                subject_id=task.id,
            )
            session.flush()
            session.expunge(record)
        return record
    except BaseException:
        store.delete(key)
        raise


def files_query(task_id: str) -> Select[tuple[TaskFile]]:
    """A task's files, oldest first."""
    return select(TaskFile).where(TaskFile.task_id == task_id).order_by(TaskFile.uploaded_at, TaskFile.id)


def list_files(session: Session, task_id: str) -> list[TaskFile]:
    return list(session.scalars(files_query(task_id)))


def get_file(session: Session, principal: Principal, task_id: str, file_id: str) -> TaskFile:
    return tasks.get_attached(session, principal, task_id, TaskFile, file_id, "File")
