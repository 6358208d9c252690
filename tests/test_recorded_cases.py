"""Each recorded streaming response from a real-world bug report, through LLMClient.

The replay server sends every case byte for byte on its recorded schedule, so timings are
checked against the moment the bytes were sent: never earlier, and at most
``LATE_TOLERANCE_MS`` later (the machines running this suite are shared and noisy).
"""

from __future__ import annotations

import pytest
from locust.env import Environment

from locust_llm_sse import LLMClient, StreamResult
from tests.conftest import load_cases

CASES = load_cases()
LATE_TOLERANCE_MS = 30.0
EARLY_TOLERANCE_MS = 2.0

# Cases whose expected result needs its own test below.
SPECIAL_CASES = {"B29", "B30"}


def run_case(replay_url: str, case_id: str, **client_options) -> tuple[StreamResult, list[dict]]:
    """Send the case's request with a real Locust environment; return the result and the fired events."""
    environment = Environment()
    fired: list[dict] = []
    environment.events.request.add_listener(lambda **event: fired.append(event))
    client = LLMClient(f"{replay_url}/{case_id}", environment=environment, **client_options)
    if case_id in ("B20", "B21"):
        result = client.stream("/v1/messages", {"model": "claude-x", "max_tokens": 64, "messages": []})
    elif case_id == "B35":
        result = client.stream("/v1/responses", {"model": "m", "input": "hi"})
    elif case_id == "B15":
        result = client.completion("Best", max_tokens=3)
    else:
        result = client.chat("hi", max_tokens=16)
    client.session.close()
    return result, fired


def assert_time_near(measured_ms: float | None, recorded_ms: float, what: str) -> None:
    assert measured_ms is not None, f"{what} missing"
    assert measured_ms >= recorded_ms - EARLY_TOLERANCE_MS, f"{what} {measured_ms:.1f} ms is before the bytes were sent ({recorded_ms} ms)"
    assert measured_ms <= recorded_ms + LATE_TOLERANCE_MS, f"{what} {measured_ms:.1f} ms, bytes sent at {recorded_ms} ms"


def assert_funnel(result: StreamResult, fired: list[dict]) -> None:
    """The phases fire in order, once each, and stop at the first failure."""
    types = [event["request_type"] for event in fired]
    failures = [event for event in fired if event["exception"] is not None]
    if result.ok:
        assert types == ["1 conn", "2 ttft", "3 e2e"]
        assert failures == []
        return
    expected_types = {"connect": ["1 conn"], "first_token": ["1 conn", "2 ttft"], "completion": ["1 conn", "2 ttft", "3 e2e"]}
    assert types == expected_types[result.failed_phase]
    assert len(failures) == 1
    assert failures[0]["request_type"] == types[-1]
    assert str(failures[0]["exception"]) == result.error


@pytest.mark.parametrize("case_id", sorted(set(CASES) - SPECIAL_CASES))
def test_recorded_case(replay_url: str, case_id: str) -> None:
    expected = CASES[case_id]["expected"]
    result, fired = run_case(replay_url, case_id)

    assert result.ok is expected["outcome"].startswith("success"), (result.error_kind, result.error)
    assert_funnel(result, fired)

    ttft = expected.get("ttft_ms", "not given")
    if isinstance(ttft, (int, float)):
        assert_time_near(result.ttft_ms, ttft, "TTFT")
    elif ttft is None or ttft.startswith("None"):
        assert result.ttft_ms is None
        assert result.first_token_at is None
    if isinstance(expected.get("time_to_first_visible_token_ms"), (int, float)):
        assert_time_near(result.time_to_first_visible_token_ms, expected["time_to_first_visible_token_ms"], "first visible token")
    if isinstance(expected.get("completion_ms"), (int, float)):
        assert_time_near(result.completion_ms, expected["completion_ms"], "completion")
    if isinstance(expected.get("last_token_ms"), (int, float)):
        assert_time_near((result.last_token_at - result.request_sent_at) * 1000, expected["last_token_ms"], "last token")

    if "content" in expected and expected["content"] is not None:
        assert result.text == expected["content"]
    if "partial_content" in expected:
        assert result.text == expected["partial_content"]
    if "reasoning_text" in expected:
        assert result.reasoning_text == expected["reasoning_text"]
    if "content_chunks" in expected:
        visible_events = [r for r in result.output_event_reasoning if not r]
        assert len(visible_events) == expected["content_chunks"]

    output_tokens = expected.get("output_tokens", expected.get("output_tokens_partial"))
    if isinstance(output_tokens, int):
        assert result.output_tokens == output_tokens
    elif isinstance(output_tokens, str) and "estimated" in output_tokens:
        assert result.output_tokens == int(output_tokens.split()[0])
        assert result.tokens_estimated
    for field in ("input_tokens", "reasoning_tokens", "finish_reason"):
        if field in expected:
            assert getattr(result, field) == expected[field], field
    if "tool_call" in expected:
        assert [(call.name, call.arguments) for call in result.tool_calls] == [
            (expected["tool_call"]["name"], expected["tool_call"]["arguments"])
        ]

    if not result.ok:
        kind = expected["error_kind"].split(" ")[0].split("/")[0]
        assert result.error_kind == kind
        if expected.get("error_message"):
            assert expected["error_message"] in result.error
    if "locust_events" in expected:
        phase_types = {"connect": "1 conn", "first_token": "2 ttft", "completion": "3 e2e"}
        response_times = {event["request_type"]: event["response_time"] for event in fired}
        for phase, recorded_ms in expected["locust_events"].items():
            assert_time_near(response_times[phase_types[phase]], recorded_ms, f"{phase} response_time")
        body_bytes = sum(len(chunk.encode("latin-1")) for chunk in CASES[case_id]["chunks"])
        assert fired[-1]["response_length"] == body_bytes
    if "retry_after_s" in expected:
        assert result.retry_after_s == expected["retry_after_s"]
    if "warning" in expected["outcome"]:
        assert result.warnings


def test_stall_fails_with_inter_token_timeout(replay_url: str) -> None:
    """A stream that goes silent after a token fails at completion once the idle timeout passes."""
    expected = CASES["B29"]["expected"]
    result, fired = run_case(replay_url, "B29", inter_token_timeout=1.0)

    assert not result.ok
    assert result.error_kind == "inter_token_timeout"
    assert result.error == "inter-token timeout: no data for 1 s"
    assert result.failed_phase == "completion"
    assert_funnel(result, fired)
    assert_time_near(result.ttft_ms, expected["ttft_ms"], "TTFT")
    # The last bytes came at 100 ms; the timeout fires one second of silence later.
    assert_time_near(result.completion_ms, 1100, "failure time")
    assert result.output_tokens == expected["output_tokens_partial"]


def test_first_token_timeout_counts_keep_alives(replay_url: str) -> None:
    """Keep-alive comments do not extend the first-token deadline."""
    result, fired = run_case(replay_url, "B05", first_token_timeout=1.5)

    assert not result.ok
    assert result.error_kind == "first_token_timeout"
    assert result.error == "first token timed out after 1.5 s"
    assert result.failed_phase == "first_token"
    assert_funnel(result, fired)
    assert_time_near(result.completion_ms, 1500, "failure time")


def test_stop_when_then_clean_request(replay_url: str) -> None:
    """A caller that stops reading early gets a success, and the next request receives only its own bytes."""
    environment = Environment()
    client = LLMClient(f"{replay_url}/B30", environment=environment)

    first = client.chat("hi", stop_when=lambda result: len(result.output_event_times) >= 2)
    second = client.chat("hi")

    assert first.ok
    assert first.stopped_early
    assert first.text == "tok0 tok1 "
    assert first.output_tokens == 2
    assert_time_near(first.ttft_ms, CASES["B30"]["expected"]["ttft_ms"], "TTFT")
    assert second.ok, second.error
    assert second.text == "ok"
    assert "tok2" not in second.text


def test_unterminated_done_then_next_request(replay_url: str) -> None:
    """After a stream whose [DONE] lacks its blank line, the same session serves the next request."""
    client = LLMClient(f"{replay_url}/B23")
    results = [client.chat("hi") for _ in range(2)]

    assert [result.ok for result in results] == [True, True]
    assert [result.text for result in results] == ["Hi", "Hi"]
