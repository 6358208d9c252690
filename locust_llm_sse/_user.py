"""``LLMUser``: a Locust user whose ``client`` streams LLM responses."""

from __future__ import annotations

import os
from typing import Any

from locust import User
from locust.exception import StopTest

import locust_llm_sse.metrics  # noqa: F401 - registers the LLM metrics, tab, CSV and summary with Locust
from locust_llm_sse._client import LLMClient


class LLMUser(User):
    """A Locust user with an ``LLMClient`` as ``self.client``.

    Subclass it, set ``host`` (or pass ``--host``) and call ``self.client.chat(...)`` in a
    task. The class attributes below are the defaults of every request the user makes.
    """

    abstract = True
    """Not a user class to run by itself; subclass it."""

    model: str | None = None
    """Model name sent in every request; None leaves the field out (single-model servers)."""

    api_key: str | None = None
    """Bearer token for the Authorization header; None falls back to ``OPENAI_API_KEY``."""

    headers: dict[str, str] = {}
    """Extra request headers, e.g. ``{"x-api-key": ...}`` for APIs that do not use Bearer tokens."""

    extra_body: dict[str, Any] = {}
    """Fields added to every request body, e.g. ``{"temperature": 0}``."""

    chat_path: str = "/v1/chat/completions"
    """Path of the chat endpoint, joined to the host without doubling a shared ``/v1``."""

    completions_path: str = "/v1/completions"
    """Path of the legacy completions endpoint."""

    connect_timeout: float = 10.0
    """Seconds allowed to open the connection (TCP and TLS)."""

    first_token_timeout: float = 60.0
    """Seconds from sending the request to the first output token, keep-alive comments included."""

    inter_token_timeout: float = 30.0
    """Seconds the stream may stay silent (no bytes at all) once output has started."""

    include_usage: bool = True
    """Send ``stream_options: {"include_usage": true}`` so token counts come from the server."""

    require_finish_reason: bool = True
    """Fail a stream that ends without a finish reason; set False for servers that never send one."""

    def __init__(self, environment) -> None:
        super().__init__(environment)
        if self.host is None:
            environment.process_exit_code = 1
            raise StopTest(
                "No host set: pass --host with the server's base URL (e.g. http://127.0.0.1:8000/v1) "
                "or set the host attribute of the user class."
            )
        try:
            self.client = LLMClient(
                self.host,
                environment=environment,
                user=self,
                model=self.model,
                api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or None,
                headers=self.headers,
                extra_body=self.extra_body,
                chat_path=self.chat_path,
                completions_path=self.completions_path,
                connect_timeout=self.connect_timeout,
                first_token_timeout=self.first_token_timeout,
                inter_token_timeout=self.inter_token_timeout,
                include_usage=self.include_usage,
                require_finish_reason=self.require_finish_reason,
            )
        except ValueError as error:
            environment.process_exit_code = 1
            raise StopTest(str(error)) from None

    def on_stop(self) -> None:
        self.client.session.close()
