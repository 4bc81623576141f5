from __future__ import annotations

import uuid

from core.ids import new_id


def test_ids_are_uuid7_and_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(value).version == 7 for value in ids[:10])
