"""End-to-end tests: real requests through LLMUser against the mock server, in process and headless.

The mock streams a fixed schedule: TTFT 100 ms, then one event every 20 ms. Its 10 tokens
come in events of 1, 1, 3, 1, 1 and 3 tokens, and the first 2 tokens are reasoning. Each test
checks two things: that every metric equals an independent computation from the
requests' own StreamResults (counts exact, means to 1e-6, percentiles within the
histogram's 1 % error), and that the measured times match the mock's schedule.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from locust import constant, task
from locust.env import Environment
from locust.event import Events

from locust_llm_sse import LLMUser, StreamResult
from locust_llm_sse._events import llm_request_hook
from locust_llm_sse.metrics import LLMStats, get_llm_stats
from locust_llm_sse.metrics._stats import ITL_WEIGHT_PER_TOKEN, percentile_label
from locust_llm_sse.mock._process import MockServerProcess

RELATIVE_ERROR = 0.01
PERCENTILES = [0.5, 0.9, 0.95, 0.99]

TTFT_MS = 100.0
ITL_MS = 20.0
# At most 10 tokens, so that every token text of the mock ("tok0 " to "tok9 ") has the same
# length and the client's share of the usage count per event is exact.
EVENT_TOKENS = [1, 1, 3, 1, 1, 3]
REASONING_EVENTS = [True, True, False, False, False, False]
OUTPUT_TOKENS = sum(EVENT_TOKENS)
REASONING_TOKENS = 2
MOCK_ARGS = (
    "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--output-tokens", str(OUTPUT_TOKENS),
    "--tokens-per-event", "1,1,3", "--reasoning-tokens", str(REASONING_TOKENS),
)  # fmt: skip

# Time allowed on top of the mock's schedule. For the TTFT, sending and parsing the request
# come before the mock's clock starts. For the end of the stream, the finish reason, usage
# and [DONE] follow the last token. Both include the client's greenlet scheduling.
OVERHEAD_MS = 10.0
# Allowed difference between a measured gap and the mock's schedule.
SCHEDULE_TOLERANCE_MS = 1.0

STREAM_RESULT_FIELDS = (
    "name", "url", "start_time", "request_sent_at", "headers_received_at", "first_token_at",
    "first_visible_token_at", "last_token_at", "end_at", "input_tokens", "output_tokens",
    "reasoning_tokens", "tokens_estimated", "finish_reason", "output_event_times",
    "output_event_tokens", "output_event_reasoning", "ok", "failed_phase", "error_kind", "stopped",
)  # fmt: skip

LOCUSTFILE = textwrap.dedent(
    """
    import json
    import os

    from locust import constant, events, task

    import locust_llm_sse.metrics  # noqa: F401 - registers the LLM metrics
    from locust_llm_sse import LLMUser
    from locust_llm_sse._events import llm_request_hook

    FIELDS = {fields!r}
    seen = []


    class ChatUser(LLMUser):
        wait_time = constant(0)

        @task
        def chat(self):
            self.client.chat("hello", max_tokens=64, name="chat")


    @events.init.add_listener
    def capture(environment, **_kwargs):
        # Test-only: keep what this process saw, to compare with the master's numbers.
        def on_llm_request(result, **_kwargs):
            if not result.stopped:
                seen.append({{field: getattr(result, field) for field in FIELDS}})

        llm_request_hook(environment.events).add_listener(on_llm_request)


    @events.quitting.add_listener
    def dump(environment, **_kwargs):
        path = os.path.join(os.environ["LLM_TEST_DUMP_DIR"], f"seen-{{os.getpid()}}.json")
        with open(path, "w") as file:
            json.dump(seen, file)
    """
).format(fields=STREAM_RESULT_FIELDS)


# -- Reference computations, independent of locust_llm_sse.metrics --------------------------


def weighted_nearest_rank(pairs: list[tuple[float, float]], fraction: float) -> float | None:
    """Smallest value whose cumulative weight reaches fraction * total weight."""
    if not pairs:
        return None
    ordered = sorted(pairs)
    total = sum(weight for _, weight in ordered)
    target = max(fraction * total, min(weight for _, weight in ordered)) * (1 - 1e-12)
    cumulative = 0.0
    for value, weight in ordered:
        cumulative += weight
        if cumulative >= target:
            return value
    return ordered[-1][0]


def weighted_mean(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(weight for _, weight in pairs)
    return sum(value * weight for value, weight in pairs) / total if total else None


def reference_samples(results: list[StreamResult]) -> dict[str, list[tuple[float, float]]]:
    """Per-metric (value, weight) samples, computed from the raw timing points."""
    samples: dict[str, list[tuple[float, float]]] = {
        "ttft_ms": [],
        "time_to_first_visible_token_ms": [],
        "tpot_ms": [],
        "itl_ms": [],
        "e2e_latency_ms": [],
        "request_output_tokens_per_second": [],
    }
    for result in results:
        sent = result.request_sent_at
        if result.first_token_at is not None:
            samples["ttft_ms"].append(((result.first_token_at - sent) * 1000, 1))
        if result.first_visible_token_at is not None:
            samples["time_to_first_visible_token_ms"].append(((result.first_visible_token_at - sent) * 1000, 1))
        times, tokens = result.output_event_times, result.output_event_tokens
        previous = times[0] if times else 0.0
        for time_s, count in zip(times[1:], tokens[1:]):
            if count > 0:
                samples["itl_ms"].append(((time_s - previous) * 1000 / count, count))
                previous = time_s
        if result.ok:
            assert result.end_at is not None and result.first_token_at is not None
            e2e = (result.end_at - sent) * 1000
            samples["e2e_latency_ms"].append((e2e, 1))
            samples["request_output_tokens_per_second"].append((result.output_tokens * 1000 / e2e, 1))
            if result.output_tokens > 1:
                tpot = (result.end_at - result.first_token_at) * 1000 / (result.output_tokens - 1)
                samples["tpot_ms"].append((tpot, 1))
    return samples


def assert_row_matches_results(row: dict[str, Any], results: list[StreamResult], percentiles: list[float]) -> None:
    """Check one row of metrics against the StreamResults it was counted from."""
    ok = [result for result in results if result.ok]
    failed = [result for result in results if not result.ok]
    assert row["requests_completed"] == len(ok)
    assert row["requests_failed"] == len(failed)
    for phase in ("connect", "first_token", "completion"):
        assert row[f"{phase}_failures"] == sum(1 for result in failed if result.failed_phase == phase)
    assert row["output_tokens_total"] == sum(result.output_tokens for result in ok)
    assert row["input_tokens_total"] == sum(result.input_tokens or 0 for result in ok)
    assert row["reasoning_tokens_total"] == sum(result.reasoning_tokens or 0 for result in ok)
    assert row["requests_with_estimated_tokens"] == sum(1 for result in ok if result.tokens_estimated)

    for metric, pairs in reference_samples(results).items():
        expected_mean = weighted_mean(pairs)
        if expected_mean is None:
            assert row[f"{metric}_mean"] is None, metric
        else:
            assert row[f"{metric}_mean"] == pytest.approx(expected_mean, rel=1e-9, abs=1e-6), metric
        for fraction in percentiles:
            column = f"{metric}_{percentile_label(fraction)}"
            expected = weighted_nearest_rank(pairs, fraction)
            if expected is None:
                assert row[column] is None, column
            else:
                assert row[column] == pytest.approx(expected, rel=RELATIVE_ERROR * (1 + 1e-9)), column


def assert_results_follow_schedule(results: list[StreamResult]) -> None:
    """Check the token counts of every request exactly, and the median times against the schedule.

    Medians over the requests are used, because on a busy machine a few events arrive late
    by several milliseconds. The metrics themselves are checked against every raw time by
    ``assert_row_matches_results``.
    """
    assert results
    for result in results:
        assert result.ok, result.error_kind
        assert result.output_event_tokens == EVENT_TOKENS
        assert result.output_event_reasoning == REASONING_EVENTS
        assert result.output_tokens == OUTPUT_TOKENS
        assert result.reasoning_tokens == REASONING_TOKENS
        assert result.tokens_estimated is False

    def median_ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    tolerance = SCHEDULE_TOLERANCE_MS
    ttft = median_ms([result.first_token_at - result.request_sent_at for result in results])  # type: ignore[operator]
    assert TTFT_MS <= ttft <= TTFT_MS + OVERHEAD_MS
    for index in range(1, len(EVENT_TOKENS)):
        gap = median_ms([result.output_event_times[index] - result.output_event_times[index - 1] for result in results])
        assert gap == pytest.approx(ITL_MS, abs=tolerance), index
    # The first visible token is the third event: two gaps after the first.
    visible = median_ms([result.first_visible_token_at - result.first_token_at for result in results])  # type: ignore[operator]
    assert visible == pytest.approx(2 * ITL_MS, abs=tolerance)
    tail = median_ms([result.end_at - result.output_event_times[-1] for result in results])  # type: ignore[operator]
    assert 0 <= tail <= OVERHEAD_MS


def assert_row_follows_schedule(row: dict[str, Any]) -> None:
    """Check the percentiles of the mock's fixed schedule, within the histogram error and the tolerance."""
    tolerance = SCHEDULE_TOLERANCE_MS
    assert TTFT_MS <= row["ttft_ms_p50"] * (1 + RELATIVE_ERROR)
    assert row["ttft_ms_p50"] <= TTFT_MS + OVERHEAD_MS
    # Five gaps of 20 ms after the first event, shared by the 9 tokens after the first.
    # TPOT also spreads the short time from the last token to the end of the stream.
    gaps = len(EVENT_TOKENS) - 1
    expected_tpot = gaps * ITL_MS / (OUTPUT_TOKENS - 1)
    assert row["tpot_ms_p50"] == pytest.approx(expected_tpot, rel=RELATIVE_ERROR, abs=tolerance)
    # Per token: 6 of the 9 tokens after the first came in 3-token events (20 ms / 3),
    # 3 in 1-token events (20 ms). So p50 is 6.67 ms and p90 is 20 ms.
    assert row["itl_ms_p50"] == pytest.approx(ITL_MS / 3, rel=RELATIVE_ERROR, abs=tolerance)
    assert row["itl_ms_p90"] == pytest.approx(ITL_MS, rel=RELATIVE_ERROR, abs=tolerance)
    assert row["output_tokens_mean"] == OUTPUT_TOKENS
    assert row["reasoning_tokens_total"] == REASONING_TOKENS * row["requests_completed"]
    assert row["finish_reasons"] in ("stop=%d" % row["requests_completed"], {"stop": row["requests_completed"]})


