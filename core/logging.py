"""Log format shared by the CLI, replicas and actors: one line per record with the correlation id."""

from __future__ import annotations

import logging

from serve_app.request_context import correlation_id_var

_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    logger = logging.getLogger("orchestrator")
    logger.setLevel(level)
    if any(getattr(h, "_orchestrator", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_CorrelationFilter())
    handler._orchestrator = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
