"""Batching of concurrent requests' blocking work on an event loop (an API replica).

A request `await`s `Batcher.submit(item)`. When no batch is under way, its item is run at once, alone;
while one is, items wait and the next batch takes all of them (up to `max_batch`). Idle, a call costs what
it always did; under load, one thread hop and one round trip serve many requests, and each request still
gets its own outcome only when the batch that carried it is done.

`run(items)` runs in a worker thread, in the first item's context (its trace, its correlation id), inside
`around(every item's context)` when given (a span linking each request's trace), and returns one outcome
per item, in order: a result, or the exception that item alone fails with. If it raises one of
`split_on`, each item is run again on its own, so that only the offending one fails; anything else it
raises is every item's outcome.

One instance per event loop: its state is only touched from that loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import anyio.to_thread

log = logging.getLogger("orchestrator.batching")

Item = TypeVar("Item")
Result = TypeVar("Result")

_Entry = tuple[Item, asyncio.Future, contextvars.Context]


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[Sequence[Item]], list[Result | Exception]],
        *,
        max_batch: int = 256,
        split_on: tuple[type[Exception], ...] = (),
        around: Callable[[list[contextvars.Context]], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self._run = run
        self._around = around
        self._max_batch = max_batch
        self._split_on = split_on
        self._pending: list[_Entry] = []
        self._drain: asyncio.Task | None = None
        self.batches = 0  # batches run, and items they carried: for tests and the curious
        self.items = 0

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        # The item's context: a batch runs in its first item's (trace, correlation id); `around` sees all.
        self._pending.append((item, future, contextvars.copy_context()))
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._drain_pending())
        return await future

    async def _drain_pending(self) -> None:
        while self._pending:
            # A request cancelled before its batch started is not run at all.
            batch = [entry for entry in self._pending[: self._max_batch] if not entry[1].done()]
            del self._pending[: self._max_batch]
            if not batch:
                continue
            try:
                await self._run_batch(batch)
            except BaseException as exc:  # no request may wait forever for a batch that broke
                failure = exc if isinstance(exc, Exception) else RuntimeError(f"batch interrupted: {exc!r}")
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise

    def _run_around(self, batch: list[_Entry]) -> list[Result | Exception]:
        items = [item for item, _, _ in batch]
        if self._around is None:
            return self._run(items)
        with self._around([context for _, _, context in batch]):
            return self._run(items)

    async def _run_batch(self, batch: list[_Entry]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes: list[Result | Exception] = await anyio.to_thread.run_sync(
                batch[0][2].run, self._run_around, batch
            )
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except self._split_on as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                log.warning("a batch of %d failed (%s): running each on its own", len(batch), type(exc).__name__)
                for entry in batch:
                    await self._run_batch([entry])
                return
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