def result_from_dump(data: dict[str, Any]) -> StreamResult:
    return StreamResult(**data)


# -- Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_base_url() -> Iterator[str]:
    with MockServerProcess(*MOCK_ARGS) as mock:
        yield mock.base_url


class ChatUser(LLMUser):
    wait_time = constant(0)

    @task
    def chat(self) -> None:
        self.client.chat("hello", max_tokens=64, name="chat")


def run_in_process(host: str, user_count: int, request_count: int) -> tuple[LLMStats, list[StreamResult]]:
    """Run users until ``request_count`` requests finished (at most 30 s) and return the stats and results."""
    environment = Environment(user_classes=[ChatUser], events=Events(), host=host)
    runner = environment.create_local_runner()
    stats = get_llm_stats(environment)
    results: list[StreamResult] = []

    def capture(result: StreamResult, **_kwargs: Any) -> None:
        if not result.stopped:
            results.append(result)

    llm_request_hook(environment.events).add_listener(capture)
    runner.start(user_count, spawn_rate=user_count)
    try:
        with gevent.Timeout(30, TimeoutError(f"fewer than {request_count} requests finished in 30 s")):
            while len(results) < request_count:
                gevent.sleep(0.05)
    finally:
        runner.quit()
    return stats, results


# -- In-process run ------------------------------------------------------------------------


