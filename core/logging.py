"""Log format shared by the CLI, replicas and actors: one line per record with the correlation id."""

from __future__ import annotations

import logging
import sys
import time

from core.context import correlation_id_var

# UTC with a Z, so that log lines sort and filter by time across nodes (the container logs endpoint
# parses them back: `actors.agent_handles.parse_log_line`).
_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    logger = logging.getLogger("orchestrator")
    logger.setLevel(level)
    if any(getattr(h, "_orchestrator", False) for h in logger.handlers):
        return
    # The process's real stderr: a Serve replica swaps sys.stderr for a buffered logger, which would hold
    # an error line back; Ray captures this stream into the worker's log file, which the dashboard shows.
    handler = logging.StreamHandler(sys.__stderr__)
    formatter = logging.Formatter(_FORMAT, _DATE_FORMAT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_CorrelationFilter())
    handler._orchestrator = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
