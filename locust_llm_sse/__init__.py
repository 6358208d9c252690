"""Load-test streaming LLM endpoints with Locust.

``LLMUser`` is the user class to subclass. Its ``client`` (an ``LLMClient``) streams a
request, fires Locust request events for the connect, first-token and completion phases,
and returns a ``StreamResult``.

The public names load on first access, so ``python -m locust_llm_sse.mock`` runs without
importing Locust, whose gevent monkey-patching would slow down the asyncio mock server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "PHASES",
    "PHASE_REQUEST_TYPES",
    "LLMClient",
    "LLMStreamError",
    "LLMUser",
    "StreamResult",
    "ToolCall",
    "llm_request_hook",
]

_MODULE_OF = {
    "PHASES": "_result",
    "StreamResult": "_result",
    "ToolCall": "_result",
    "PHASE_REQUEST_TYPES": "_client",
    "LLMClient": "_client",
    "LLMStreamError": "_client",
    "LLMUser": "_user",
    "llm_request_hook": "_events",
}

if TYPE_CHECKING:
    from locust_llm_sse._client import PHASE_REQUEST_TYPES, LLMClient, LLMStreamError
    from locust_llm_sse._events import llm_request_hook
    from locust_llm_sse._result import PHASES, StreamResult, ToolCall
    from locust_llm_sse._user import LLMUser


def __getattr__(name: str) -> Any:
    module_name = _MODULE_OF.get(name)
    if module_name is None:
        raise AttributeError(f"module 'locust_llm_sse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"locust_llm_sse.{module_name}"), name)
    globals()[name] = value
    return value
