"""Interpretation of LLM stream events as output, usage, the end, or an error.

``StreamParser`` reads decoded SSE events and updates a ``StreamResult``. It reads these
stream shapes, distinguished by the ``event:`` name or, when a proxy dropped it, by the
JSON ``type``:

- OpenAI chat completions (``choices[].delta``) and legacy completions (``choices[].text``),
  as served by vLLM, llama.cpp, Ollama, TGI's OpenAI route, SGLang and gateways; the end is
  ``data: [DONE]``, or the end of the body after a finish reason.
- Anthropic Messages (``message_start`` ... ``message_stop``).
- OpenAI Responses (``response.created`` ... ``response.completed``).
- TGI's native ``/generate_stream`` (``token`` and ``details.finish_reason``).

It does no I/O, so it can be tested with in-memory events.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from locust_llm_sse._result import StreamResult, ToolCall
from locust_llm_sse._sse import Event

logger = logging.getLogger(__name__)

# Failure classes (StreamResult.error_kind). Messages built from them stay stable across
# requests, because Locust groups failures by message text.
KIND_STREAM_ERROR = "stream_error_event"
KIND_EMPTY = "empty_stream"
KIND_TRUNCATED = "truncated_stream"
KIND_NO_FINISH = "missing_finish_reason"
KIND_MALFORMED = "malformed_event"

_MAX_ERROR_TEXT = 120

# Anthropic's stop reasons and Responses' incomplete reasons, in OpenAI's words.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


@dataclass(frozen=True)
class StreamEnd:
    """The end of a stream: clean (``ok``), or a failure of ``kind`` with a stable ``message``."""

    ok: bool
    kind: str | None = None
    message: str | None = None
    detail: str | None = field(default=None, compare=False)
    """Variable context for logs (e.g. the offending data), never part of the message."""


def describe_error(error: Any) -> str:
    """Format an API error object as ``type (code): first sentence of the message``.

    A textual ``code`` (``rate_limit_exceeded``) names the error better than ``type`` and
    replaces it; a numeric one is kept in brackets after the type. Only the first sentence
    of the message is kept (and at most 120 characters), because later sentences tend to
    carry per-request numbers that would split Locust's failure groups.
    """
    if not isinstance(error, dict):
        return _first_sentence(str(error))
    code = error.get("code")
    if code == "":
        code = None
    error_type = error.get("type")
    if isinstance(code, str) and code:
        label = code
    elif error_type and code is not None:
        label = f"{error_type} ({code})"
    elif error_type:
        label = str(error_type)
    elif code is not None:
        label = str(code)
    else:
        label = "error"
    message = error.get("message") or error.get("detail") or ""
    return f"{label}: {_first_sentence(str(message))}" if message else label


_SENTENCE_END = re.compile(r"[.!?] ")


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    end = _SENTENCE_END.search(text)
    short = text[: end.start() + 1] if end else text
    if len(short) > _MAX_ERROR_TEXT:
        short = short[:_MAX_ERROR_TEXT].rstrip()
    if len(short) < len(text):
        return short.rstrip(".") + "..."
    return short


class StreamParser:
    """Apply the events of one stream to a ``StreamResult``.

    ``handle`` returns None while the stream goes on and a ``StreamEnd`` once an event
    ends it (``[DONE]``, a terminal event or an error event). ``finish_at_eof`` decides
    the outcome when the body ends without such an event.
    """

    def __init__(self, result: StreamResult, *, require_finish_reason: bool = True) -> None:
        self.result = result
        self.require_finish_reason = require_finish_reason
        self._tool_calls: dict[int, ToolCall] = {}
        self._event_usage_tokens: list[int | None] = []
        self._event_text_lengths: list[int] = []

    # -- events ---------------------------------------------------------------------------

    def handle(self, event: Event, now: float, *, unterminated: bool = False) -> StreamEnd | None:
        """Apply one event received at ``now`` (perf_counter seconds)."""
        data = event.data
        if data.strip() == "[DONE]":
            if unterminated:
                self.result.warnings.append("final [DONE] event had no blank line after it")
            return self._end_of_stream()
        if not data.strip():
            return None  # an empty data field is a heartbeat
        try:
            payload = json.loads(data)
        except ValueError:
            if unterminated:
                logger.debug("Discarded an unterminated, incomplete final event (%d bytes)", len(data))
                return None
            if event.event == "error":
                return StreamEnd(False, KIND_STREAM_ERROR, f"stream error event: {_first_sentence(data)}")
            return StreamEnd(False, KIND_MALFORMED, "malformed stream event: data is not JSON", detail=data)
        if not isinstance(payload, dict):
            return StreamEnd(False, KIND_MALFORMED, "malformed stream event: data is not a JSON object", detail=data)
        if unterminated:
            self.result.warnings.append("final event had no blank line after it")

        name = event.event if event.event != "message" else payload.get("type")
        if isinstance(name, str):
            if name.startswith("response."):
                return self._handle_responses_event(name, payload, now)
            if name in _ANTHROPIC_EVENTS:
                return self._handle_anthropic_event(name, payload, now)
            if name == "error":
                return self._error_event(payload.get("error", payload))
        if "error" in payload and payload["error"]:
            return self._error_event(payload["error"])
        if "choices" in payload or "usage" in payload:
            return self._handle_openai_chunk(payload, now)
        if "token" in payload:
            return self._handle_tgi_chunk(payload, now)
        return None

    def finish_at_eof(self) -> StreamEnd:
        """Decide the outcome of a body that ended without ``[DONE]`` or a terminal event."""
        if self.result.first_token_at is None:
            return StreamEnd(False, KIND_EMPTY, "stream ended before the first token")
        if self.result.finish_reason is None:
            return StreamEnd(False, KIND_TRUNCATED, "stream cut off before its end")
        return self._check_finish()

    # -- OpenAI chat completions and completions ------------------------------------------

    def _handle_openai_chunk(self, payload: dict, now: float) -> StreamEnd | None:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._record_usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                reasoning_tokens=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
                usage=usage,
            )
        text = reasoning = ""
        tool_text = ""
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text += _text(delta.get("content"))
                # Servers use one of the two names; one that sends both repeats the text.
                reasoning += _text(delta.get("reasoning_content")) or _text(delta.get("reasoning"))
                tool_text += self._apply_tool_deltas(delta.get("tool_calls"))
                function_call = delta.get("function_call")
                if isinstance(function_call, dict):
                    tool_text += self._apply_tool_delta(0, None, function_call)
            else:
                text += _text(choice.get("text"))
            finish_reason = choice.get("finish_reason")
            if finish_reason:
                self.result.finish_reason = str(finish_reason)
        output_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        self._record_output(now, text, reasoning, tool_text, output_tokens)
        if self.result.finish_reason == "error":
            return StreamEnd(False, KIND_STREAM_ERROR, "stream error event: finish_reason error")
        return None

    def _apply_tool_deltas(self, deltas: Any) -> str:
        added = ""
        for position, delta in enumerate(deltas or ()):
            if isinstance(delta, dict):
                index = delta.get("index", position)
                added += self._apply_tool_delta(index, delta.get("id"), delta.get("function") or {})
        return added

    def _apply_tool_delta(self, index: int, call_id: str | None, function: dict) -> str:
        call = self._tool_calls.get(index)
        if call is None:
            call = ToolCall(index=index)
            self._tool_calls[index] = call
            self.result.tool_calls.append(call)
        if call_id:
            call.id = call_id
        name = _text(function.get("name"))
        arguments = _text(function.get("arguments"))
        call.name += name
        call.arguments += arguments
        return name + arguments

    # -- Anthropic Messages ---------------------------------------------------------------

    def _handle_anthropic_event(self, name: str, payload: dict, now: float) -> StreamEnd | None:
        if name == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            # output_tokens here is a placeholder (1); the count comes in message_delta.
            self._record_usage(input_tokens=usage.get("input_tokens"), usage=None)
        elif name == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_text = self._apply_tool_delta(payload.get("index", 0), block.get("id"), {"name": block.get("name")})
                self._record_output(now, "", "", tool_text, None)
            elif block.get("type") == "text":
                self._record_output(now, _text(block.get("text")), "", "", None)
        elif name == "content_block_delta":
            delta = payload.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                self._record_output(now, _text(delta.get("text")), "", "", None)
            elif delta_type == "thinking_delta":
                self._record_output(now, "", _text(delta.get("thinking")), "", None)
            elif delta_type == "input_json_delta":
                index = payload.get("index", 0)
                tool_text = self._apply_tool_delta(index, None, {"arguments": delta.get("partial_json")})
                self._record_output(now, "", "", tool_text, None)
        elif name == "message_delta":
            stop_reason = (payload.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self.result.finish_reason = _FINISH_REASONS.get(stop_reason, stop_reason)
            usage = payload.get("usage") or {}
            self._record_usage(
                input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"), usage=usage
            )
        elif name == "message_stop":
            if self.result.finish_reason is None:
                self.result.finish_reason = "stop"
            return self._end_of_stream()
        elif name == "error":
            return self._error_event(payload.get("error", payload))
        return None

    # -- OpenAI Responses -----------------------------------------------------------------

    def _handle_responses_event(self, name: str, payload: dict, now: float) -> StreamEnd | None:
        if name == "response.output_text.delta":
            self._record_output(now, _text(payload.get("delta")), "", "", None)
        elif name in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            self._record_output(now, "", _text(payload.get("delta")), "", None)
        elif name == "response.output_item.added":
            item = payload.get("item") or {}
            if item.get("type") == "function_call":
                index = payload.get("output_index", 0)
                tool_text = self._apply_tool_delta(index, item.get("call_id"), {"name": item.get("name")})
                self._record_output(now, "", "", tool_text, None)
        elif name == "response.function_call_arguments.delta":
            index = payload.get("output_index", 0)
            tool_text = self._apply_tool_delta(index, None, {"arguments": payload.get("delta")})
            self._record_output(now, "", "", tool_text, None)
        elif name in ("response.completed", "response.incomplete"):
            response = payload.get("response") or {}
            usage = response.get("usage") or {}
            self._record_usage(
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
                usage=usage or None,
            )
            if name == "response.completed":
                self.result.finish_reason = "stop"
            else:
                reason = (response.get("incomplete_details") or {}).get("reason") or "incomplete"
                self.result.finish_reason = "length" if reason == "max_output_tokens" else str(reason)
            return self._end_of_stream()
        elif name == "response.failed":
            response = payload.get("response") or {}
            return self._error_event(response.get("error") or {"message": "response.failed"})
        elif name == "response.error":
            return self._error_event(payload.get("error", payload))
        return None

    # -- TGI /generate_stream -------------------------------------------------------------

    def _handle_tgi_chunk(self, payload: dict, now: float) -> StreamEnd | None:
        token = payload.get("token") or {}
        text = "" if token.get("special") else _text(token.get("text"))
        details = payload.get("details") or {}
        generated = details.get("generated_tokens")
        if details.get("finish_reason"):
            self.result.finish_reason = str(details["finish_reason"])
        if isinstance(generated, int):
            self._record_usage(output_tokens=generated, usage=details)
        self._record_output(now, text, "", "", generated if isinstance(generated, int) else None)
        return None

    # -- shared ---------------------------------------------------------------------------

    def _record_output(self, now: float, text: str, reasoning: str, tool_text: str, usage_tokens: int | None) -> None:
        """Record an event that carried output; an event with none leaves no trace."""
        if not (text or reasoning or tool_text):
            return
        result = self.result
        result.text += text
        result.reasoning_text += reasoning
        if result.first_token_at is None:
            result.first_token_at = now
        if result.first_visible_token_at is None and (text or tool_text):
            result.first_visible_token_at = now
        result.last_token_at = now
        result.output_event_times.append(now)
        result.output_event_reasoning.append(not (text or tool_text))
        self._event_text_lengths.append(len(text) + len(reasoning) + len(tool_text))
        self._event_usage_tokens.append(usage_tokens if isinstance(usage_tokens, int) else None)

    def _record_usage(
        self,
        *,
        usage: dict | None,
        input_tokens: Any = None,
        output_tokens: Any = None,
        reasoning_tokens: Any = None,
    ) -> None:
        """Keep the latest count of each kind: usage is cumulative, so it is never summed."""
        result = self.result
        if isinstance(input_tokens, int):
            result.input_tokens = input_tokens
        if isinstance(output_tokens, int):
            result.output_tokens = output_tokens
            result.tokens_estimated = False
        if isinstance(reasoning_tokens, int):
            result.reasoning_tokens = reasoning_tokens
        if usage is not None:
            result.usage = usage

    def _error_event(self, error: Any) -> StreamEnd:
        return StreamEnd(False, KIND_STREAM_ERROR, f"stream error event: {describe_error(error)}")

    def _end_of_stream(self) -> StreamEnd:
        if self.result.first_token_at is None:
            return StreamEnd(False, KIND_EMPTY, "stream ended before the first token")
        return self._check_finish()

    def _check_finish(self) -> StreamEnd:
        if self.result.finish_reason is None and self.require_finish_reason:
            return StreamEnd(False, KIND_NO_FINISH, "stream ended without a finish reason")
        return StreamEnd(True)

    def settle_token_counts(self) -> None:
        """Fill ``output_tokens`` when no usage came, and share tokens out over output events.

        Each event's share is exact when every output event carried a cumulative usage
        count, and 1 when the usage count equals the number of output events (one token
        per event, as most servers stream). Otherwise ``output_tokens`` is split in
        proportion to each event's text length. Without usage, every output event counts
        as one token (an estimate).
        """
        result = self.result
        events = len(result.output_event_times)
        if result.tokens_estimated:
            result.output_tokens = events
            result.output_event_tokens = [1.0] * events
            return
        counts = self._event_usage_tokens
        if events and all(count is not None for count in counts):
            previous = 0
            shares = []
            for count in counts:
                shares.append(float(max(count - previous, 0)))
                previous = count
            if sum(shares) == result.output_tokens:
                result.output_event_tokens = shares
                return
        if result.output_tokens == events:
            result.output_event_tokens = [1.0] * events
            return
        total_length = sum(self._event_text_lengths)
        if events and total_length:
            scale = result.output_tokens / total_length
            result.output_event_tokens = [length * scale for length in self._event_text_lengths]
        else:
            result.output_event_tokens = [result.output_tokens / events] * events if events else []


_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
