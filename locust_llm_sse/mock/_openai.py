"""OpenAI response shapes: streamed chunks, whole completions, model lists and errors.

Streamed chunks are serialized once per response into a prefix and a suffix around
the token text, so sending an event costs two byte concatenations instead of a
``json.dumps`` call.
"""

from __future__ import annotations

import json
from typing import Any

from locust_llm_sse.mock._plan import Plan

_PLACEHOLDER = "\x00"
_PLACEHOLDER_JSON = b'"\\u0000"'


def dump_json(value: Any) -> bytes:
    """Serialize compactly, as OpenAI does."""
    return json.dumps(value, separators=(",", ":")).encode()


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    """Build an error body of the form ``{"error": {"message", "type", "param", "code"}}``."""
    return dump_json({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def usage(plan: Plan) -> dict[str, Any]:
    """Build the usage object. ``completion_tokens_details`` appears only with reasoning."""
    completion = plan.completion_tokens
    result: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
    }
    if plan.reasoning_tokens:
        result["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
    return result


def models_body(model: str, created: int) -> bytes:
    """Build the ``GET /v1/models`` list with the one mock model."""
    return dump_json(
        {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "locust-llm-sse"}]}
    )


class StreamTemplates:
    """Pre-serialized SSE events of one streamed response, each ending with a blank line."""

    def __init__(self, plan: Plan, response_id: str, created: int, model: str) -> None:
        self._plan = plan
        self._base: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk" if plan.endpoint == "chat" else "text_completion",
            "created": created,
            "model": model,
        }
        if plan.endpoint == "chat":
            self._content = self._split(self._chat_chunk({"content": _PLACEHOLDER}, None))
            self._reasoning = self._split(self._chat_chunk({"reasoning_content": _PLACEHOLDER}, None))
        else:
            self._content = self._split(self._text_chunk(_PLACEHOLDER, None))
            self._reasoning = self._content

    def _with_usage_field(self, chunk: dict[str, Any]) -> dict[str, Any]:
        # With include_usage, OpenAI adds "usage": null to every chunk but the last one.
        if self._plan.include_usage:
            chunk["usage"] = None
        return chunk

    def _chat_chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._with_usage_field({**self._base, "choices": [choice]})

    def _text_chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return self._with_usage_field({**self._base, "choices": [choice]})

    @staticmethod
    def _split(chunk: dict[str, Any]) -> tuple[bytes, bytes]:
        prefix, suffix = dump_json(chunk).split(_PLACEHOLDER_JSON)
        return b"data: " + prefix, suffix + b"\n\n"

    @staticmethod
    def _event(chunk: dict[str, Any]) -> bytes:
        return b"data: " + dump_json(chunk) + b"\n\n"

    def role_event(self) -> bytes:
        """Return the chat prelude that carries only the role, or b"" for legacy completions."""
        if self._plan.endpoint != "chat":
            return b""
        return self._event(self._chat_chunk({"role": "assistant", "content": ""}, None))

    def content_event(self, reasoning: bool, text: str) -> bytes:
        """Return one content event. ``text`` must need no JSON escaping, as token text does not."""
        prefix, suffix = self._reasoning if reasoning else self._content
        return prefix + b'"' + text.encode() + b'"' + suffix

    def end_events(self) -> bytes:
        """Return the finish chunk, the usage chunk when requested, and ``[DONE]``."""
        if self._plan.endpoint == "chat":
            events = self._event(self._chat_chunk({}, self._plan.finish_reason))
        else:
            events = self._event(self._text_chunk("", self._plan.finish_reason))
        if self._plan.include_usage:
            events += self._event({**self._base, "choices": [], "usage": usage(self._plan)})
        return events + b"data: [DONE]\n\n"

    @staticmethod
    def error_events(message: str) -> bytes:
        """Return an in-stream error event followed by ``[DONE]``."""
        error = {"message": message, "type": "server_error", "param": None, "code": "internal_error"}
        return b"data: " + dump_json({"error": error}) + b"\n\n" + b"data: [DONE]\n\n"


def completion_body(plan: Plan, response_id: str, created: int, model: str, reasoning: str, content: str) -> bytes:
    """Build the non-streamed ``chat.completion`` or ``text_completion`` object."""
    if plan.endpoint == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if plan.reasoning_tokens:
            message["reasoning_content"] = reasoning
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": plan.finish_reason}
        kind = "text_completion"
    return dump_json(
        {"id": response_id, "object": kind, "created": created, "model": model, "choices": [choice], "usage": usage(plan)}
    )
