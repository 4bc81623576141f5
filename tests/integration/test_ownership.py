"""Tenancy helpers (services.ownership) against each real database, on a table that exists only here.

A caller sees what they own, what their organizations own and public items; platform admins see all.
What a caller cannot see is NotFound, never PermissionDenied (docs/api.md "Authentication and authorization").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.errors import NotFound, PermissionDenied, ValidationFailed
from persistence.base import NAMING_CONVENTION, IdMixin, OwnedMixin
from persistence.db import Database
from persistence.models import Organization, OrganizationMember, User
from services.ownership import get_visible, get_writable, resolve_owner, visible_to
from services.principal import Principal, Role


class OwnershipTestBase(DeclarativeBase):
    # A metadata of its own: the migrated schema and Base.metadata never learn about this table.
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OwnedThing(IdMixin, OwnedMixin, OwnershipTestBase):
    __tablename__ = "test_owned_things"

    name: Mapped[str] = mapped_column(String(100), nullable=False)


@dataclass(frozen=True)
class World:
    """Alice belongs to Acme, Bob to Globex, Carol to nothing; `things` maps a name to its id."""

    alice: Principal
    bob: Principal
    carol: Principal
    admin: Principal
    acme_id: str
    globex_id: str
    things: dict[str, str]


THINGS = {
    # name: (owner, is_public)
    "alice-private": ("alice", False),
    "bob-private": ("bob", False),
    "bob-public": ("bob", True),
    "acme-private": ("acme", False),
    "globex-private": ("globex", False),
    "globex-public": ("globex", True),
}


@pytest.fixture
def owned_things_table(db: Database) -> Iterator[None]:
    OwnershipTestBase.metadata.create_all(db.engine)
    try:
        yield
    finally:
        OwnershipTestBase.metadata.drop_all(db.engine)


@pytest.fixture
def world(db: Database, owned_things_table: None) -> World:
    with db.transaction() as session:
        users = {
            name: User(email=f"{name}@example.com", password_hash="not-a-real-hash", role=role, preferences={})
            for name, role in [("alice", "agent"), ("bob", "agent"), ("carol", "agent"), ("admin", "admin")]
        }
        session.add_all(users.values())
        session.flush()
        orgs = {
            "acme": Organization(name="Acme", slug="acme", created_by=users["alice"].id),
            "globex": Organization(name="Globex", slug="globex", created_by=users["bob"].id),
        }
        session.add_all(orgs.values())
        session.flush()
        session.add_all(
            [
                OrganizationMember(organization_id=orgs["acme"].id, user_id=users["alice"].id, role="member"),
                OrganizationMember(organization_id=orgs["globex"].id, user_id=users["bob"].id, role="owner"),
            ]
        )
        owners = {name: ("user", user.id) for name, user in users.items()}
        owners |= {name: ("organization", org.id) for name, org in orgs.items()}
        things = {
            name: OwnedThing(name=name, owner_type=owners[owner][0], owner_id=owners[owner][1], is_public=public)
            for name, (owner, public) in THINGS.items()
        }
        session.add_all(things.values())
        session.flush()
        return World(
            alice=Principal(user_id=users["alice"].id, role=Role.agent),
            bob=Principal(user_id=users["bob"].id, role=Role.agent),
            carol=Principal(user_id=users["carol"].id, role=Role.agent),
            admin=Principal(user_id=users["admin"].id, role=Role.admin),
            acme_id=orgs["acme"].id,
            globex_id=orgs["globex"].id,
            things={name: thing.id for name, thing in things.items()},
        )


def _visible_names(db: Database, principal: Principal) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(OwnedThing.name).where(visible_to(OwnedThing, principal))))


# --- visible_to ----------------------------------------------------------------------------------------


def test_a_user_sees_own_items_their_organizations_items_and_public_items(db: Database, world: World) -> None:
    assert _visible_names(db, world.alice) == {"alice-private", "acme-private", "bob-public", "globex-public"}
    assert _visible_names(db, world.bob) == {"bob-private", "bob-public", "globex-private", "globex-public"}


def test_a_user_in_no_organization_sees_only_public_items(db: Database, world: World) -> None:
    assert _visible_names(db, world.carol) == {"bob-public", "globex-public"}


def test_an_admin_sees_every_item(db: Database, world: World) -> None:
    assert _visible_names(db, world.admin) == set(THINGS)


def test_visibility_follows_membership_changes(db: Database, world: World) -> None:
    with db.transaction() as session:
        session.add(OrganizationMember(organization_id=world.globex_id, user_id=world.carol.user_id, role="member"))
    assert "globex-private" in _visible_names(db, world.carol)
    with db.transaction() as session:
        session.delete(session.get(OrganizationMember, (world.globex_id, world.carol.user_id)))
    assert "globex-private" not in _visible_names(db, world.carol)


def test_the_owner_type_is_part_of_the_match(db: Database, world: World) -> None:
    # An id alone grants nothing: a "user" item whose owner_id is Acme's id is not Acme's, and an
    # "organization" item whose owner_id is Alice's user id is not Alice's.
    with db.transaction() as session:
        session.add_all(
            [
                OwnedThing(name="user-typed", owner_type="user", owner_id=world.acme_id),
                OwnedThing(name="org-typed", owner_type="organization", owner_id=world.alice.user_id),
            ]
        )
        session.flush()
        ids = {thing.name: thing.id for thing in session.scalars(select(OwnedThing))}
    assert {"user-typed", "org-typed"}.isdisjoint(_visible_names(db, world.alice))
    with db.session() as session:
        for name in ("user-typed", "org-typed"):
            with pytest.raises(NotFound):
                get_visible(session, OwnedThing, ids[name], world.alice)


# --- get_visible / get_writable ------------------------------------------------------------------------


def test_get_visible_returns_what_the_caller_may_see(db: Database, world: World) -> None:
    with db.session() as session:
        for name in ("alice-private", "acme-private", "bob-public", "globex-public"):
            assert get_visible(session, OwnedThing, world.things[name], world.alice).name == name
        for name in THINGS:
            assert get_visible(session, OwnedThing, world.things[name], world.admin).name == name


def test_get_visible_is_not_found_for_what_the_caller_may_not_see(db: Database, world: World) -> None:
    with db.session() as session:
        for name in ("bob-private", "globex-private"):
            with pytest.raises(NotFound) as hidden:
                get_visible(session, OwnedThing, world.things[name], world.alice)
            with pytest.raises(NotFound) as missing:
                get_visible(session, OwnedThing, "no-such-id", world.alice)
            # The same answer as for an id that does not exist.
            assert hidden.value.message == missing.value.message


def test_get_writable_returns_the_item_to_its_owner_org_members_and_admins(db: Database, world: World) -> None:
    with db.session() as session:
        assert get_writable(session, OwnedThing, world.things["alice-private"], world.alice).name == "alice-private"
        # Any member of the owning organization may change it, not only its owners.
        assert get_writable(session, OwnedThing, world.things["acme-private"], world.alice).name == "acme-private"
        assert get_writable(session, OwnedThing, world.things["bob-public"], world.bob).name == "bob-public"
        assert get_writable(session, OwnedThing, world.things["globex-public"], world.bob).name == "globex-public"
        for name in THINGS:
            assert get_writable(session, OwnedThing, world.things[name], world.admin).name == name


def test_get_writable_is_not_found_for_an_item_the_caller_cannot_see(db: Database, world: World) -> None:
    with db.session() as session:
        for name in ("bob-private", "globex-private"):
            with pytest.raises(NotFound):
                get_writable(session, OwnedThing, world.things[name], world.alice)
        with pytest.raises(NotFound):
            get_writable(session, OwnedThing, "no-such-id", world.alice)


def test_get_writable_refuses_someone_elses_public_item(db: Database, world: World) -> None:
    with db.session() as session:
        for name in ("bob-public", "globex-public"):
            with pytest.raises(PermissionDenied):
                get_writable(session, OwnedThing, world.things[name], world.alice)
            with pytest.raises(PermissionDenied):
                get_writable(session, OwnedThing, world.things[name], world.carol)


# --- resolve_owner -------------------------------------------------------------------------------------


def test_resolve_owner_defaults_to_the_caller(db: Database, world: World) -> None:
    with db.session() as session:
        assert resolve_owner(session, world.alice, None, None) == ("user", world.alice.user_id)
        assert resolve_owner(session, world.alice, "user", None) == ("user", world.alice.user_id)
        assert resolve_owner(session, world.alice, "USER", world.alice.user_id) == ("user", world.alice.user_id)


def test_resolve_owner_refuses_another_users_id_for_non_admins(db: Database, world: World) -> None:
    with db.session() as session:
        with pytest.raises(PermissionDenied):
            resolve_owner(session, world.alice, "user", world.bob.user_id)
        with pytest.raises(PermissionDenied):
            resolve_owner(session, world.alice, None, world.bob.user_id)
        assert resolve_owner(session, world.admin, "user", world.bob.user_id) == ("user", world.bob.user_id)


def test_resolve_owner_allows_the_callers_organizations(db: Database, world: World) -> None:
    with db.session() as session:
        assert resolve_owner(session, world.alice, "organization", world.acme_id) == ("organization", world.acme_id)
        assert resolve_owner(session, world.alice, "Organization", world.acme_id) == ("organization", world.acme_id)
        assert resolve_owner(session, world.admin, "organization", world.globex_id) == (
            "organization",
            world.globex_id,
        )


def test_resolve_owner_is_not_found_for_an_organization_the_caller_is_not_in(db: Database, world: World) -> None:
    with db.session() as session:
        with pytest.raises(NotFound) as foreign:
            resolve_owner(session, world.alice, "organization", world.globex_id)
        with pytest.raises(NotFound) as missing:
            resolve_owner(session, world.alice, "organization", "no-such-org")
        assert foreign.value.message == missing.value.message


def test_resolve_owner_requires_the_organization_id(db: Database, world: World) -> None:
    with db.session() as session, pytest.raises(ValidationFailed) as raised:
        resolve_owner(session, world.alice, "organization", None)
    assert [issue.field for issue in raised.value.details] == ["owner_id"]


def test_resolve_owner_rejects_an_unknown_owner_type(db: Database, world: World) -> None:
    with db.session() as session:
        for owner_type in ("team", "users", "admin"):
            with pytest.raises(ValidationFailed) as raised:
                resolve_owner(session, world.alice, owner_type, world.alice.user_id)
            assert [issue.field for issue in raised.value.details] == ["owner_type"]
        with pytest.raises(ValidationFailed):
            resolve_owner(session, world.admin, "team", world.acme_id)


def test_resolve_owner_refuses_an_organization_that_does_not_exist_even_for_admins(db: Database, world: World) -> None:
    with db.session() as session, pytest.raises(NotFound):
        resolve_owner(session, world.admin, "organization", "no-such-org")
