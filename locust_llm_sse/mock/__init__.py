"""A mock OpenAI-compatible server that streams deterministic tokens with set timing and faults.

Run it with ``python -m locust_llm_sse.mock`` or ``locust-llm-mock``, or from Python
with ``MockServerProcess``. docs/mock-server.md lists the options.
"""

from locust_llm_sse.mock._process import MockServerError, MockServerProcess

__all__ = ["MockServerError", "MockServerProcess"]
