"""The ``llm_request`` event hook: one notification per finished streamed request."""

from __future__ import annotations

from locust.event import EventHook


def llm_request_hook(events) -> EventHook:
    """Return the ``llm_request`` hook of a Locust ``Events`` instance, adding it on first use.

    The client fires it once per request, after the phase events, with the keyword
    arguments ``result`` (a ``StreamResult``), ``user`` (the Locust user or None) and
    ``environment``. A request cut short because Locust stopped the user fires it with
    ``result.stopped`` set, which the metrics skip.
    """
    hook = getattr(events, "llm_request", None)
    if hook is None:
        hook = EventHook()
        events.llm_request = hook
    return hook
