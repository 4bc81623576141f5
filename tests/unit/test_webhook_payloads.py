"""Webhook pieces with no I/O: bodies byte-identical to JavaScript's JSON.stringify, signatures, backoff,
event patterns and the secret box (delivery statuses: tests/unit/test_lifecycles.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess

import pytest

from core.crypto import DecryptionFailed, SecretBox
from services.webhooks import (
    backoff_s,
    event_matches,
    js_json,
    payload_body,
    signature,
)

# Values whose JSON spelling differs between Python's json.dumps and JavaScript's JSON.stringify.
TRICKY = {
    "integral float": 1.0,
    "large": 1e21,
    "small": 1e-7,
    "just above the exponent form": 1e-6,
    "below 1e21": 1e20,
    "beyond 2**53": 12345678901234567890,
    "negative zero": -0.0,
    "text": 'café ☕ \u2028 \x1f "quoted" back\\slash',
    "nested": {"b": 1, "10": 2, "2": 3, "01": 4, "a": [1.5, None, True, {"x": 2.0}]},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (1e20, "100000000000000000000"),
        (1.5e300, "1.5e+300"),
        (-0.0, "0"),
        (float("nan"), "null"),
        (2**60, "1152921504606847000"),
        ({"b": 1, "2": 2, "1": 3, "01": 4}, '{"1":3,"2":2,"b":1,"01":4}'),
        ("é\x1f", '"é\\u001f"'),
        ([1, 2.5, None, True], "[1,2.5,null,true]"),
    ],
)
def test_js_json_prints_values_as_javascript_does(value, expected) -> None:
    assert js_json(value) == expected


def test_a_body_is_a_fixed_point_of_parse_and_reserialise() -> None:
    """What a receiver does (`JSON.stringify(JSON.parse(raw))`) gives back the raw bytes."""
    from datetime import UTC, datetime

    body = payload_body("e1", "task.completed", datetime(2024, 1, 16, 15, 30, tzinfo=UTC), TRICKY, "c1")
    assert js_json(json.loads(body)) == body
    assert body.startswith('{"id":"e1","event":"task.completed","timestamp":"2024-01-16T15:30:00Z","data":{')


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run JavaScript's JSON.stringify")
def test_javascript_reserialises_the_body_to_the_same_bytes() -> None:
    from datetime import UTC, datetime

    body = payload_body("e1", "task.completed", datetime(2024, 1, 16, tzinfo=UTC), TRICKY, None)
    script = "const s=require('fs').readFileSync(0,'utf8'); process.stdout.write(JSON.stringify(JSON.parse(s)))"
    result = subprocess.run(["node", "-e", script], input=body.encode(), capture_output=True, check=True)
    assert result.stdout.decode() == body


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"event":"task.created"}'
    assert signature("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


def test_backoff_doubles_up_to_the_cap_with_jitter_in_its_upper_half() -> None:
    assert [backoff_s(n, 1.0, 300.0, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(1, 1.0, 300.0, rng=lambda: 0.0) == 0.5
    assert backoff_s(30, 1.0, 300.0, rng=lambda: 1.0) == 300.0
    assert backoff_s(1000, 1.0, 300.0, rng=lambda: 0.0) == 150.0


def test_event_patterns_match_names_prefixes_and_everything() -> None:
    assert event_matches(["task.created"], "task.created")
    assert not event_matches(["task.created"], "task.completed")
    assert event_matches(["task.*"], "task.sla_breached")
    assert not event_matches(["task.*"], "tasks.created")
    assert event_matches(["*"], "deploy.finished")


def test_the_secret_box_round_trips_and_rotates_keys() -> None:
    old = SecretBox(("old-key-" + "x" * 32,))
    token = old.encrypt("whsec-value")
    assert "whsec-value" not in token
    rotated = SecretBox(("new-key-" + "y" * 32, "old-key-" + "x" * 32))
    assert rotated.decrypt(token) == "whsec-value"
    with pytest.raises(DecryptionFailed):
        SecretBox(("another-key-" + "z" * 32,)).decrypt(token)


def test_the_encryption_key_is_generated_once_even_when_the_jwt_secret_is_configured(tmp_path) -> None:
    from pydantic import SecretStr

    from core.settings import load_settings, resolve_secrets

    settings = load_settings(root={"data_dir": tmp_path}, auth={"jwt_secret": SecretStr("j" * 48)})
    first, second = resolve_secrets(settings), resolve_secrets(settings)
    assert first.auth.jwt_secret is not None and first.auth.jwt_secret.get_secret_value() == "j" * 48
    assert first.auth.encryption_key is not None and second.auth.encryption_key is not None
    key = first.auth.encryption_key.get_secret_value()
    assert key == second.auth.encryption_key.get_secret_value() == (tmp_path / "secrets" / "encryption_key").read_text()
    assert not (tmp_path / "secrets" / "jwt_secret").exists()
    assert SecretBox.from_settings(second).decrypt(SecretBox.from_settings(first).encrypt("x")) == "x"


def test_a_weak_encryption_key_is_refused_outside_development() -> None:
    from pydantic import SecretStr

    from core.settings import load_settings

    with pytest.raises(ValueError, match="ORCHESTRATOR_ENCRYPTION_KEY"):
        load_settings(root={"environment": "production"}, auth={"encryption_key": SecretStr("changethis")})
