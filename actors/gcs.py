"""Whether Ray's control store (the GCS, on the head node) answers, for the calls that cannot work without it.

While the head's gcs_server is down, and while a new one restarts from its tables in Redis (docs/deploy.md "GCS
fault tolerance"), calls on a live actor's handle keep working: they go from process to process, and a name this
process already looked up resolves from Ray's own cache. What goes through the GCS blocks instead until it is back
(up to Ray's request timeout, 60 s): creating or killing an actor, looking up a name not seen before, listing
named actors, the nodes and their resources, Ray's state API. The platform's calls of that kind ask `require()`
first, which answers from a probe of at most `PROBE_TIMEOUT_S`, so that the API answers 503 with `Retry-After` at
once rather than holding the request (and a thread) for a minute.
"""

from __future__ import annotations

import logging
import threading
import time

import ray
from ray.exceptions import RpcError

from core.errors import ServiceUnavailable

log = logging.getLogger("orchestrator.actors")

PROBE_TIMEOUT_S = 1.0
# A probe's answer is reused this long: under load, one probe a second per process, not one per request.
REMEMBER_S = 1.0

_lock = threading.Lock()
_last: tuple[float, bool] | None = None  # (monotonic time of the probe, whether the GCS answered)


def reachable() -> bool:
    """Whether the GCS answered a health check within `PROBE_TIMEOUT_S` (asked at most once per `REMEMBER_S`;
    threads asking meanwhile wait for that probe's answer). True outside a cluster: nothing to wait for."""
    global _last
    if not ray.is_initialized():
        return True
    with _lock:
        now = time.monotonic()
        if _last is not None and now - _last[0] < REMEMBER_S:
            return _last[1]
        try:
            ray._private.worker.global_worker.gcs_client.check_alive([], timeout=PROBE_TIMEOUT_S)
            answered = True
        except RpcError as exc:
            if _last is None or _last[1]:
                log.warning("Ray's control store (GCS) is not answering: %s", exc)
            answered = False
        _last = (time.monotonic(), answered)
        return answered


def require(action: str) -> None:
    """Raise 503 (`Retry-After`) if the GCS does not answer; `action` says what needed it, for the client."""
    if not reachable():
        raise ServiceUnavailable(
            f"{action} needs Ray's control store (GCS), which is not answering (restarting or unreachable); "
            "try again shortly"
        )
