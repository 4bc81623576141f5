"""Registration, login and the authenticated profile, on every database backend."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.settings import Settings
from serve_app.app import create_app
from services.tokens import ACCESS, TokenService
from tests.conftest import make_settings

PASSWORD = "correct-horse-battery"


def register(client: TestClient, email: str, **extra) -> dict:
    response = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert {"code", "message", "details", "timestamp", "correlation_id"} <= error.keys()
    assert error["timestamp"].endswith("Z")
    assert error["correlation_id"] == response.headers["X-Correlation-ID"]
    return error


def test_register_login_and_read_own_profile(client: TestClient) -> None:
    created = register(client, "Ada@Example.com", firstName="Ada", last_name="Lovelace")
    assert created["email"] == "ada@example.com"
    assert created["first_name"] == "Ada" and created["last_name"] == "Lovelace"
    assert "password" not in str(created) and "hash" not in str(created)

    tokens = login(client, "ada@example.com")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["refresh_token"] and tokens["access_token"] != tokens["refresh_token"]
    assert tokens["user"]["id"] == created["id"]

    me = client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == created["id"]
    assert me.json()["last_login_at"] is not None
    assert tokens["user"]["name"] == me.json()["name"] == "Ada Lovelace"  # one display name, as some clients read it


def test_a_name_given_as_one_field_is_first_and_last_name(client: TestClient) -> None:
    created = register(client, "grace@example.com", name="Grace Brewster Hopper")
    assert (created["first_name"], created["last_name"]) == ("Grace", "Brewster Hopper")
    assert created["name"] == "Grace Brewster Hopper"
    headers = bearer(login(client, "grace@example.com")["access_token"])
    renamed = client.put("/api/v1/users/me", headers=headers, json={"name": "Amazing Grace"}).json()
    assert (renamed["first_name"], renamed["last_name"], renamed["name"]) == ("Amazing", "Grace", "Amazing Grace")
    assert register(client, "mono@example.com", name="Cher")["name"] == "Cher"


def test_register_answers_201_with_location(client: TestClient) -> None:
    response = client.post("/api/v1/auth/register", json={"email": "loc@example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/users/{response.json()['id']}"


def test_first_account_is_admin_and_later_ones_get_the_default_role(client: TestClient) -> None:
    assert register(client, "first@example.com")["role"] == "admin"
    assert register(client, "second@example.com")["role"] == "agent"


def test_duplicate_email_is_a_conflict_whatever_its_case(client: TestClient) -> None:
    register(client, "dup@example.com")
    response = client.post("/api/v1/auth/register", json={"email": "DUP@example.com", "password": PASSWORD})
    assert_error(response, 409, "CONFLICT")


def test_wrong_password_and_unknown_email_get_the_same_401(client: TestClient) -> None:
    register(client, "known@example.com")
    wrong = client.post("/api/v1/auth/login", json={"email": "known@example.com", "password": "not-the-password"})
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert assert_error(wrong, 401, "AUTHENTICATION_ERROR")["message"] == "Invalid email or password"
    assert assert_error(unknown, 401, "AUTHENTICATION_ERROR")["message"] == "Invalid email or password"


def test_invalid_registration_bodies_name_the_field(client: TestClient) -> None:
    error = assert_error(client.post("/api/v1/auth/register", json={"password": PASSWORD}), 422, "VALIDATION_ERROR")
    assert {"field": "email", "message": "Field is required"} in error["details"]
    error = assert_error(
        client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": PASSWORD}),
        422,
        "VALIDATION_ERROR",
    )
    assert error["details"][0]["field"] == "email"
    error = assert_error(
        client.post("/api/v1/auth/register", json={"email": "weak@example.com", "password": "abc"}),
        422,
        "VALIDATION_ERROR",
    )
    assert error["details"][0]["field"] == "password"


def test_a_rejected_registration_stores_nothing(client: TestClient) -> None:
    client.post("/api/v1/auth/register", json={"email": "weak@example.com", "password": "abc"})
    login_attempt = client.post("/api/v1/auth/login", json={"email": "weak@example.com", "password": "abc"})
    assert_error(login_attempt, 401, "AUTHENTICATION_ERROR")


def test_missing_tampered_and_expired_tokens_get_401(client: TestClient, settings: Settings) -> None:
    register(client, "tok@example.com")
    token = login(client, "tok@example.com")["access_token"]
    assert_error(client.get("/api/v1/users/me"), 401, "AUTHENTICATION_ERROR")
    assert_error(client.get("/api/v1/users/me", headers=bearer(token[:-3] + "abc")), 401, "AUTHENTICATION_ERROR")
    assert_error(client.get("/api/v1/users/me", headers=bearer("garbage")), 401, "AUTHENTICATION_ERROR")
    tokens = TokenService.from_settings(settings)
    user_id = login(client, "tok@example.com")["user"]["id"]
    expired = tokens.issue(subject=user_id, role="admin", token_type=ACCESS, ttl_s=-5).token
    error = assert_error(client.get("/api/v1/users/me", headers=bearer(expired)), 401, "AUTHENTICATION_ERROR")
    assert "expired" in error["message"]
    refresh = login(client, "tok@example.com")["refresh_token"]
    assert_error(client.get("/api/v1/users/me", headers=bearer(refresh)), 401, "AUTHENTICATION_ERROR")


def test_a_token_signed_by_another_platform_is_rejected(client: TestClient, tmp_path, database_url: str) -> None:
    other = TokenService.from_settings(make_settings(tmp_path / "other", database_url))
    register(client, "x@example.com")
    foreign = other.issue_access(subject="anyone", role="admin").token
    assert_error(client.get("/api/v1/users/me", headers=bearer(foreign)), 401, "AUTHENTICATION_ERROR")


def test_profile_update_merges_preferences(client: TestClient) -> None:
    register(client, "pref@example.com")
    token = login(client, "pref@example.com")["access_token"]
    first = client.put(
        "/api/v1/users/me", headers=bearer(token), json={"firstName": "Pat", "preferences": {"theme": "dark"}}
    )
    assert first.status_code == 200 and first.json()["first_name"] == "Pat"
    second = client.put("/api/v1/users/me", headers=bearer(token), json={"preferences": {"language": "en"}})
    assert second.json()["preferences"] == {"theme": "dark", "language": "en"}
    assert second.json()["first_name"] == "Pat"


def test_user_directory_is_for_admins_and_paginates(client: TestClient) -> None:
    register(client, "admin@example.com")
    for index in range(3):
        register(client, f"member{index}@example.com")
    admin = login(client, "admin@example.com")["access_token"]
    member = login(client, "member0@example.com")["access_token"]

    assert_error(client.get("/api/v1/users", headers=bearer(member)), 403, "AUTHORIZATION_ERROR")
    page = client.get("/api/v1/users?page=2&limit=3", headers=bearer(admin)).json()
    assert page["pagination"] == {"page": 2, "limit": 3, "total": 4, "pages": 2, "has_next": False, "has_prev": True}
    assert len(page["users"]) == 1
    assert page["links"]["prev"] == "/api/v1/users?page=1&limit=3"
    found = client.get("/api/v1/users?search=member1", headers=bearer(admin)).json()
    assert [user["email"] for user in found["users"]] == ["member1@example.com"]


def test_a_user_sees_only_their_own_record(client: TestClient) -> None:
    admin = register(client, "a@example.com")
    other = register(client, "b@example.com")
    token = login(client, "b@example.com")["access_token"]
    assert client.get(f"/api/v1/users/{other['id']}", headers=bearer(token)).status_code == 200
    assert_error(client.get(f"/api/v1/users/{admin['id']}", headers=bearer(token)), 404, "NOT_FOUND")


def test_self_registration_can_be_switched_off(tmp_path, db, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, auth={"allow_registration": False})
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/auth/register", json={"email": "no@example.com", "password": PASSWORD})
        assert_error(response, 403, "AUTHORIZATION_ERROR")
