"""OpenTelemetry traces of a sweep: sweep -> scenario -> flow -> cell spans (``ductaflow[otel]``).

Off unless this process has a tracer provider: one your code set (``trace.set_tracer_provider``),
or the one ductaflow sets up when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP,
service name ``ductaflow``). A span's context reaches the processes a run starts (a conductor's
worker, a build's kernel for its steps) as a W3C ``traceparent`` in the
:class:`~ductaflow.core.context.RunContext`, so one sweep is one trace across processes; each
flow's trace id goes into its status record. Nothing here can fail a run: without the package,
or with tracing off, every function gives None and does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

OTLP_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
Attributes = Mapping[str, str | int | float | bool | None]


@lru_cache(maxsize=1)
def _otlp_provider() -> bool:
    """Set up OTLP export once per process when the endpoint is given and nobody set a provider."""
    try:
        # deferred (heavy, optional): only a process with an OTLP endpoint exports spans
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # deferred, see above
        from opentelemetry.sdk.resources import Resource  # deferred, see above
        from opentelemetry.sdk.trace import TracerProvider  # deferred, see above
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # deferred, see above
    except ImportError as exc:
        log.warning("%s is set but OpenTelemetry's exporter is missing (%s): pip install 'ductaflow[otel]'",
                    OTLP_ENV, exc)  # fmt: skip
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    provider = TracerProvider(resource=Resource.create({"service.name": "ductaflow"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> Any | None:
    """ductaflow's tracer, or None when tracing is off in this process."""
    if not os.environ.get(OTLP_ENV) and "opentelemetry.trace" not in sys.modules:
        return None  # nobody here set a tracer provider (that imports it): no need to import it either
    try:
        from opentelemetry import trace  # deferred: optional, and only when a run starts
    except ImportError:
        return None
    if os.environ.get(OTLP_ENV):
        _otlp_provider()
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer("ductaflow")


def start(name: str, parent: Any = None, attributes: Attributes | None = None) -> Any | None:
    """A started span named ``name`` under ``parent`` (a span, or a ``traceparent`` string from
    another process; None: a new trace); None when tracing is off."""
    t = tracer()
    if t is None:
        return None
    from opentelemetry import trace  # deferred with tracer()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # deferred, see above

    if isinstance(parent, str):
        context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    elif parent is not None:
        context = trace.set_span_in_context(parent)
    else:
        context = None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    return t.start_span(name, context=context, attributes=attrs)


def end(span: Any, attributes: Attributes | None = None, error: str | None = None) -> None:
    """End ``span`` with ``attributes`` added; ``error`` marks it failed."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode  # deferred with tracer()

    for key, value in (attributes or {}).items():
        if value is not None:
            span.set_attribute(key, value)
    if error:
        span.set_status(Status(StatusCode.ERROR, error[:500]))
    span.end()


def traceparent(span: Any) -> str | None:
    """The W3C ``traceparent`` of ``span``, for the processes it starts."""
    if span is None:
        return None
    from opentelemetry import trace  # deferred with tracer()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # deferred, see above

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def trace_id(span: Any, parent: str | None = None) -> str | None:
    """The span's trace id as 32 hex digits (what a tracing UI searches for); without a span (tracing
    off here), that of the ``traceparent`` the run was started under, if any: the run is still
    part of that trace."""
    if span is not None:
        return f"{span.get_span_context().trace_id:032x}"
    parts = (parent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class CellSpans:
    """nbclient's ``on_cell_execute`` / ``on_cell_executed`` hooks: a span per executed code cell,
    from the moment it is sent to the kernel until its reply came back."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent
        self.open: dict[int, Any] = {}

    def hooks(self) -> dict[str, Any]:
        """The keyword arguments that hand these hooks to nbclient (through papermill)."""
        return {"on_cell_execute": self.on_execute, "on_cell_executed": self.on_executed}

    def on_execute(self, cell: Any, cell_index: int) -> None:
        self.open[cell_index] = start(f"cell {cell_index}", self.parent, {"cell.index": cell_index})

    def on_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        content = execute_reply.get("content", {}) if isinstance(execute_reply, dict) else {}
        failed = content.get("status") == "error"
        error = f"{content.get('ename', 'error')}: {content.get('evalue', '')}" if failed else None
        end(self.open.pop(cell_index, None), {"cell.failed": failed}, error)

    def close(self) -> None:
        """End the spans of cells that never got a reply (a timeout, a dead kernel, an interrupt)."""
        for index in list(self.open):
            end(self.open.pop(index), {"cell.completed": False}, "no reply")
