"""Set up this process's telemetry from the settings: the OpenTelemetry SDK's tracer provider, its sampler and
exporter (`none`, `console`, `jsonl`, `otlp`).

Called once where a process starts (the CLI, an API replica's app, each actor's constructor); everything
else records through `core.tracing`, which stays a no-op until `configure` installs a provider here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

from core import tracing
from core.context import correlation_id_var
from core.settings import Settings

log = logging.getLogger("orchestrator.tracing")

_installed: TracerProvider | None = None


def configure(settings: Settings, component: str) -> None:
    """Set this process's tracer provider from the settings (the first call wins; `none`: no tracing)."""
    if _installed is not None:
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
    global _installed
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    provider.add_span_processor(_CorrelationIdProcessor())
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=500) if batch else SimpleSpanProcessor(exporter)
    )
    _installed = provider
    tracing.set_provider(provider)
    return provider


def reset() -> None:
    """Stop tracing in this process (tests). Engines instrumented meanwhile stop recording too."""
    global _installed
    if _installed is not None:
        _installed.shutdown()
    _installed = None
    tracing.set_provider(None)


# --- processors and exporters -------------------------------------------------------------------------


class _CorrelationIdProcessor(SpanProcessor):
    """Every span started while a correlation id is bound carries it."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        correlation_id = correlation_id_var.get()
        if correlation_id != "-":
            span.set_attribute(tracing.CORRELATION_ATTRIBUTE, correlation_id)


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
