"""Turn one completion request into a plan: token counts, timing, fault and framing.

The plan is computed once when the request has been read, so the streaming code only
follows it. Everything here is pure, apart from the random draws for faults and jitter.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from locust_llm_sse.mock._config import FAULT_KINDS, MockConfig


class RequestError(Exception):
    """A request that the mock rejects with an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True)
class Plan:
    """Token counts, timing, fault and framing of the response to one completion request."""

    endpoint: str
    """``"chat"`` for /v1/chat/completions, ``"text"`` for /v1/completions."""
    stream: bool
    include_usage: bool
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    """Leading completion tokens sent as ``reasoning_content``. Always 0 for ``"text"``."""
    finish_reason: str
    ttft_s: float
    itl_s: float
    jitter_s: float
    tokens_per_event: tuple[int, ...]
    fault: str | None
    stall_s: float
    retry_after_s: int
    gzip: bool
    chunked: bool

    @property
    def fault_token(self) -> int:
        """Index of the first token that a mid-stream fault replaces.

        The fault happens at the deadline of the first content event whose first token
        has this index or more, which is about half way through the stream. With one
        completion token it happens one gap after that token.
        """
        return max(1, self.completion_tokens // 2)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RequestError(400, f"{name} must be an integer >= {minimum}, got {value!r}.", "invalid_value", name)
    return value


def _check_ms(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise RequestError(400, f"{name} must be a number of milliseconds >= 0, got {value!r}.", "invalid_value", name)
    return float(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be true or false, got {value!r}.", "invalid_value", name)
    return value


_OVERRIDE_KEYS = frozenset(
    {
        "ttft_ms",
        "itl_ms",
        "jitter_ms",
        "output_tokens",
        "tokens_per_event",
        "reasoning_tokens",
        "fault",
        "stall_ms",
        "retry_after_s",
        "gzip",
        "framing",
    }
)


def count_words(text: str) -> int:
    """Return the number of whitespace-separated words, the mock's token count for a prompt."""
    return len(text.split())


def _count_content(content: Any) -> int:
    """Count prompt tokens of one chat message content: a string or a list of parts.

    Only text parts count. Image and audio parts count as 0 tokens.
    """
    if isinstance(content, str):
        return count_words(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += count_words(part["text"])
        return total
    return 0


def count_chat_prompt(messages: Any) -> int:
    """Count prompt tokens of a chat request: words in the content of all messages."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError(400, "messages must be a non-empty list of message objects.", "invalid_value", "messages")
    return sum(_count_content(message.get("content")) for message in messages)


def count_text_prompt(prompt: Any) -> int:
    """Count prompt tokens of a legacy completion request.

    A string counts its words, a list of strings the words of all of them, a list of
    token ids its length and a list of token-id lists the sum of their lengths.
    """
    if isinstance(prompt, str):
        return count_words(prompt)
    if isinstance(prompt, list):
        if all(isinstance(item, str) for item in prompt):
            return sum(count_words(item) for item in prompt)
        if all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
            return len(prompt)
        if all(isinstance(item, list) for item in prompt):
            return sum(len(item) for item in prompt)
    raise RequestError(
        400, "prompt must be a string, a list of strings or a list of token ids.", "invalid_value", "prompt"
    )


def _draw_fault(config: MockConfig, rng: random.Random) -> str | None:
    """Pick this request's fault from the configured rates with one uniform draw."""
    if not any(rate for _, rate in config.fault_rates):
        return None
    draw = rng.random()
    threshold = 0.0
    for kind, rate in config.fault_rates:
        threshold += rate
        if draw < threshold:
            return kind
    return None


def build_plan(endpoint: str, body: Any, config: MockConfig, rng: random.Random) -> Plan:
    """Validate a completion request body and build its plan.

    ``rng`` is the server's seeded generator, used only when the body does not set
    ``mock.fault`` and a fault rate is above 0. Raises RequestError naming the invalid
    field.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", "invalid_json")

    overrides = body.get("mock") or {}
    if not isinstance(overrides, dict):
        raise RequestError(400, "mock must be an object of per-request settings.", "invalid_value", "mock")
    unknown = sorted(set(overrides) - _OVERRIDE_KEYS)
    if unknown:
        raise RequestError(
            400,
            f"Unknown mock setting {unknown[0]!r}; known settings: {', '.join(sorted(_OVERRIDE_KEYS))}.",
            "invalid_value",
            "mock",
        )

    if endpoint == "chat":
        prompt_tokens = count_chat_prompt(body.get("messages"))
    else:
        prompt_tokens = count_text_prompt(body.get("prompt"))

    stream = _check_bool(body.get("stream", False), "stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise RequestError(400, "stream_options must be an object.", "invalid_value", "stream_options")
    include_usage = _check_bool(stream_options.get("include_usage", False), "stream_options.include_usage")

    choices = body.get("n", 1)
    if choices != 1:
        raise RequestError(400, f"n must be 1 because the mock server sends one choice, got {choices!r}.", "invalid_value", "n")

    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            max_tokens = _check_int(body[name], name, 1)
            break

    output_tokens = config.output_tokens
    if "output_tokens" in overrides:
        output_tokens = _check_int(overrides["output_tokens"], "mock.output_tokens", 1)
    completion_tokens = output_tokens if max_tokens is None else min(max_tokens, output_tokens)
    finish_reason = "length" if max_tokens is not None and max_tokens < output_tokens else "stop"

    reasoning_tokens = config.reasoning_tokens
    if "reasoning_tokens" in overrides:
        reasoning_tokens = _check_int(overrides["reasoning_tokens"], "mock.reasoning_tokens", 0)
    # Legacy completions have no reasoning field.
    reasoning_tokens = min(reasoning_tokens, completion_tokens) if endpoint == "chat" else 0

    pattern = config.tokens_per_event
    if "tokens_per_event" in overrides:
        value = overrides["tokens_per_event"]
        if not isinstance(value, list) or not value:
            raise RequestError(
                400, f"mock.tokens_per_event must be a non-empty list of integers >= 1, got {value!r}.",
                "invalid_value", "mock.tokens_per_event",
            )
        pattern = tuple(_check_int(item, "mock.tokens_per_event item", 1) for item in value)

    if "fault" in overrides:
        fault = overrides["fault"]
        if fault is not None and fault not in FAULT_KINDS:
            raise RequestError(
                400, f"mock.fault must be null or one of {', '.join(FAULT_KINDS)}, got {fault!r}.",
                "invalid_value", "mock.fault",
            )
    else:
        fault = _draw_fault(config, rng)

    framing = overrides.get("framing", "chunked" if config.chunked else "close")
    if framing not in ("chunked", "close"):
        raise RequestError(400, f"mock.framing must be 'chunked' or 'close', got {framing!r}.", "invalid_value", "mock.framing")

    def setting_ms(name: str, default: float) -> float:
        return _check_ms(overrides[name], f"mock.{name}") / 1000 if name in overrides else default / 1000

    return Plan(
        endpoint=endpoint,
        stream=stream,
        include_usage=include_usage and stream,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        finish_reason=finish_reason,
        ttft_s=setting_ms("ttft_ms", config.ttft_ms),
        itl_s=setting_ms("itl_ms", config.itl_ms),
        jitter_s=setting_ms("jitter_ms", config.jitter_ms),
        tokens_per_event=pattern,
        fault=fault,
        stall_s=setting_ms("stall_ms", config.stall_ms),
        retry_after_s=(
            _check_int(overrides["retry_after_s"], "mock.retry_after_s", 0)
            if "retry_after_s" in overrides
            else config.retry_after_s
        ),
        gzip=_check_bool(overrides["gzip"], "mock.gzip") if "gzip" in overrides else config.gzip,
        chunked=framing == "chunked",
    )


def iter_token_groups(plan: Plan) -> Iterator[tuple[bool, int, int]]:
    """Yield ``(is_reasoning, first_token, count)`` for each content event in order.

    Event sizes cycle through ``plan.tokens_per_event`` across the whole stream. An
    event never mixes reasoning and visible tokens: the event that would cross the
    boundary is cut short there, and the pattern goes on with its next size.
    """
    pattern = plan.tokens_per_event
    position = 0
    token = 0
    while token < plan.completion_tokens:
        size = pattern[position % len(pattern)]
        position += 1
        if token < plan.reasoning_tokens:
            count = min(size, plan.reasoning_tokens - token)
            yield True, token, count
        else:
            count = min(size, plan.completion_tokens - token)
            yield False, token, count
        token += count


def iter_deadlines(plan: Plan, t0: float, rng: random.Random | None) -> Iterator[float]:
    """Yield the absolute send time of each content event, then of the fault, if any.

    Without jitter event ``k`` is due at ``t0 + ttft + k * itl``, computed by
    multiplication so that rounding errors do not add up. With jitter every gap
    (the TTFT and each ITL) gets a uniform offset in ``[-jitter, +jitter]`` drawn from
    ``rng``, and a gap below 0 becomes 0.
    """
    if plan.jitter_s == 0 or rng is None:
        start = t0 + plan.ttft_s
        k = 0
        while True:
            yield start + k * plan.itl_s
            k += 1
    deadline = t0 + max(0.0, plan.ttft_s + rng.uniform(-plan.jitter_s, plan.jitter_s))
    while True:
        yield deadline
        deadline += max(0.0, plan.itl_s + rng.uniform(-plan.jitter_s, plan.jitter_s))


def token_text(first: int, count: int) -> str:
    """Return the text of ``count`` tokens starting at index ``first``: ``"tok3 tok4 "``."""
    return "".join(f"tok{index} " for index in range(first, first + count))
