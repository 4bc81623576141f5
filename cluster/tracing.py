"""OpenTelemetry traces from an HTTP request to the actors it messages and their database statements, every
span carrying the request's correlation id (ARCHITECTURE.md "Observability").

Each process (API replica, router, run actor) calls `configure` once with its component name; with the
exporter `none` (the default) nothing is set up and every function here returns at once. FastAPI's native
telemetry makes the server span (`fastapi_telemetry`); `instrument_engine` adds a span per SQL statement
inside a trace; `carrier` and `continued` carry the W3C `traceparent` and the correlation id into an
actor's message, so that the actor's spans are children of the request's.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event

from core.settings import Settings
from serve_app.request_context import correlation_id_var

log = logging.getLogger("orchestrator.tracing")

CORRELATION_ATTRIBUTE = "orchestrator.correlation_id"
CORRELATION_KEY = "correlation_id"
_STATEMENT_CHARS = 2000
_PROPAGATOR = TraceContextTextMapPropagator()

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def configure(settings: Settings, component: str) -> None:
    """Set this process's tracer provider from the settings (the first call wins; `none`: no tracing)."""
    if _provider is not None:
        return
    observability = settings.observability
    if observability.otel_exporter == "none":
        return
    exporter: SpanExporter
    if observability.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=observability.otel_endpoint or None)
    elif observability.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        exporter = JsonLinesSpanExporter(jsonl_path(settings))
    install(
        exporter,
        service=f"{observability.otel_service_name}-{component}",
        sample_ratio=observability.otel_sample_ratio,
        batch=observability.otel_exporter != "console",
    )


def jsonl_path(settings: Settings) -> Path:
    configured = settings.observability.otel_jsonl_path
    return Path(configured).expanduser() if configured else settings.data_dir / "traces.jsonl"


def install(exporter: SpanExporter, *, service: str, sample_ratio: float = 1.0, batch: bool = True) -> TracerProvider:
    """Trace this process into `exporter` (tests pass an in-memory one with `batch=False`)."""
    global _provider, _tracer
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    provider.add_span_processor(_CorrelationIdProcessor())
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=500) if batch else SimpleSpanProcessor(exporter)
    )
    _provider, _tracer = provider, provider.get_tracer("orchestrator")
    return provider


def reset() -> None:
    """Stop tracing in this process (tests). Engines instrumented meanwhile stop recording too."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def enabled() -> bool:
    return _provider is not None


def fastapi_telemetry() -> dict[str, Any]:
    """`FastAPI(telemetry=…)`: its native server span per request, into this process's provider (the global
    provider is never set, so nothing else starts tracing behind our back)."""
    return {"tracer_provider": _provider, "tracing": _provider is not None, "metrics": False, "logs": False,
            "operation_spans": False}  # fmt: skip


def tag_current_span(correlation_id: str) -> None:
    """Put the correlation id on the request's server span (it starts before the id is known)."""
    if _provider is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)


# --- across processes ---------------------------------------------------------------------------------


def carrier() -> dict[str, str] | None:
    """What an actor message carries: the W3C `traceparent` of the current span (when tracing) and the
    correlation id (so the actor's log lines carry it too). None when there is neither."""
    found: dict[str, str] = {}
    if _provider is not None:
        _PROPAGATOR.inject(found)
    correlation_id = correlation_id_var.get()
    if correlation_id != "-":
        found[CORRELATION_KEY] = correlation_id
    return found or None


@contextmanager
def continued(received: dict[str, str] | None, name: str, attributes: dict[str, Any] | None = None) -> Iterator[None]:
    """Handle an actor message inside the sender's trace: a span `name` child of the sender's span (when
    tracing), with the sender's correlation id bound for this call's logs and spans."""
    correlation_id = (received or {}).get(CORRELATION_KEY)
    token = correlation_id_var.set(correlation_id) if correlation_id else None
    try:
        if _tracer is None:
            yield
            return
        parent = _PROPAGATOR.extract(received or {})
        with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes):
            yield
    finally:
        if token is not None:
            correlation_id_var.reset(token)


@contextmanager
def batch_span(name: str, contexts: Sequence[contextvars.Context]) -> Iterator[None]:
    """One unit of work done for many requests at once (a group commit): a span `name` in the first
    request's trace (`contexts[0]`, the context this runs in) that links every request's span, and a link
    back to it from each of the others, so that every request's trace leads to the statements that wrote
    its rows."""
    if _tracer is None:
        yield
        return
    parent = trace.get_current_span()  # the first request's: its context is the one this runs in
    others = [context.run(trace.get_current_span) for context in contexts[1:]]
    requests = [span for span in (parent, *others) if span.is_recording()]
    links = [trace.Link(span.get_span_context()) for span in requests]
    with _tracer.start_as_current_span(
        name, links=links, attributes={"orchestrator.batch_size": len(contexts)}
    ) as span:
        for request in requests:
            if request is not parent and request.is_recording():  # the parent has it as its child already
                request.add_link(span.get_span_context())
        yield


# --- SQL statements -----------------------------------------------------------------------------------


def instrument_engine(*engines: Any) -> None:
    """A client span per statement run inside a trace (statements outside one, such as the actors' periodic
    passes, make no span). Called by `Database` only when tracing is on, so the default costs nothing."""
    for engine in engines:
        if not event.contains(engine, "before_cursor_execute", _before_statement):
            event.listen(engine, "before_cursor_execute", _before_statement)
            event.listen(engine, "after_cursor_execute", _after_statement)
            event.listen(engine, "handle_error", _statement_failed)


def _before_statement(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
    tracer = _tracer
    if tracer is None or context is None or not trace.get_current_span().get_span_context().is_valid:
        return
    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    context._orchestrator_span = tracer.start_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={"db.system": conn.dialect.name, "db.operation": operation,
                    "db.statement": statement[:_STATEMENT_CHARS]},
    )  # fmt: skip


def _after_statement(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
    span = getattr(context, "_orchestrator_span", None)
    if span is not None:
        context._orchestrator_span = None
        span.end()


def _statement_failed(exception_context: Any) -> None:
    span = getattr(exception_context.execution_context, "_orchestrator_span", None)
    if span is not None:
        exception_context.execution_context._orchestrator_span = None
        span.set_status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
        span.end()


# --- processors and exporters -------------------------------------------------------------------------


class _CorrelationIdProcessor(SpanProcessor):
    """Every span started while a correlation id is bound carries it."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        correlation_id = correlation_id_var.get()
        if correlation_id != "-":
            span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)


class JsonLinesSpanExporter(SpanExporter):
    """Each finished span as one JSON line appended to a file that several processes share (one node):
    a batch is one O_APPEND write, so lines of different processes do not interleave."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans).encode()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("spans not written to %s: %s", self._path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }
