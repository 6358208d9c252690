"""Tests of StreamParser and describe_error on in-memory events of each stream shape."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from sseclient import Event

from locust_llm_sse._protocol import (
    KIND_EMPTY,
    KIND_MALFORMED,
    KIND_NO_FINISH,
    KIND_STREAM_ERROR,
    KIND_TRUNCATED,
    StreamEnd,
    StreamParser,
    describe_error,
)
from locust_llm_sse._result import StreamResult
from locust_llm_sse._sse import EventDecoder

CLEAN_END = StreamEnd(True)


def sse(payload: Any, event: str = "message") -> Event:
    """Build an event whose data is ``payload`` as JSON, or ``payload`` itself if a string."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return Event(event=event, data=data)


def chat(
    content: str | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict | None = None,
    **delta: Any,
) -> Event:
    """Build an OpenAI chat completion chunk with one choice."""
    if content is not None:
        delta["content"] = content
    payload: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        payload["usage"] = usage
    return sse(payload)


def new_parser(*, require_finish_reason: bool = True) -> tuple[StreamResult, StreamParser]:
    result = StreamResult(name="n", url="u")
    return result, StreamParser(result, require_finish_reason=require_finish_reason)


def feed(parser: StreamParser, events: Iterable[Event]) -> list[StreamEnd | None]:
    """Hand ``events`` to ``parser`` at times 1.0, 2.0, ... and return each outcome."""
    return [parser.handle(event, float(time)) for time, event in enumerate(events, start=1)]


def feed_bytes(parser: StreamParser, raw: bytes) -> list[StreamEnd | None]:
    """Decode ``raw`` with EventDecoder and hand each event on as the client does."""
    decoder = EventDecoder([raw])
    outcomes = []
    for time, event in enumerate(decoder, start=1):
        outcomes.append(parser.handle(event, float(time), unterminated=decoder.unterminated))
    return outcomes


# -- [DONE] ---------------------------------------------------------------------------

TEXT_THEN_STOP = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)


@pytest.mark.parametrize(
    "done",
    [b"data:[DONE]\n\n", b"data: [DONE]\n\n", b"data: [DONE]   \n\n", b"data: [DONE]\r\n\r\n", b"data:  [DONE]\n\n"],
    ids=["no space", "space", "trailing spaces", "crlf", "two spaces"],
)
def test_done_spellings_end_stream(done: bytes) -> None:
    result, parser = new_parser()

    outcomes = feed_bytes(parser, TEXT_THEN_STOP + done)

    assert outcomes == [None, None, CLEAN_END]
    assert result.text == "Hi"
    assert result.finish_reason == "stop"
    assert result.warnings == []


@pytest.mark.parametrize("tail", [b"data: [DONE]", b"data: [DONE]\n"], ids=["no line end", "no blank line"])
def test_unterminated_done_ends_with_warning(tail: bytes) -> None:
    result, parser = new_parser()

    outcomes = feed_bytes(parser, TEXT_THEN_STOP + tail)

    assert outcomes == [None, None, CLEAN_END]
    assert len(result.warnings) == 1
    assert "[DONE]" in result.warnings[0]


def test_done_inside_text_not_end() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [chat("[DONE]"), chat(" data: [DONE]"), chat(finish_reason="stop"), sse("[DONE]")])

    assert outcomes == [None, None, None, CLEAN_END]
    assert result.text == "[DONE] data: [DONE]"
    assert result.output_event_times == [1.0, 2.0]


def test_done_without_finish_reason_fails() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [chat("Hi"), sse("[DONE]")])

    assert outcomes == [None, StreamEnd(False, KIND_NO_FINISH, "stream ended without a finish reason")]


def test_done_without_finish_reason_allowed() -> None:
    result, parser = new_parser(require_finish_reason=False)

    outcomes = feed(parser, [chat("Hi"), sse("[DONE]")])

    assert outcomes == [None, CLEAN_END]


@pytest.mark.parametrize("require_finish_reason", [True, False])
def test_done_before_output_fails(require_finish_reason: bool) -> None:
    result, parser = new_parser(require_finish_reason=require_finish_reason)

    outcomes = feed(parser, [chat("", role="assistant"), chat(finish_reason="stop"), sse("[DONE]")])

    assert outcomes[-1] == StreamEnd(False, KIND_EMPTY, "stream ended before the first token")
    assert result.first_token_at is None


def test_empty_data_is_heartbeat() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [sse(""), chat("Hi"), sse(" "), chat(finish_reason="stop"), sse("[DONE]")])

    assert outcomes == [None, None, None, None, CLEAN_END]
    assert result.output_event_times == [2.0]


# -- first token and output -----------------------------------------------------------


@pytest.mark.parametrize("role_content", ["", None], ids=["empty string", "null"])
def test_role_only_chunk_not_first_token(role_content: str | None) -> None:
    result, parser = new_parser()
    role_chunk = sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": role_content}}]})

    feed(parser, [role_chunk, chat("Hi"), chat(finish_reason="stop")])

    assert result.first_token_at == 2.0
    assert result.first_visible_token_at == 2.0
    assert result.last_token_at == 2.0
    assert result.output_event_times == [2.0]


def test_reasoning_first_token_not_visible() -> None:
    result, parser = new_parser()

    outcomes = feed(
        parser,
        [
            chat(role="assistant", content=""),
            chat(reasoning_content="Let me think."),
            chat(reasoning=" Done."),
            chat("Answer"),
            chat(finish_reason="stop"),
            sse("[DONE]"),
        ],
    )

    assert outcomes[-1] == CLEAN_END
    assert result.first_token_at == 2.0
    assert result.first_visible_token_at == 4.0
    assert result.last_token_at == 4.0
    assert result.reasoning_text == "Let me think. Done."
    assert result.text == "Answer"
    assert result.output_event_reasoning == [True, True, False]


