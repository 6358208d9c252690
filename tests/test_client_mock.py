"""LLMClient against the bundled mock server: timing, token counts, faults, framing, connections."""

from __future__ import annotations

import statistics
import time
from urllib.parse import urlsplit

import gevent
import pytest
from locust import task
from locust.env import Environment

from locust_llm_sse import LLMClient, LLMUser, llm_request_hook
from locust_llm_sse.mock._process import MockServerProcess

# The mock's schedule for the module's server (see conftest.mock_url).
TTFT_MS = 50.0
ITL_MS = 5.0
OUTPUT_TOKENS = 20
LATE_TOLERANCE_MS = 15.0


def established_connections_to(base_url: str) -> int:
    """Count ESTABLISHED TCP connections whose remote end is the server's port (from /proc/net/tcp)."""
    port = urlsplit(base_url).port
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01":
                count += 1
    return count


def wait_for_connections(base_url: str, expected: int, timeout_s: float = 3.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        count = established_connections_to(base_url)
        if count == expected or time.monotonic() > deadline:
            return count
        gevent.sleep(0.05)


def test_schedule_timing_and_tokens(mock_url: str) -> None:
    client = LLMClient(mock_url, model="mock-llm")
    results = [client.chat("Say something", max_tokens=100) for _ in range(5)]

    for result in results:
        assert result.ok, result.error
        assert result.text == "".join(f"tok{i} " for i in range(OUTPUT_TOKENS))
        assert result.output_tokens == OUTPUT_TOKENS
        assert not result.tokens_estimated
        assert result.finish_reason == "stop"
        assert result.input_tokens is not None and result.input_tokens > 0
        assert TTFT_MS - 1 <= result.ttft_ms <= TTFT_MS + LATE_TOLERANCE_MS
        last_token_ms = TTFT_MS + (OUTPUT_TOKENS - 1) * ITL_MS
        assert last_token_ms - 1 <= result.completion_ms <= last_token_ms + LATE_TOLERANCE_MS
        gaps = [gap for gap, _tokens in result.inter_token_latencies_ms()]
        assert len(gaps) == OUTPUT_TOKENS - 1
        assert statistics.median(gaps) == pytest.approx(ITL_MS, abs=1.0)
    # The server counts from reading the request and the client from just before sending,
    # so the client's TTFT includes the request's trip: about a millisecond on loopback.
    median_ttft = statistics.median(result.ttft_ms for result in results)
    assert TTFT_MS <= median_ttft <= TTFT_MS + 3.0


def test_max_tokens_caps_output_with_finish_reason_length(mock_url: str) -> None:
    result = LLMClient(mock_url).chat("hi", max_tokens=7)

    assert result.ok
    assert result.output_tokens == 7
    assert result.finish_reason == "length"


def test_usage_off_gives_estimated_counts(mock_url: str) -> None:
    result = LLMClient(mock_url, include_usage=False).chat("hi", max_tokens=100)

    assert result.ok
    assert result.usage is None
    assert result.tokens_estimated
    assert result.output_tokens == OUTPUT_TOKENS


def test_completions_endpoint_streams(mock_url: str) -> None:
    result = LLMClient(mock_url).completion("Once upon a time", max_tokens=5)

    assert result.ok, result.error
    assert result.text == "tok0 tok1 tok2 tok3 tok4 "
    assert result.output_tokens == 5


@pytest.mark.parametrize(
    ("fault", "phase", "kind"),
    [
        ("429", "connect", "http_status_429"),
        ("500", "connect", "http_status_500"),
        ("error_event", "completion", "stream_error_event"),
        ("cut", "completion", "truncated_stream"),
    ],
)
def test_injected_fault_fails_its_phase(mock_url: str, fault: str, phase: str, kind: str) -> None:
    environment = Environment()
    fired: list[dict] = []
    environment.events.request.add_listener(lambda **event: fired.append(event))
    client = LLMClient(mock_url, environment=environment)

    result = client.chat("hi", max_tokens=100, mock={"fault": fault})

    assert not result.ok
    assert result.failed_phase == phase
    assert result.error_kind == kind
    failures = [event for event in fired if event["exception"] is not None]
    assert len(failures) == 1
    assert str(failures[0]["exception"]) == result.error
    if fault == "429":
        assert result.retry_after_s is not None
        assert result.error.startswith("HTTP 429 ")
    # The session still works after every kind of failure.
    assert client.chat("hi", max_tokens=3).ok


def test_stall_fails_with_inter_token_timeout(mock_url: str) -> None:
    client = LLMClient(mock_url, inter_token_timeout=0.5)
    started = time.perf_counter()

    result = client.chat("hi", max_tokens=100, mock={"fault": "stall", "stall_ms": 5000})

    assert not result.ok
    assert result.error_kind == "inter_token_timeout"
    assert result.failed_phase == "completion"
    assert time.perf_counter() - started < 3.0


def test_gzip_body_is_decoded_and_on_time(mock_url: str) -> None:
    result = LLMClient(mock_url).chat("hi", max_tokens=100, mock={"gzip": True})

    assert result.ok, result.error
    assert result.text == "".join(f"tok{i} " for i in range(OUTPUT_TOKENS))
    assert TTFT_MS - 1 <= result.ttft_ms <= TTFT_MS + LATE_TOLERANCE_MS


def test_close_delimited_body_is_read_as_it_arrives(mock_url: str) -> None:
    """Without chunked framing, a read must still return each event, not wait for 64 KiB."""
    result = LLMClient(mock_url).chat("hi", max_tokens=100, mock={"framing": "close"})

    assert result.ok, result.error
    assert TTFT_MS - 1 <= result.ttft_ms <= TTFT_MS + LATE_TOLERANCE_MS
    gaps = [gap for gap, _tokens in result.inter_token_latencies_ms()]
    assert statistics.median(gaps) == pytest.approx(ITL_MS, abs=1.0)


def test_finished_streams_reuse_one_connection() -> None:
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1") as mock:
        client = LLMClient(mock.base_url)
        for _ in range(3):
            assert client.chat("hi", max_tokens=3).ok
            assert established_connections_to(mock.base_url) == 1
        client.session.close()
        assert wait_for_connections(mock.base_url, 0) == 0


def test_stopping_users_mid_stream_closes_connections() -> None:
    """Locust stopping its users mid-stream closes every connection and records no failure."""
    with MockServerProcess("--ttft-ms", "20", "--itl-ms", "50", "--output-tokens", "400") as mock:
        base_url = mock.base_url + "/v1"

        class StreamingUser(LLMUser):
            host = base_url

            @task
            def chat(self) -> None:
                self.client.chat("hi", max_tokens=400)

        environment = Environment(user_classes=[StreamingUser])
        stopped = []
        llm_request_hook(environment.events).add_listener(lambda result, **_: stopped.append(result.stopped))
        runner = environment.create_local_runner()
        runner.start(3, spawn_rate=100)
        assert wait_for_connections(base_url, 3) == 3
        gevent.sleep(0.5)

        runner.stop()
        runner.quit()

        assert wait_for_connections(base_url, 0) == 0
        assert stopped == [True, True, True]
        assert environment.stats.total.num_failures == 0
        assert environment.stats.get("/v1/chat/completions", "2 ttft").num_requests == 3
        assert environment.stats.get("/v1/chat/completions", "3 e2e").num_requests == 0