def test_metrics_match_results_and_schedule(mock_base_url: str) -> None:
    stats, results = run_in_process(mock_base_url, user_count=3, request_count=30)

    rows = stats.rows_with_finish_reason_counts()
    assert [row["name"] for row in rows] == ["chat", "Aggregated"]
    assert_results_follow_schedule(results)
    for row in rows:
        assert_row_matches_results(row, results, stats.percentiles)
        assert_row_follows_schedule(row)
    itl = stats.entries["chat"].histograms["itl_ms"]
    assert itl.count == len(results) * (OUTPUT_TOKENS - 1) * ITL_WEIGHT_PER_TOKEN


def test_rates_match_results(mock_base_url: str) -> None:
    stats, results = run_in_process(mock_base_url, user_count=2, request_count=10)

    first_start = min(result.start_time for result in results)
    last_end = max(result.start_time + (result.end_at - result.request_sent_at) for result in results)
    duration = last_end - first_start
    total = stats.rows()[-1]
    assert stats.duration_s() == pytest.approx(duration, abs=1e-6)
    assert total["requests_per_second"] == pytest.approx(len(results) / duration, rel=1e-6)
    assert total["output_tokens_per_second"] == pytest.approx(len(results) * OUTPUT_TOKENS / duration, rel=1e-6)
    input_total = sum(result.input_tokens or 0 for result in results)
    assert total["input_tokens_per_second"] == pytest.approx(input_total / duration, rel=1e-6)


