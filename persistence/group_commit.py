"""Group commit: the small writes of many concurrent requests in one transaction (`core.batching`).

Idle, a request's write is a transaction of its own; under load, one transaction (one thread hop, one
round trip per statement, one commit) carries many requests' rows, and each request is still answered
only after its own row is committed: nothing is acknowledged that a crash could lose.

`write(session, items)` runs in the transaction and returns one outcome per item, in order: a result, or
the exception that item alone fails with (it must only have read then, so the others can commit). If the
transaction breaks a constraint or the database refuses a value (a NUL character in a text), each item is
written again on its own, so that only the offending one fails; any other failure (the database
unreachable) is every item's. Traced, the transaction is a `group_commit` span in the first request's
trace, linked both ways with every request it carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from core import tracing
from core.batching import Batcher
from persistence.db import Database

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Batcher[Item, Result]):
    def __init__(
        self,
        db: Database,
        write: Callable[[Session, Sequence[Item]], list[Result | Exception]],
        *,
        max_batch: int = 256,
    ) -> None:
        def transaction(items: Sequence[Item]) -> list[Result | Exception]:
            with db.transaction() as session:
                return write(session, items)

        super().__init__(
            transaction,
            max_batch=max_batch,
            split_on=(IntegrityError, DataError),
            around=lambda contexts: tracing.batch_span("group_commit", contexts),
        )
