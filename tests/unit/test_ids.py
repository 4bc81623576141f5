from __future__ import annotations

import uuid

from core.ids import is_uuid, new_id


def test_ids_are_uuid7_and_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(value).version == 7 for value in ids[:10])


def test_is_uuid() -> None:
    assert is_uuid(new_id())
    assert not is_uuid("not-a-uuid")
