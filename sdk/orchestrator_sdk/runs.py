"""A workflow run as an object: `wait()` with a live progress bar, `logs()`, `stream()`, `cancel()`.

`wait()` follows the run's Server-Sent Events (resumed after a dropped connection) and draws the bar with
`tqdm.auto` when it is installed (`pip install 'orchestrator-sdk[notebook]'`): steps done of the graph's
nodes, the current step and the status. A run that ends failed, cancelled or timed out raises `RunFailed`.
"""

from __future__ import annotations

from typing import Any

from orchestrator_sdk import models as m
from orchestrator_sdk._base import html_table, rows_table
from orchestrator_sdk.errors import RunFailed

TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})


class _Progress:
    """The bar (tqdm when installed, else nothing): steps done of total, current step, status."""

    def __init__(self, run_id: str, total: int | None, enabled: bool | None) -> None:
        self.bar: Any = None
        self.done: set[str] = set()
        if enabled is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=f"run {run_id[:8]}", unit="step", leave=True)

    def update(self, event: Any) -> None:
        if self.bar is None:
            return
        data = event.data if isinstance(event.data, dict) else {}
        if event.event == "step" and data.get("status") == "completed":
            self.done.add(data.get("node_id"))
            self.bar.n = len(self.done)
        if event.event in ("status", "end"):
            self.bar.set_postfix(status=data.get("status"), step=data.get("current_step") or "", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _failure(run: Any) -> RunFailed:
    steps = list(run.steps or [])
    failed = next((s for s in reversed(steps) if s.status == "failed"), None)
    step = failed.node_id if failed else run.current_step
    error = (failed.error if failed and failed.error else None) or run.error or run.status
    traceback = None
    for entry in reversed(list(run.logs or [])):
        meta = entry.metadata or {}
        if isinstance(meta, dict) and meta.get("traceback"):
            traceback = str(meta["traceback"])
            break
    return RunFailed(
        f"run {run.id} {run.status} at step {step!r}: {error}",
        run=run,
        step=step,
        error=error,
        traceback=traceback,
        correlation_id=run.correlation_id,
    )


class _RunBase:
    def __init__(self, client: Any, execution_id: str, started: Any = None) -> None:
        self._c = client
        self.id = execution_id
        self.started = started
        self.data: m.ExecutionDetail | None = None

    @property
    def status(self) -> str | None:
        if self.data is not None:
            return self.data.status
        return self.started.get("status") if self.started is not None else None

    @property
    def output(self) -> Any:
        return self.data.output if self.data is not None else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"

    def _repr_html_(self) -> str:
        if self.data is None:
            return html_table({"id": self.id, "status": self.status}, title="Run")
        table = html_table(
            self.data.to_dict(),
            title="Run",
            fields=[
                "id",
                "status",
                "progress",
                "current_step",
                "workflow_id",
                "workflow_version",
                "error",
                "duration",
                "created_at",
                "completed_at",
            ],
        )
        steps = [s.to_dict() for s in self.data.steps or []]
        return table + (
            rows_table(steps, ["seq", "node_id", "node_type", "attempt", "status", "duration_ms", "error"])
            if steps
            else ""
        )

    def _workflow_id(self) -> str | None:
        if self.data is not None:
            return self.data.workflow_id
        return self.started.get("workflow_id") if self.started is not None else None


class Run(_RunBase):
    """A run seen from the synchronous client."""

    def refresh(self) -> m.ExecutionDetail:
        self.data = self._c.executions.get(self.id)
        return self.data

    def logs(self, level: str | None = None) -> list[m.LogOut]:
        """Every log line of the run, oldest first (`level` keeps that level and above)."""
        out: list[m.LogOut] = []
        while True:
            page = self._c.executions.logs(self.id, level=level, limit=1000, offset=len(out))
            out.extend(page.logs)
            if not page.pagination.get("has_more") or not page.logs:
                return out

    def steps(self) -> list[m.StepOut]:
        return list(self.refresh().steps or [])

    def stream(self, last_event_id: str | None = None, timeout: float | None = None) -> Any:
        """The run's events live (`step`, `log`, `status`, `end`), resumed after a dropped connection."""
        return self._c.executions.stream(self.id, last_event_id=last_event_id, timeout=timeout)

    def cancel(self) -> Run:
        self._c.executions.cancel(self.id)
        self.refresh()
        return self

    def _total(self) -> int | None:
        if self._workflow_id() is None:
            self.refresh()
        workflow_id = self._workflow_id()
        if workflow_id is None:
            return None
        try:
            return len(self._c._call("GET", f"/workflows/{workflow_id}")["workflow_data"]["nodes"])
        except Exception:
            return None

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> Run:
        """Block until the run ends; show a progress bar (tqdm, when installed; `progress=False` hides it).
        Returns the run (`.data`, `.output`); raises `RunFailed` unless it completed, `TimeoutError` after
        `timeout` seconds."""
        bar = _Progress(self.id, self._total(), progress)
        try:
            for event in self.stream(timeout=timeout):
                bar.update(event)
                if event.event == "end":
                    break
        except TimeoutError:
            raise TimeoutError(f"run {self.id} still running after {timeout}s") from None
        finally:
            bar.close()
        run = self.refresh()
        if run.status != "completed":
            raise _failure(run)
        return self


class AsyncRun(_RunBase):
    """A run seen from the asyncio client: the same methods, awaited (`stream()` is `async for`)."""

    async def refresh(self) -> m.ExecutionDetail:
        self.data = await self._c.executions.get(self.id)
        return self.data

    async def logs(self, level: str | None = None) -> list[m.LogOut]:
        out: list[m.LogOut] = []
        while True:
            page = await self._c.executions.logs(self.id, level=level, limit=1000, offset=len(out))
            out.extend(page.logs)
            if not page.pagination.get("has_more") or not page.logs:
                return out

    async def steps(self) -> list[m.StepOut]:
        return list((await self.refresh()).steps or [])

    def stream(self, last_event_id: str | None = None, timeout: float | None = None) -> Any:
        return self._c.executions.stream(self.id, last_event_id=last_event_id, timeout=timeout)

    async def cancel(self) -> AsyncRun:
        await self._c.executions.cancel(self.id)
        await self.refresh()
        return self

    async def _total(self) -> int | None:
        if self._workflow_id() is None:
            await self.refresh()
        workflow_id = self._workflow_id()
        if workflow_id is None:
            return None
        try:
            return len((await self._c._call("GET", f"/workflows/{workflow_id}"))["workflow_data"]["nodes"])
        except Exception:
            return None

    async def wait(self, timeout: float | None = None, progress: bool | None = None) -> AsyncRun:
        bar = _Progress(self.id, await self._total(), progress)
        try:
            async for event in self.stream(timeout=timeout):
                bar.update(event)
                if event.event == "end":
                    break
        except TimeoutError:
            raise TimeoutError(f"run {self.id} still running after {timeout}s") from None
        finally:
            bar.close()
        run = await self.refresh()
        if run.status != "completed":
            raise _failure(run)
        return self
