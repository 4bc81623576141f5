"""Organizations and their members over HTTP, on every database backend.

Non-members get 404 for an organization and its members (never 403); members who may see it but not
change it get 403. The first account of each test is the platform admin, so tenancy tests register a
throwaway admin first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.errors import Conflict
from persistence.db import Database
from persistence.models import Organization, OrganizationMember
from services import organizations as orgs
from services.principal import Principal, Role
from tests.integration.test_auth_flow import assert_error, bearer, login, register

ORGS = "/api/v1/organizations"


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    headers: dict[str, str]


def _account(client: TestClient, email: str) -> Account:
    user = register(client, email)
    return Account(id=user["id"], email=user["email"], headers=bearer(login(client, email)["access_token"]))


def _accounts(client: TestClient, *names: str) -> list[Account]:
    """A throwaway platform admin first, then one `agent` account per name."""
    _account(client, "platform-admin@example.com")
    return [_account(client, f"{name}@example.com") for name in names]


def _create_org(client: TestClient, owner: Account, name: str = "Acme Corp", **body) -> dict:
    response = client.post(ORGS, headers=owner.headers, json={"name": name, **body})
    assert response.status_code == 201, response.text
    return response.json()


def _add_member(client: TestClient, org_id: str, by: Account, member: Account, role: str = "member") -> dict:
    response = client.post(f"{ORGS}/{org_id}/members", headers=by.headers, json={"user_id": member.id, "role": role})
    assert response.status_code == 201, response.text
    return response.json()


def _members(client: TestClient, org_id: str, viewer: Account) -> dict[str, str]:
    response = client.get(f"{ORGS}/{org_id}", headers=viewer.headers)
    assert response.status_code == 200, response.text
    return {member["user_id"]: member["role"] for member in response.json()["members"]}


def _listed_ids(client: TestClient, viewer: Account) -> list[str]:
    response = client.get(ORGS, headers=viewer.headers)
    assert response.status_code == 200, response.text
    return [org["id"] for org in response.json()["organizations"]]


# --- create --------------------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_makes_the_caller_owner(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    response = client.post(ORGS, headers=owner.headers, json={"name": "Acme Corp", "subscription_tier": "pro"})
    assert response.status_code == 201, response.text
    org = response.json()
    assert response.headers["Location"] == f"{ORGS}/{org['id']}"
    assert org["name"] == "Acme Corp"
    assert org["slug"] == "acme-corp"
    assert org["subscription_tier"] == "pro"
    assert org["role"] == "owner"
    assert [(m["user_id"], m["email"], m["role"]) for m in org["members"]] == [(owner.id, owner.email, "owner")]
    assert org["members"][0]["id"] == f"{org['id']}:{owner.id}"

    fetched = client.get(response.headers["Location"], headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == org["id"] and fetched.json()["role"] == "owner"


def test_create_keeps_an_explicit_slug_and_defaults_to_the_free_tier(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    org = _create_org(client, owner, name="Whatever Name", slug="Custom-Slug-9")
    assert org["slug"] == "custom-slug-9"
    assert org["subscription_tier"] == "free"


def test_duplicate_slug_is_a_conflict(client: TestClient) -> None:
    first, second = _accounts(client, "first", "second")
    _create_org(client, first, slug="acme")
    explicit = client.post(ORGS, headers=second.headers, json={"name": "Other", "slug": "acme"})
    assert_error(explicit, 409, "CONFLICT")
    _create_org(client, first, name="Acme Corp")
    derived = client.post(ORGS, headers=second.headers, json={"name": "ACME corp!"})
    assert_error(derived, 409, "CONFLICT")
    assert _listed_ids(client, second) == []


def test_invalid_slug_is_a_validation_error_on_the_slug_field(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    for slug in ("Bad Slug!", "-x", "x-", "a_b"):
        response = client.post(ORGS, headers=owner.headers, json={"name": "Acme", "slug": slug})
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert [detail["field"] for detail in error["details"]] == ["slug"], slug
    assert _listed_ids(client, owner) == []


def test_unknown_subscription_tier_is_a_validation_error(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    response = client.post(ORGS, headers=owner.headers, json={"name": "Acme", "subscription_tier": "platinum"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "subscription_tier"


# --- list ----------------------------------------------------------------------------------------------


def test_list_shows_only_the_callers_organizations_with_their_role(client: TestClient) -> None:
    alice, bob = _accounts(client, "alice", "bob")
    owned = _create_org(client, alice, name="Alice Owns")
    joined = _create_org(client, bob, name="Bob Owns")
    _add_member(client, joined["id"], bob, alice, role="admin")
    _create_org(client, bob, name="Bob Only")

    response = client.get(ORGS, headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"organizations", "pagination", "links"}
    assert {(org["name"], org["role"]) for org in body["organizations"]} == {
        ("Alice Owns", "owner"),
        ("Bob Owns", "admin"),
    }
    assert {org["id"] for org in body["organizations"]} == {owned["id"], joined["id"]}
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 2, "pages": 1, "has_next": False, "has_prev": False}


def test_list_paginates_newest_first(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    created = [_create_org(client, owner, name=f"Org {index}")["id"] for index in range(3)]

    first = client.get(f"{ORGS}?page=1&limit=2", headers=owner.headers).json()
    assert [org["id"] for org in first["organizations"]] == [created[2], created[1]]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2, "has_next": True, "has_prev": False}
    assert first["links"]["next"] == f"{ORGS}?page=2&limit=2"
    assert first["links"]["prev"] is None

    second = client.get(f"{ORGS}?page=2&limit=2", headers=owner.headers).json()
    assert [org["id"] for org in second["organizations"]] == [created[0]]
    assert second["pagination"] == {"page": 2, "limit": 2, "total": 3, "pages": 2, "has_next": False, "has_prev": True}
    assert second["links"]["prev"] == f"{ORGS}?page=1&limit=2"
    assert second["links"]["next"] is None


# --- tenant isolation ----------------------------------------------------------------------------------


def test_a_non_member_gets_404_for_the_organization_and_its_members(client: TestClient) -> None:
    alice, bob = _accounts(client, "alice", "bob")
    org = _create_org(client, alice, slug="alice-org")
    org_url = f"{ORGS}/{org['id']}"
    unknown = assert_error(client.get(f"{ORGS}/no-such-org", headers=bob.headers), 404, "NOT_FOUND")

    for method, url, body in [
        ("GET", org_url, None),
        ("PUT", org_url, {"name": "Hijacked"}),
        ("DELETE", org_url, None),
        ("POST", f"{org_url}/members", {"user_id": bob.id}),
        ("POST", f"{org_url}/members", {"email": bob.email, "role": "owner"}),
        ("PUT", f"{org_url}/members/{alice.id}", {"role": "member"}),
        ("PUT", f"{org_url}/members/{bob.id}", {"role": "owner"}),
        ("DELETE", f"{org_url}/members/{alice.id}", None),
        ("DELETE", f"{org_url}/members/{bob.id}", None),
    ]:
        response = client.request(method, url, headers=bob.headers, json=body)
        error = assert_error(response, 404, "NOT_FOUND")
        # The same answer as for an id that does not exist: nothing reveals that the organization exists.
        assert error["message"] == unknown["message"], (method, url)

    assert org["id"] not in _listed_ids(client, bob)
    unchanged = client.get(org_url, headers=alice.headers).json()
    assert unchanged["name"] == "Acme Corp"
    assert {m["user_id"]: m["role"] for m in unchanged["members"]} == {alice.id: "owner"}


def test_a_platform_admin_sees_every_organization(client: TestClient) -> None:
    admin = _account(client, "platform-admin@example.com")
    alice = _account(client, "alice@example.com")
    org = _create_org(client, alice)

    listed = client.get(ORGS, headers=admin.headers).json()["organizations"]
    assert [(item["id"], item["role"]) for item in listed] == [(org["id"], None)]
    detail = client.get(f"{ORGS}/{org['id']}", headers=admin.headers)
    assert detail.status_code == 200
    assert detail.json()["role"] is None
    assert [m["user_id"] for m in detail.json()["members"]] == [alice.id]


def test_machine_identities_cannot_create_organizations(client: TestClient) -> None:
    admin = _account(client, "platform-admin@example.com")
    minted = client.post("/api/v1/auth/token", headers=admin.headers, json={"user_id": "ci-bot", "role": "agent"})
    assert minted.status_code == 200, minted.text
    service = bearer(minted.json()["access_token"])
    assert_error(client.post(ORGS, headers=service, json={"name": "Bots"}), 403, "AUTHORIZATION_ERROR")


# --- member management ---------------------------------------------------------------------------------


def test_owner_adds_members_by_email_and_by_user_id(client: TestClient) -> None:
    owner, by_email, by_id = _accounts(client, "owner", "by-email", "by-id")
    org = _create_org(client, owner)

    response = client.post(f"{ORGS}/{org['id']}/members", headers=owner.headers, json={"email": "BY-EMAIL@example.com"})
    assert response.status_code == 201, response.text
    added = response.json()
    assert (added["user_id"], added["email"], added["role"]) == (by_email.id, by_email.email, "member")
    assert added["id"] == f"{org['id']}:{by_email.id}"

    response = client.post(
        f"{ORGS}/{org['id']}/members", headers=owner.headers, json={"user_id": by_id.id, "role": "admin"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "admin"

    assert _members(client, org["id"], owner) == {owner.id: "owner", by_email.id: "member", by_id.id: "admin"}
    # The new members now see the organization, with their own role.
    assert client.get(f"{ORGS}/{org['id']}", headers=by_email.headers).json()["role"] == "member"
    assert [item["role"] for item in client.get(ORGS, headers=by_id.headers).json()["organizations"]] == ["admin"]


def test_adding_an_existing_member_is_a_conflict(client: TestClient) -> None:
    owner, member = _accounts(client, "owner", "member")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, member)
    again = client.post(f"{ORGS}/{org['id']}/members", headers=owner.headers, json={"email": member.email})
    assert_error(again, 409, "CONFLICT")
    myself = client.post(f"{ORGS}/{org['id']}/members", headers=owner.headers, json={"user_id": owner.id})
    assert_error(myself, 409, "CONFLICT")
    assert _members(client, org["id"], owner) == {owner.id: "owner", member.id: "member"}


def test_adding_an_unknown_user_is_not_found(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    org = _create_org(client, owner)
    members_url = f"{ORGS}/{org['id']}/members"
    assert_error(client.post(members_url, headers=owner.headers, json={"user_id": "nobody"}), 404, "NOT_FOUND")
    by_email = client.post(members_url, headers=owner.headers, json={"email": "nobody@example.com"})
    assert_error(by_email, 404, "NOT_FOUND")
    assert _members(client, org["id"], owner) == {owner.id: "owner"}


def test_a_plain_member_sees_the_organization_but_cannot_manage_it(client: TestClient) -> None:
    owner, member, outsider = _accounts(client, "owner", "member", "outsider")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, member)
    org_url = f"{ORGS}/{org['id']}"

    assert client.get(org_url, headers=member.headers).status_code == 200
    for method, url, body in [
        ("POST", f"{org_url}/members", {"user_id": outsider.id}),
        ("PUT", f"{org_url}/members/{owner.id}", {"role": "member"}),
        ("PUT", f"{org_url}/members/{member.id}", {"role": "admin"}),
        ("DELETE", f"{org_url}/members/{owner.id}", None),
        ("PUT", org_url, {"name": "Renamed"}),
        ("DELETE", org_url, None),
    ]:
        assert_error(client.request(method, url, headers=member.headers, json=body), 403, "AUTHORIZATION_ERROR")

    assert _members(client, org["id"], owner) == {owner.id: "owner", member.id: "member"}
    assert client.get(org_url, headers=owner.headers).json()["name"] == "Acme Corp"


def test_an_org_admin_manages_members_but_not_owners(client: TestClient) -> None:
    owner, org_admin, newcomer, other = _accounts(client, "owner", "org-admin", "newcomer", "other")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, org_admin, role="admin")
    members_url = f"{ORGS}/{org['id']}/members"

    _add_member(client, org["id"], org_admin, newcomer)
    promoted = client.put(f"{members_url}/{newcomer.id}", headers=org_admin.headers, json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    removed = client.delete(f"{members_url}/{newcomer.id}", headers=org_admin.headers)
    assert removed.status_code == 200, removed.text

    add_owner = client.post(members_url, headers=org_admin.headers, json={"user_id": other.id, "role": "owner"})
    assert_error(add_owner, 403, "AUTHORIZATION_ERROR")
    assert_error(client.delete(f"{members_url}/{owner.id}", headers=org_admin.headers), 403, "AUTHORIZATION_ERROR")
    demote = client.put(f"{members_url}/{owner.id}", headers=org_admin.headers, json={"role": "member"})
    assert_error(demote, 403, "AUTHORIZATION_ERROR")
    self_promote = client.put(f"{members_url}/{org_admin.id}", headers=org_admin.headers, json={"role": "owner"})
    assert_error(self_promote, 403, "AUTHORIZATION_ERROR")

    assert _members(client, org["id"], owner) == {owner.id: "owner", org_admin.id: "admin"}


def test_managing_someone_who_is_not_a_member_is_not_found(client: TestClient) -> None:
    owner, stranger = _accounts(client, "owner", "stranger")
    org = _create_org(client, owner)
    members_url = f"{ORGS}/{org['id']}/members"
    update = client.put(f"{members_url}/{stranger.id}", headers=owner.headers, json={"role": "admin"})
    assert_error(update, 404, "NOT_FOUND")
    assert_error(client.delete(f"{members_url}/{stranger.id}", headers=owner.headers), 404, "NOT_FOUND")


# --- the last owner ------------------------------------------------------------------------------------


def test_last_owner_cannot_be_demoted(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    org = _create_org(client, owner)
    response = client.put(f"{ORGS}/{org['id']}/members/{owner.id}", headers=owner.headers, json={"role": "member"})
    assert_error(response, 409, "CONFLICT")
    assert _members(client, org["id"], owner) == {owner.id: "owner"}


def test_last_owner_cannot_leave(client: TestClient) -> None:
    owner, member = _accounts(client, "owner", "member")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, member)
    assert_error(client.delete(f"{ORGS}/{org['id']}/members/{owner.id}", headers=owner.headers), 409, "CONFLICT")
    assert _members(client, org["id"], owner) == {owner.id: "owner", member.id: "member"}


def test_an_owner_can_leave_once_another_member_is_owner(client: TestClient) -> None:
    founder, successor = _accounts(client, "founder", "successor")
    org = _create_org(client, founder)
    members_url = f"{ORGS}/{org['id']}/members"
    _add_member(client, org["id"], founder, successor)

    promoted = client.put(f"{members_url}/{successor.id}", headers=founder.headers, json={"role": "owner"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"
    left = client.delete(f"{members_url}/{founder.id}", headers=founder.headers)
    assert left.status_code == 200, left.text

    assert_error(client.get(f"{ORGS}/{org['id']}", headers=founder.headers), 404, "NOT_FOUND")
    assert org["id"] not in _listed_ids(client, founder)
    assert _members(client, org["id"], successor) == {successor.id: "owner"}
    # The successor is now the last owner, with the same protection.
    demote = client.put(f"{members_url}/{successor.id}", headers=successor.headers, json={"role": "admin"})
    assert_error(demote, 409, "CONFLICT")


def test_two_owners_leaving_at_the_same_time_leave_one_owner(client: TestClient, db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time, so the two removals cannot interleave")
    first, second = _accounts(client, "first", "second")
    org = _create_org(client, first)
    _add_member(client, org["id"], first, second, role="owner")
    outcomes: list[str] = []

    def second_leaves() -> None:
        try:
            with db.transaction() as session:
                orgs.remove_member(session, Principal(user_id=second.id, role=Role.agent), org["id"], second.id)
            outcomes.append("left")
        except Conflict:
            outcomes.append("conflict")

    with db.transaction() as session:
        orgs.remove_member(session, Principal(user_id=first.id, role=Role.agent), org["id"], first.id)
        session.flush()  # the first owner's removal is written, not yet committed
        worker = threading.Thread(target=second_leaves)
        worker.start()
        # A correct implementation makes the second removal wait for this transaction; give it the chance.
        worker.join(timeout=2)
    worker.join(timeout=30)
    assert not worker.is_alive()

    with db.session() as session:
        owners = session.scalar(
            select(func.count())
            .select_from(OrganizationMember)
            .where(OrganizationMember.organization_id == org["id"], OrganizationMember.role == "owner")
        )
    assert owners == 1, f"second owner's removal: {outcomes}"


def test_a_member_can_leave_on_their_own(client: TestClient) -> None:
    owner, member = _accounts(client, "owner", "member")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, member)
    left = client.delete(f"{ORGS}/{org['id']}/members/{member.id}", headers=member.headers)
    assert left.status_code == 200, left.text
    assert left.json()["message"]
    assert _listed_ids(client, member) == []
    assert_error(client.get(f"{ORGS}/{org['id']}", headers=member.headers), 404, "NOT_FOUND")
    assert _members(client, org["id"], owner) == {owner.id: "owner"}


# --- update and delete ---------------------------------------------------------------------------------


def test_update_changes_name_slug_and_tier(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    org = _create_org(client, owner, slug="acme")
    response = client.put(
        f"{ORGS}/{org['id']}",
        headers=owner.headers,
        json={"name": "Acme Labs", "slug": "acme-labs", "subscription_tier": "enterprise"},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["slug"], updated["subscription_tier"]) == ("Acme Labs", "acme-labs", "enterprise")
    assert updated["role"] == "owner" and [m["user_id"] for m in updated["members"]] == [owner.id]

    fetched = client.get(f"{ORGS}/{org['id']}", headers=owner.headers).json()
    assert (fetched["name"], fetched["slug"], fetched["subscription_tier"]) == ("Acme Labs", "acme-labs", "enterprise")
    # The old slug is free again.
    assert _create_org(client, owner, name="New Acme", slug="acme")["slug"] == "acme"


def test_update_to_a_taken_slug_is_a_conflict(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    _create_org(client, owner, name="First", slug="first")
    second = _create_org(client, owner, name="Second", slug="second")
    response = client.put(f"{ORGS}/{second['id']}", headers=owner.headers, json={"name": "Renamed", "slug": "first"})
    error = assert_error(response, 409, "CONFLICT")
    assert [detail["field"] for detail in error["details"]] == ["slug"]
    # Nothing of the rejected update is kept.
    fetched = client.get(f"{ORGS}/{second['id']}", headers=owner.headers).json()
    assert (fetched["name"], fetched["slug"]) == ("Second", "second")


def test_update_to_an_invalid_slug_is_a_validation_error(client: TestClient) -> None:
    (owner,) = _accounts(client, "owner")
    org = _create_org(client, owner)
    response = client.put(f"{ORGS}/{org['id']}", headers=owner.headers, json={"slug": "Bad Slug!"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [detail["field"] for detail in error["details"]] == ["slug"]


def test_an_org_admin_may_update_the_organization(client: TestClient) -> None:
    owner, org_admin = _accounts(client, "owner", "org-admin")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, org_admin, role="admin")
    response = client.put(f"{ORGS}/{org['id']}", headers=org_admin.headers, json={"name": "Renamed by admin"})
    assert response.status_code == 200, response.text
    assert client.get(f"{ORGS}/{org['id']}", headers=owner.headers).json()["name"] == "Renamed by admin"


def test_only_an_owner_may_delete_the_organization(client: TestClient, db: Database) -> None:
    owner, org_admin, member = _accounts(client, "owner", "org-admin", "member")
    org = _create_org(client, owner)
    _add_member(client, org["id"], owner, org_admin, role="admin")
    _add_member(client, org["id"], owner, member)
    org_url = f"{ORGS}/{org['id']}"

    assert_error(client.delete(org_url, headers=org_admin.headers), 403, "AUTHORIZATION_ERROR")
    assert client.get(org_url, headers=owner.headers).status_code == 200

    deleted = client.delete(org_url, headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    for account in (owner, org_admin, member):
        assert_error(client.get(org_url, headers=account.headers), 404, "NOT_FOUND")
        assert _listed_ids(client, account) == []
    with db.session() as session:
        assert session.get(Organization, org["id"]) is None
        remaining = session.scalar(
            select(func.count()).select_from(OrganizationMember).where(OrganizationMember.organization_id == org["id"])
        )
        assert remaining == 0
    # The slug can be used again.
    assert _create_org(client, owner)["slug"] == "acme-corp"


def test_adding_a_member_needs_a_user_id_or_an_email(client: TestClient) -> None:
    (owner,) = _accounts(client, "needs")
    org = _create_org(client, owner)
    response = client.post(f"/api/v1/organizations/{org['id']}/members", headers=owner.headers, json={"role": "member"})
    assert_error(response, 422, "VALIDATION_ERROR")


def test_adding_a_member_answers_201_with_location(client: TestClient) -> None:
    owner, newcomer = _accounts(client, "loc-owner", "loc-new")
    org = _create_org(client, owner)
    response = client.post(
        f"/api/v1/organizations/{org['id']}/members", headers=owner.headers, json={"user_id": newcomer.id}
    )
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/organizations/{org['id']}/members/{newcomer.id}"
