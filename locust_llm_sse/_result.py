"""The outcome of one streamed request: text, token counts, timing points and any failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Phase names, in the order they complete. ``StreamResult.failed_phase`` contains one of them.
PHASE_CONNECT = "connect"
PHASE_FIRST_TOKEN = "first_token"
PHASE_COMPLETION = "completion"
PHASES = (PHASE_CONNECT, PHASE_FIRST_TOKEN, PHASE_COMPLETION)


@dataclass
class ToolCall:
    """One tool call assembled from streamed deltas (fragments are concatenated by index)."""

    index: int
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass
class StreamResult:
    """Everything measured for one streamed request.

    Timing points (``*_at``) are ``time.perf_counter()`` readings in seconds, or None when
    the moment never came. Derived durations carry their unit in the name and are None when
    undefined. ``start_time`` is the wall clock (``time.time()``) when the request was sent,
    as Locust's ``start_time`` is.
    """

    name: str
    """The name the Locust rows are grouped under (the ``name=`` argument, or the URL path)."""
    url: str
    start_time: float = 0.0
    request_sent_at: float = 0.0
    """Just before the request is handed to the connection."""
    headers_received_at: float | None = None
    first_token_at: float | None = None
    """Arrival of the first event that carries output: text, reasoning text or a tool call."""
    first_visible_token_at: float | None = None
    """Arrival of the first event that carries text or a tool call (not reasoning)."""
    last_token_at: float | None = None
    """Arrival of the last event that carries output."""
    end_at: float | None = None
    """End of the stream (``[DONE]`` or the terminal event), or the moment of failure."""

    status_code: int | None = None
    content_type: str | None = None
    retry_after_s: float | None = None
    response_length: int = 0
    """Body bytes read from the network, after any content decoding."""

    text: str = ""
    reasoning_text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None

    input_tokens: int | None = None
    output_tokens: int = 0
    """Generated tokens, reasoning included. From the last ``usage`` seen, else estimated."""
    reasoning_tokens: int | None = None
    tokens_estimated: bool = True
    """True when no ``usage`` arrived and ``output_tokens`` is the number of output events."""
    usage: dict[str, Any] | None = None
    """The last ``usage`` object seen in the stream, unchanged."""

    output_event_times: list[float] = field(default_factory=list)
    """``perf_counter`` arrival time of every event that carried output."""
    output_event_tokens: list[float] = field(default_factory=list)
    """Tokens each output event carried: exact from per-event usage, otherwise ``output_tokens``
    shared out by text length (so the sum equals ``output_tokens``), 1 each without usage."""
    output_event_reasoning: list[bool] = field(default_factory=list)
    """Whether each output event carried only reasoning text."""

    ok: bool = False
    failed_phase: str | None = None
    """The phase that failed (``connect``, ``first_token`` or ``completion``), or None."""
    error_kind: str | None = None
    """A stable failure class, e.g. ``http_status_429``, ``stream_error_event``, ``truncated_stream``."""
    error: str | None = None
    """The stable failure message that Locust groups failures by."""
    stopped: bool = False
    """True when Locust stopped the user mid-stream; no failure is recorded for that."""
    stopped_early: bool = False
    """True when the caller's ``stop_when`` ended the read before the stream's end (a success)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def connect_ms(self) -> float | None:
        """Request sent to response headers received."""
        return _elapsed_ms(self.request_sent_at, self.headers_received_at)

    @property
    def ttft_ms(self) -> float | None:
        """Request sent to the first output event (time to first token)."""
        return _elapsed_ms(self.request_sent_at, self.first_token_at)

    @property
    def time_to_first_visible_token_ms(self) -> float | None:
        """Request sent to the first event with text or a tool call."""
        return _elapsed_ms(self.request_sent_at, self.first_visible_token_at)

    @property
    def completion_ms(self) -> float | None:
        """Request sent to the end of the stream (end-to-end latency)."""
        return _elapsed_ms(self.request_sent_at, self.end_at)

    @property
    def tpot_ms(self) -> float | None:
        """Time per output token after the first: (end-to-end - TTFT) / (output tokens - 1)."""
        if not self.ok or self.first_token_at is None or self.end_at is None or self.output_tokens < 2:
            return None
        return (self.end_at - self.first_token_at) * 1000.0 / (self.output_tokens - 1)

    @property
    def output_tokens_per_second(self) -> float | None:
        """Output tokens divided by end-to-end latency."""
        completion_ms = self.completion_ms
        if not self.ok or not completion_ms:
            return None
        return self.output_tokens * 1000.0 / completion_ms

    def inter_token_latencies_ms(self) -> list[tuple[float, float]]:
        """Gaps between consecutive output events as ``(gap_ms, tokens_in_later_event)`` pairs.

        A gap before an event that carried several tokens covers all of them, so per-token
        latency is ``gap_ms / tokens``.
        """
        times = self.output_event_times
        tokens = self.output_event_tokens
        return [((times[i] - times[i - 1]) * 1000.0, tokens[i]) for i in range(1, len(times))]


def _elapsed_ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) * 1000.0
