"""Group commit: the small writes of many concurrent requests in one transaction.

A request `await`s `GroupCommit.submit(item)`. When no transaction of the group is under way, its item is
written at once, alone; while one is, items wait and the next transaction takes all of them (up to
`max_batch`). Idle, a write costs what it always did; under load, one transaction (one thread hop, one
round trip per statement, one commit) carries many requests' rows, and each request still returns only
after its own row is committed: nothing is acknowledged that a crash could lose.

`write(session, items)` runs in the transaction and returns one outcome per item, in order: a result, or
the exception that item alone fails with (it must only have read then, so the others can commit). If the
transaction itself fails on a constraint, each item is written again on its own, so that only the
offending one fails; any other failure (the database unreachable) is every item's.

One instance per event loop (an API replica): its state is only touched from that loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from persistence.db import Database

log = logging.getLogger("orchestrator.db")

Item = TypeVar("Item")
Result = TypeVar("Result")

_Entry = tuple[Item, asyncio.Future, contextvars.Context]


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        db: Database,
        write: Callable[[Session, Sequence[Item]], list[Result | Exception]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._db = db
        self._write = write
        self._max_batch = max_batch
        self._pending: list[_Entry] = []
        self._drain: asyncio.Task | None = None
        self.batches = 0  # transactions committed or failed, for tests and the curious
        self.items = 0

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        # The item's context: its transaction runs in the first item's (trace, correlation id).
        self._pending.append((item, future, contextvars.copy_context()))
        if self._drain is None:
            self._drain = loop.create_task(self._drain_pending())
        return await future

    async def _drain_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._commit(batch)
        finally:
            self._drain = None

    async def _commit(self, batch: list[_Entry]) -> None:
        items = [item for item, _, _ in batch]
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes: list[Result | Exception] = await run_in_threadpool(batch[0][2].run, self._transaction, items)
        except IntegrityError as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                log.warning("a group of %d writes broke a constraint: writing each on its own", len(batch))
                for entry in batch:
                    await self._commit([entry])
                return
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request was cancelled meanwhile; its row, if written, stays
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _transaction(self, items: list[Item]) -> list[Result | Exception]:
        with self._db.transaction() as session:
            return self._write(session, items)

