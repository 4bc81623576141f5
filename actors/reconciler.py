"""`Reconciler`: one per cluster; runs `services.reconciliation` repeatedly against the Ray ports (the
reconcile loop of Ray Serve's controller). It logs rather than dies on an error.

Besides the pass itself, it keeps the platform's background work going: the `EventHub`'s loops (a restarted
hub resumes them), the dashboard's rollups folded, the Ray gauges of runs and approvals, and expired
credentials purged hourly.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from actors import router_client
from actors.agent_handles import AgentActorsOnRay
from actors.metrics import install_ray_metrics, publish_platform_state
from actors.names import EVENT_HUB_NAME
from actors.router_client import RouterOnRay, RunPoolOnRay, wake_event_hub_on_commit
from core.logging import configure_logging
from core.settings import Settings
from persistence import execution_rollups
from persistence.db import Database
from services.housekeeping import purge_expired_credentials
from services.ports import Actors
from services.reconciliation import Reconciliation

log = logging.getLogger("orchestrator.reconciler")

PURGE_EVERY_S = 3600.0


class Reconciler:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        install_ray_metrics()
        wake_event_hub_on_commit(settings)
        self._settings = settings
        # One connection (two at a peak): the reconciler reads in batches, it does not fan out.
        self._db = Database(
            settings.database_url, pool_size=1, max_overflow=1, application_name="orchestrator:reconciler"
        )
        actors = Actors(agents=AgentActorsOnRay(settings), router=RouterOnRay(settings), runs=RunPoolOnRay(settings))
        self._pass = Reconciliation(self._db, settings, actors)
        self._last_purge = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="reconcile-loop", daemon=True).start()

    def reconcile_once(self) -> dict[str, Any]:
        """One pass; also callable on demand (tests, `orchestrator up`)."""
        with self._lock:
            report = self._pass.run_once()
            report["rollup_deltas_folded"] = execution_rollups.fold_all(self._db)  # the dashboard reads these
            publish_platform_state(self._db)  # Ray gauges: runs by status, approvals pending
            if time.monotonic() - self._last_purge > PURGE_EVERY_S:
                purge_expired_credentials(self._db, self._settings.api.idempotency_ttl_s)
                self._last_purge = time.monotonic()
            return report

    def _loop(self) -> None:
        while True:
            try:
                router_client.tell(self._settings, EVENT_HUB_NAME, "start")  # a restarted hub resumes its loops
                self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; retrying in %.0fs", self._settings.agents.reconcile_interval_s)
            time.sleep(self._settings.agents.reconcile_interval_s)
