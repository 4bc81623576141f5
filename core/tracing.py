"""OpenTelemetry traces from an HTTP request to the actors it messages and their database statements, every
span carrying the request's correlation id (docs/api.md "Health and system", Traces).

Only the OpenTelemetry API is used here, so every layer may call these helpers: until a process installs a
tracer provider (`core.telemetry_setup`, called where the process starts), nothing is traced and every
function returns at once. `instrument_engine` adds a span per SQL statement inside a trace; `carrier` and
`continued` carry the W3C `traceparent` and the correlation id into an actor's message, so that the actor's
spans are children of the request's; `batch_span` is one unit of work done for many requests at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event

from core.context import correlation_id_var

CORRELATION_ATTRIBUTE = "orchestrator.correlation_id"
CORRELATION_KEY = "correlation_id"
_STATEMENT_CHARS = 2000
_PROPAGATOR = TraceContextTextMapPropagator()

# This process's provider; the global one is never set, so nothing else starts tracing behind our back.
_provider: trace.TracerProvider | None = None
_tracer: trace.Tracer | None = None


def set_provider(provider: trace.TracerProvider | None) -> None:
    """Trace this process into `provider` (`core.telemetry_setup` calls this); None: stop tracing."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("orchestrator") if provider is not None else None


def provider() -> trace.TracerProvider | None:
    return _provider


def enabled() -> bool:
    return _provider is not None


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
        attributes={
            "db.system": conn.dialect.name,
            "db.operation": operation,
            "db.statement": statement[:_STATEMENT_CHARS],
        },
    )


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
