"""The correlation id of the work in hand (a request, an actor message), for logs, events and spans.

HTTP binds it from the request's headers (`serve_app.request_context`); an actor binds the sender's
(`core.tracing.continued`). "-" when nothing is bound.
"""

from __future__ import annotations

import contextvars

correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