def test_tool_call_deltas_are_output() -> None:
    result, parser = new_parser()
    first_call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}

    outcomes = feed(
        parser,
        [
            chat(role="assistant", content=None, tool_calls=[first_call]),
            chat(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
            chat(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
            chat(tool_calls=[{"index": 1, "id": "call_2", "function": {"name": "get_time", "arguments": "{}"}}]),
            chat(finish_reason="tool_calls"),
            sse("[DONE]"),
        ],
    )

    assert outcomes[-1] == CLEAN_END
    assert [(call.index, call.id, call.name, call.arguments) for call in result.tool_calls] == [
        (0, "call_1", "get_weather", '{"city": "Paris"}'),
        (1, "call_2", "get_time", "{}"),
    ]
    assert result.first_token_at == 1.0
    assert result.first_visible_token_at == 1.0
    assert result.output_event_times == [1.0, 2.0, 3.0, 4.0]
    assert result.output_event_reasoning == [False, False, False, False]
    assert result.finish_reason == "tool_calls"


def test_legacy_completion_text() -> None:
    result, parser = new_parser()
    first = {"choices": [{"index": 0, "text": "a", "finish_reason": None}]}
    last = {"choices": [{"index": 0, "text": "b", "finish_reason": "length"}]}

    outcomes = feed(parser, [sse(first), sse(last), sse("[DONE]")])

    assert outcomes == [None, None, CLEAN_END]
    assert result.text == "ab"
    assert result.finish_reason == "length"


# -- usage ----------------------------------------------------------------------------


def test_cumulative_usage_not_summed() -> None:
    result, parser = new_parser()
    events = [chat(role="assistant", content="", usage={"prompt_tokens": 7, "completion_tokens": 0})]
    for count, text in enumerate(["a", "b", "c"], start=1):
        events.append(chat(text, usage={"prompt_tokens": 7, "completion_tokens": count}))
    final_usage = {"prompt_tokens": 7, "completion_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 0}}
    events.append(chat(finish_reason="stop", usage=final_usage))

    feed(parser, events)

    assert result.output_tokens == 3
    assert result.input_tokens == 7
    assert result.reasoning_tokens == 0
    assert result.tokens_estimated is False
    assert result.usage == final_usage


def test_usage_only_chunk_not_output() -> None:
    result, parser = new_parser()
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}

    outcomes = feed(
        parser,
        [chat("a"), chat("b", finish_reason="stop"), sse({"choices": [], "usage": usage}), sse("[DONE]")],
    )

    assert outcomes == [None, None, None, CLEAN_END]
    assert result.output_event_times == [1.0, 2.0]
    assert result.last_token_at == 2.0
    assert result.output_tokens == 2
    assert result.input_tokens == 5
    assert result.usage == usage


def test_usage_only_stream_has_no_first_token() -> None:
    result, parser = new_parser()
    usage = {"prompt_tokens": 5, "completion_tokens": 0}

    outcomes = feed(parser, [sse({"choices": [], "usage": usage}), sse("[DONE]")])

    assert outcomes[-1] == StreamEnd(False, KIND_EMPTY, "stream ended before the first token")


# -- error events ---------------------------------------------------------------------

ERROR_CASES = {
    "top-level error without choices": (
        sse({"error": {"message": "The server is overloaded. Retry in 3 s.", "type": "server_error", "code": None}}),
        "stream error event: server_error: The server is overloaded...",
    ),
    "top-level error with choices": (
        sse(
            {
                "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
                "error": {"message": "Bad request", "type": "BadRequestError", "code": 400},
            }
        ),
        "stream error event: BadRequestError (400): Bad request",
    ),
    "finish_reason error": (chat("x", finish_reason="error"), "stream error event: finish_reason error"),
    "anthropic event error": (
        sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, event="error"),
        "stream error event: overloaded_error: Overloaded",
    ),
    "anthropic error without event name": (
        sse({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
        "stream error event: api_error: Internal server error",
    ),
    "responses failed": (
        sse(
            {
                "type": "response.failed",
                "response": {
                    "status": "failed",
                    "error": {"code": "server_error", "message": "The model failed. Request id req_123."},
                },
            },
            event="response.failed",
        ),
        "stream error event: server_error: The model failed...",
    ),
    "responses error event": (
        sse(
            {"type": "error", "code": "rate_limit_exceeded", "message": "Rate limit reached. Try again in 20s."},
            event="error",
        ),
        "stream error event: rate_limit_exceeded: Rate limit reached...",
    ),
}


@pytest.mark.parametrize(("error_event", "message"), ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_event_fails_stream(error_event: Event, message: str) -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [chat("Hi"), error_event])

    assert outcomes == [None, StreamEnd(False, KIND_STREAM_ERROR, message)]


def test_error_before_first_token() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [sse({"error": {"message": "Quota exceeded.", "type": "insufficient_quota"}})])

    assert outcomes == [StreamEnd(False, KIND_STREAM_ERROR, "stream error event: insufficient_quota: Quota exceeded.")]


def test_null_error_field_ignored() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}], "error": None})])

    assert outcomes == [None]
    assert result.text == "Hi"


# -- malformed events -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "malformed stream event: data is not JSON"),
        ('{"choices": [', "malformed stream event: data is not JSON"),
        ("[1, 2]", "malformed stream event: data is not a JSON object"),
        ('"text"', "malformed stream event: data is not a JSON object"),
    ],
    ids=["text", "cut json", "array", "string"],
)
def test_malformed_data_fails(data: str, message: str) -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [chat("Hi"), sse(data)])

    assert outcomes == [None, StreamEnd(False, KIND_MALFORMED, message)]


def test_unterminated_non_json_tail_discarded() -> None:
    result, parser = new_parser()

    outcomes = feed_bytes(parser, TEXT_THEN_STOP + b'data: {"choices": [{"ind')

    assert outcomes == [None, None, None]
    assert result.text == "Hi"
    assert parser.finish_at_eof() == CLEAN_END


def test_unterminated_json_tail_kept_with_warning() -> None:
    result, parser = new_parser()
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n'

    outcomes = feed_bytes(parser, raw)

    assert outcomes == [None]
    assert result.text == "Hi"
    assert len(result.warnings) == 1
    assert parser.finish_at_eof() == CLEAN_END