# -- Headless locust run -------------------------------------------------------------------


def run_locust(args: list[str], cwd: Path, dump_dir: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``locust`` in a child process on 127.0.0.1, killed if it outlives ``timeout_s``."""
    environment = {**os.environ, "LLM_TEST_DUMP_DIR": str(dump_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "locust", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def load_dumps(dump_dir: Path) -> list[StreamResult]:
    results = []
    for path in sorted(dump_dir.glob("seen-*.json")):
        results.extend(result_from_dump(data) for data in json.loads(path.read_text()))
    return results


def test_headless_run_writes_csv_json_and_summary(mock_base_url: str, tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    dump_dir = tmp_path / "dumps"
    dump_dir.mkdir()

    completed = run_locust(
        [
            "-f", "locustfile.py", "--headless", "-u", "2", "-r", "2", "-t", "3s", "--stop-timeout", "0",
            "-H", mock_base_url, "--csv", "out/run", "--csv-full-history",
            "--llm-json", "out/llm.json", "--llm-percentiles", "50,90,99.9",
        ],
        cwd=tmp_path,
        dump_dir=dump_dir,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    results = load_dumps(dump_dir)
    assert_results_follow_schedule(results)

    data = json.loads((tmp_path / "out" / "llm.json").read_text())
    assert data["percentiles"] == [0.5, 0.9, 0.999]
    assert [row["name"] for row in data["per_name"]] == ["chat"]
    assert_row_matches_results(data["aggregated"], results, data["percentiles"])
    assert_row_follows_schedule(data["aggregated"])

    with open(tmp_path / "out" / "run_llm_stats.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["chat", "Aggregated"]
    assert int(rows[-1]["requests_completed"]) == len(results)
    assert float(rows[-1]["ttft_ms_p99_9"]) == pytest.approx(data["aggregated"]["ttft_ms_p99_9"], abs=0.001)
    with open(tmp_path / "out" / "run_llm_stats_history.csv", newline="") as file:
        history = list(csv.DictReader(file))
    assert history
    assert set(row["name"] for row in history) == {"chat", "Aggregated"}

    # The LLM summary comes after Locust's own tables, on standard error like them.
    output = completed.stderr
    assert output.index("Response time percentiles") < output.index("LLM summary")
    assert "P99.9 TTFT (ms):" in output
    assert "Total output tokens:" in output


def test_stream_result_dump_round_trip() -> None:
    result = StreamResult(name="x", url="u", output_event_times=[1.0], output_event_tokens=[1.0])
    data = {field: getattr(result, field) for field in STREAM_RESULT_FIELDS}

    assert dataclasses.asdict(result_from_dump(json.loads(json.dumps(data)))) == dataclasses.asdict(result)
