"""Reading an agent actor's log lines back: our format, continuation lines, Ray's headers, errors."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from actors.agent_handles import creation_error, parse_log_lines
from core.logging import configure_logging


def test_log_lines_parse_back_into_timestamped_entries(capfd) -> None:
    configure_logging("INFO")
    logging.getLogger("orchestrator.agent").info("agent started")
    line = capfd.readouterr().err.strip().splitlines()[-1]
    [entry] = parse_log_lines([":job_id:01000000", ":actor_name:AgentActor", line])
    assert entry["level"] == "INFO" and entry["source"] == "orchestrator.agent" and entry["message"] == "agent started"
    assert abs((datetime.now(UTC) - entry["timestamp"]).total_seconds()) < 60


def test_lines_that_are_not_log_records_continue_the_previous_entry() -> None:
    entries = parse_log_lines(
        [
            "stray print before any record",
            "2026-11-23T10:00:00.123Z ERROR orchestrator.agent [cid-1] task failed",
            "Traceback (most recent call last):",
            "ValueError: boom",
        ]
    )
    assert entries[0] == {
        "timestamp": None,
        "level": "INFO",
        "message": "stray print before any record",
        "source": "stderr",
    }
    assert entries[1]["timestamp"] == datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
    assert entries[1]["message"] == "task failed\nTraceback (most recent call last):\nValueError: boom"


def test_the_constructor_error_is_picked_out_of_rays_actor_died_text() -> None:
    text = (
        "The actor died because of an error raised in its creation task, ray::agent:x:AgentActor.__init__()\n"
        '  File "/x/frameworks/langgraph.py", line 40, in load\n'
        "    graph = import_object(path)\n"
        "ModuleNotFoundError: No module named 'nope'"
    )
    assert creation_error(RuntimeError(text)) == "ModuleNotFoundError: No module named 'nope'"
    assert creation_error(RuntimeError("short reason")) == "short reason"