# -- end of body without [DONE] -------------------------------------------------------


def test_eof_before_output_is_empty() -> None:
    result, parser = new_parser()
    feed(parser, [chat("", role="assistant")])

    assert parser.finish_at_eof() == StreamEnd(False, KIND_EMPTY, "stream ended before the first token")


def test_eof_without_finish_reason_truncated() -> None:
    result, parser = new_parser(require_finish_reason=False)
    feed(parser, [chat("Hi")])

    assert parser.finish_at_eof() == StreamEnd(False, KIND_TRUNCATED, "stream cut off before its end")


def test_eof_after_finish_reason_ok() -> None:
    result, parser = new_parser()
    feed(parser, [chat("Hi"), chat(finish_reason="stop")])

    assert parser.finish_at_eof() == CLEAN_END


# -- Anthropic Messages ---------------------------------------------------------------


def anthropic(name: str, **fields: Any) -> tuple[str, dict]:
    """Build an Anthropic Messages event as ``(event name, payload)``."""
    return name, {"type": name, **fields}


def anthropic_bytes(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode() for name, payload in events)


ANTHROPIC_TEXT_STREAM = [
    anthropic("message_start", message={"id": "msg_1", "usage": {"input_tokens": 25, "output_tokens": 1}}),
    anthropic("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    anthropic("ping"),
    anthropic("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
    anthropic("content_block_delta", index=0, delta={"type": "text_delta", "text": "!"}),
    anthropic("content_block_stop", index=0),
    anthropic("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 15}),
    anthropic("message_stop"),
]


def test_anthropic_text_stream() -> None:
    result, parser = new_parser()

    outcomes = feed_bytes(parser, anthropic_bytes(ANTHROPIC_TEXT_STREAM))

    assert outcomes == [None] * 7 + [CLEAN_END]
    assert result.text == "Hello!"
    assert result.input_tokens == 25
    assert result.output_tokens == 15
    assert result.tokens_estimated is False
    assert result.usage == {"output_tokens": 15}
    assert result.finish_reason == "stop"
    assert result.first_token_at == 4.0
    assert result.output_event_times == [4.0, 5.0]


def test_anthropic_without_event_names() -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [sse(payload) for _, payload in ANTHROPIC_TEXT_STREAM])

    assert outcomes == [None] * 7 + [CLEAN_END]
    assert result.text == "Hello!"
    assert result.output_tokens == 15


def test_anthropic_max_tokens_is_length() -> None:
    result, parser = new_parser()
    events = list(ANTHROPIC_TEXT_STREAM)
    events[6] = anthropic("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 2})

    outcomes = feed_bytes(parser, anthropic_bytes(events))

    assert outcomes[-1] == CLEAN_END
    assert result.finish_reason == "length"


def test_anthropic_thinking_and_tool_use() -> None:
    result, parser = new_parser()
    tool_block = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}
    events = [
        anthropic("message_start", message={"usage": {"input_tokens": 3}}),
        anthropic("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        anthropic("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
        anthropic("content_block_start", index=1, content_block=tool_block),
        anthropic("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"q": '}),
        anthropic("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '"x"}'}),
        anthropic("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
        anthropic("message_stop"),
    ]

    outcomes = feed_bytes(parser, anthropic_bytes(events))

    assert outcomes[-1] == CLEAN_END
    assert result.reasoning_text == "Hmm."
    assert result.first_token_at == 3.0
    assert result.first_visible_token_at == 4.0
    assert [(call.id, call.name, call.arguments) for call in result.tool_calls] == [("toolu_1", "search", '{"q": "x"}')]
    assert result.finish_reason == "tool_calls"
    assert result.output_event_reasoning == [True, False, False, False]


# -- OpenAI Responses -----------------------------------------------------------------

RESPONSES_STREAM = [
    ("response.created", {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "delta": " there"}),
    ("response.output_text.done", {"type": "response.output_text.done", "text": "Hi there"}),
    (
        "response.completed",
        {
            "type": "response.completed",
            "response": {
                "status": "completed",
                "usage": {"input_tokens": 9, "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}},
            },
        },
    ),
]


@pytest.mark.parametrize("named", [True, False], ids=["event names", "type only"])
def test_responses_stream(named: bool) -> None:
    result, parser = new_parser()

    outcomes = feed(parser, [sse(payload, event=name if named else "message") for name, payload in RESPONSES_STREAM])

    assert outcomes == [None, None, None, None, CLEAN_END]
    assert result.text == "Hi there"
    assert result.input_tokens == 9
    assert result.output_tokens == 3
    assert result.reasoning_tokens == 1
    assert result.tokens_estimated is False
    assert result.finish_reason == "stop"
    assert result.output_event_times == [2.0, 3.0]


def test_responses_incomplete_is_length() -> None:
    result, parser = new_parser()
    response = {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"output_tokens": 2},
    }
    events = [sse(payload, event=name) for name, payload in RESPONSES_STREAM[:3]]
    events.append(sse({"type": "response.incomplete", "response": response}, event="response.incomplete"))

    outcomes = feed(parser, events)

    assert outcomes[-1] == CLEAN_END
    assert result.finish_reason == "length"


# -- TGI /generate_stream -------------------------------------------------------------


def tgi_token(text: str, *, special: bool = False, details: dict | None = None) -> Event:
    token = {"id": 1, "text": text, "logprob": -0.1, "special": special}
    return sse({"index": 1, "token": token, "generated_text": None, "details": details})


def test_tgi_native_stream() -> None:
    result, parser = new_parser()
    details = {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None}

    outcomes = feed(parser, [tgi_token("Hel"), tgi_token("lo"), tgi_token("</s>", special=True, details=details)])

    assert outcomes == [None, None, None]
    assert parser.finish_at_eof() == CLEAN_END
    assert result.text == "Hello"
    assert result.finish_reason == "eos_token"
    assert result.output_tokens == 3
    assert result.tokens_estimated is False
    assert result.output_event_times == [1.0, 2.0]


def test_tgi_without_details_truncated() -> None:
    result, parser = new_parser()

    feed(parser, [tgi_token("Hel"), tgi_token("lo")])

    assert parser.finish_at_eof() == StreamEnd(False, KIND_TRUNCATED, "stream cut off before its end")


# -- settle_token_counts --------------------------------------------------------------


def test_settle_without_usage_estimates() -> None:
    result, parser = new_parser()
    feed(parser, [chat("a"), chat(reasoning_content="bb"), chat("ccc"), chat(finish_reason="stop")])

    parser.settle_token_counts()

    assert result.tokens_estimated is True
    assert result.output_tokens == 3
    assert result.output_event_tokens == [1.0, 1.0, 1.0]


def test_settle_final_usage_by_text_length() -> None:
    result, parser = new_parser()
    feed(
        parser,
        [
            chat("a"),
            chat("bb"),
            chat("ccccccc"),
            chat(finish_reason="stop"),
            sse({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 20}}),
        ],
    )

    parser.settle_token_counts()

    assert result.output_tokens == 20
    assert result.output_event_tokens == pytest.approx([2.0, 4.0, 14.0])
    assert sum(result.output_event_tokens) == pytest.approx(20)


def test_settle_one_token_per_event() -> None:
    """When usage equals the event count, each event is one token, whatever its text length."""
    result, parser = new_parser()
    feed(
        parser,
        [
            chat(","),
            chat(" extraordinarily"),
            chat(" a"),
            chat(finish_reason="stop"),
            sse({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}),
        ],
    )

    parser.settle_token_counts()

    assert result.output_tokens == 3
    assert result.output_event_tokens == [1.0, 1.0, 1.0]


def test_settle_per_event_usage_exact() -> None:
    result, parser = new_parser()
    events = [chat(role="assistant", content="", usage={"completion_tokens": 0})]
    for text, cumulative in [("a", 1), ("long text", 4), ("b", 6)]:
        events.append(chat(text, usage={"completion_tokens": cumulative}))
    events.append(chat(finish_reason="stop", usage={"completion_tokens": 6}))
    feed(parser, events)

    parser.settle_token_counts()

    assert result.output_tokens == 6
    assert result.output_event_tokens == [1.0, 3.0, 2.0]


def test_settle_usage_without_output_events() -> None:
    result, parser = new_parser()
    feed(parser, [sse({"choices": [], "usage": {"completion_tokens": 5}})])

    parser.settle_token_counts()

    assert result.output_tokens == 5
    assert result.output_event_tokens == []


# -- describe_error -------------------------------------------------------------------

LONG_WORDS = "word " * 40  # 200 characters with no sentence end

DESCRIBE_CASES = {
    "textual code replaces type": (
        {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Too long. You sent 5000."},
        "context_length_exceeded: Too long...",
    ),
    "numeric code in brackets": ({"type": "server_error", "code": 500, "message": "Oops"}, "server_error (500): Oops"),
    "zero code kept": ({"type": "t", "code": 0, "message": "m"}, "t (0): m"),
    "type only": ({"type": "overloaded_error", "message": "Overloaded"}, "overloaded_error: Overloaded"),
    "code only": ({"code": 429, "message": "Slow down"}, "429: Slow down"),
    "neither": ({"message": "Something broke"}, "error: Something broke"),
    "no message": ({"type": "server_error"}, "server_error"),
    "detail fallback": ({"detail": "Not found. Check the path."}, "error: Not found..."),
    "single sentence keeps its dot": ({"type": "t", "message": "All bad."}, "t: All bad."),
    "dot without space not a sentence end": ({"type": "t", "message": "Version 1.2 is bad"}, "t: Version 1.2 is bad"),
    "whitespace collapsed": ({"type": "t", "message": "a\n\n  b.\nSecond"}, "t: a b..."),
    "string error": ("Gateway timeout. Upstream took 31 s.", "Gateway timeout..."),
    "exactly 120 characters": ({"type": "t", "message": "x" * 120}, "t: " + "x" * 120),
    "long message cut": ({"type": "t", "message": LONG_WORDS}, "t: " + LONG_WORDS[:120].rstrip() + "..."),
    "long first sentence cut": ({"type": "t", "message": "y" * 130 + ". Next."}, "t: " + "y" * 120 + "..."),
}


@pytest.mark.parametrize(("error", "expected"), DESCRIBE_CASES.values(), ids=DESCRIBE_CASES.keys())
def test_describe_error(error: Any, expected: str) -> None:
    assert describe_error(error) == expected


def test_describe_error_length_bound() -> None:
    description = describe_error({"message": "z" * 1000})

    assert description == "error: " + "z" * 120 + "..."


def test_describe_error_empty_code() -> None:
    assert describe_error({"type": "t", "code": "", "message": "m"}) == "t: m"


@pytest.mark.parametrize("first", ["Quota exceeded!", "Is the model loaded?"])
def test_describe_error_other_sentence_ends(first: str) -> None:
    description = describe_error({"type": "t", "message": first + " Retry in 20 s."})

    assert description.startswith("t: " + first)
    assert "20 s" not in description


def test_plain_text_error_event_is_stream_error() -> None:
    parser = StreamParser(StreamResult(name="n", url="u"))

    end = parser.handle(Event(event="error", data="Internal Server Error"), 1.0)

    assert end is not None
    assert not end.ok
    assert end.kind == "stream_error_event"
    assert end.message == "stream error event: Internal Server Error"


def test_reasoning_in_both_fields_counted_once() -> None:
    result = StreamResult(name="n", url="u")
    parser = StreamParser(result)
    chunk = {"choices": [{"index": 0, "delta": {"reasoning_content": "Hm", "reasoning": "Hm"}}]}

    parser.handle(Event(data=json.dumps(chunk)), 1.0)

    assert result.reasoning_text == "Hm"
