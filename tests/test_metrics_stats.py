"""Tests of LLMStats with StreamResults built by hand: formulas, failures, merges, windows."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from locust.rpc.protocol import Message

from locust_llm_sse._result import StreamResult
from locust_llm_sse.metrics._stats import (
    AGGREGATED_NAME,
    ITL_WEIGHT_PER_TOKEN,
    RECENT_WINDOW_S,
    LLMStats,
    column_names,
    parse_percentiles,
    percentile_label,
)

RELATIVE_ERROR = 0.01


def make_result(
    name: str = "chat",
    *,
    start_time: float = 1_000_000.0,
    ttft_s: float = 0.100,
    gaps_s: tuple[float, ...] = (0.020, 0.020),
    tokens: tuple[float, ...] | None = None,
    reasoning: tuple[bool, ...] | None = None,
    end_after_last_s: float = 0.005,
    ok: bool = True,
    failed_phase: str | None = None,
    output_tokens: int | None = None,
    input_tokens: int | None = 7,
    reasoning_tokens: int | None = None,
    finish_reason: str | None = "stop",
    tokens_estimated: bool = False,
    stopped: bool = False,
) -> StreamResult:
    """Build a StreamResult whose output events arrive at TTFT, then after each gap."""
    sent = 50.0
    times = [sent + ttft_s]
    for gap in gaps_s:
        times.append(times[-1] + gap)
    tokens = tokens if tokens is not None else tuple(1.0 for _ in times)
    reasoning = reasoning if reasoning is not None else tuple(False for _ in times)
    visible = [time for time, is_reasoning in zip(times, reasoning) if not is_reasoning]
    return StreamResult(
        name=name,
        url="http://127.0.0.1/v1/chat/completions",
        start_time=start_time,
        request_sent_at=sent,
        headers_received_at=sent + 0.001,
        first_token_at=times[0],
        first_visible_token_at=visible[0] if visible else None,
        last_token_at=times[-1],
        end_at=times[-1] + end_after_last_s,
        input_tokens=input_tokens,
        output_tokens=output_tokens if output_tokens is not None else round(sum(tokens)),
        reasoning_tokens=reasoning_tokens,
        tokens_estimated=tokens_estimated,
        finish_reason=finish_reason,
        output_event_times=times,
        output_event_tokens=list(tokens),
        output_event_reasoning=list(reasoning),
        ok=ok,
        failed_phase=failed_phase,
        stopped=stopped,
    )


def connect_failure(name: str = "chat", start_time: float = 1_000_000.0) -> StreamResult:
    return StreamResult(
        name=name,
        url="http://127.0.0.1/v1/chat/completions",
        start_time=start_time,
        request_sent_at=50.0,
        end_at=50.2,
        ok=False,
        failed_phase="connect",
    )


def row_by_name(stats: LLMStats, name: str) -> dict[str, Any]:
    return next(row for row in stats.rows() if row["name"] == name)


def test_single_request_metrics() -> None:
    stats = LLMStats()
    stats.record(make_result(ttft_s=0.100, gaps_s=(0.020, 0.030), end_after_last_s=0.010))

    row = row_by_name(stats, "chat")
    assert row["requests_completed"] == 1
    assert row["ttft_ms_p50"] == pytest.approx(100.0, abs=1e-9)
    assert row["time_to_first_visible_token_ms_p50"] == pytest.approx(100.0, abs=1e-9)
    assert row["e2e_latency_ms_mean"] == pytest.approx(160.0, abs=1e-9)
    # (e2e - TTFT) / (tokens - 1) = 60 ms / 2
    assert row["tpot_ms_mean"] == pytest.approx(30.0, abs=1e-9)
    assert row["itl_ms_mean"] == pytest.approx(25.0, abs=1e-9)
    assert row["output_tokens_total"] == 3
    assert row["input_tokens_total"] == 7
    assert row["request_output_tokens_per_second_mean"] == pytest.approx(3 / 0.160, rel=1e-9)


def test_itl_divides_gap_by_event_tokens() -> None:
    stats = LLMStats()
    # Events of 1, 1 and 3 tokens; the 3-token event came 30 ms after the previous one.
    stats.record(make_result(gaps_s=(0.010, 0.030), tokens=(1, 1, 3)))

    itl = stats.entries["chat"].histograms["itl_ms"]
    assert itl.count == 4 * ITL_WEIGHT_PER_TOKEN
    assert itl.mean == pytest.approx((10.0 + 3 * 10.0) / 4, abs=1e-9)
    assert itl.max == pytest.approx(10.0, abs=1e-9)
    assert itl.min == pytest.approx(10.0, abs=1e-9)


def test_itl_weights_fractional_tokens() -> None:
    stats = LLMStats()
    stats.record(make_result(gaps_s=(0.010,), tokens=(1.0, 2.5), output_tokens=4))

    itl = stats.entries["chat"].histograms["itl_ms"]
    assert itl.count == 2500
    assert itl.mean == pytest.approx(4.0, abs=1e-9)


def test_itl_carries_gap_over_zero_token_event() -> None:
    stats = LLMStats()
    stats.record(make_result(gaps_s=(0.010, 0.015), tokens=(1, 0, 1), output_tokens=2))

    itl = stats.entries["chat"].histograms["itl_ms"]
    assert itl.count == ITL_WEIGHT_PER_TOKEN
    assert itl.mean == pytest.approx(25.0, abs=1e-9)


def test_first_event_tokens_have_no_itl() -> None:
    stats = LLMStats()
    stats.record(make_result(gaps_s=(0.010,), tokens=(3, 1)))

    entry = stats.entries["chat"]
    assert entry.histograms["itl_ms"].count == ITL_WEIGHT_PER_TOKEN
    # TPOT still spreads the time after the first event over all later tokens: 15 ms / 3.
    assert entry.histograms["tpot_ms"].mean == pytest.approx(15.0 / 3, abs=1e-9)


def test_single_token_request_has_no_tpot_or_itl() -> None:
    stats = LLMStats()
    stats.record(make_result(gaps_s=()))

    row = row_by_name(stats, "chat")
    assert row["tpot_ms_mean"] is None
    assert row["itl_ms_p50"] is None
    assert row["ttft_ms_p50"] == pytest.approx(100.0, abs=1e-9)


def test_reasoning_events_delay_visible_token() -> None:
    stats = LLMStats()
    stats.record(
        make_result(
            ttft_s=0.050,
            gaps_s=(0.010, 0.010, 0.010),
            reasoning=(True, True, False, False),
            reasoning_tokens=None,
        )
    )

    row = row_by_name(stats, "chat")
    assert row["ttft_ms_p50"] == pytest.approx(50.0, abs=1e-9)
    assert row["time_to_first_visible_token_ms_p50"] == pytest.approx(70.0, abs=1e-9)
    assert row["reasoning_tokens_total"] == 2


def test_reasoning_tokens_from_usage_win() -> None:
    stats = LLMStats()
    stats.record(make_result(reasoning=(True, False, False), reasoning_tokens=40, output_tokens=50))

    assert row_by_name(stats, "chat")["reasoning_tokens_total"] == 40


def test_estimated_tokens_and_finish_reasons_counted() -> None:
    stats = LLMStats()
    stats.record(make_result(tokens_estimated=True, finish_reason="length"))
    stats.record(make_result(finish_reason="stop"))
    stats.record(make_result(finish_reason="stop"))
    stats.record(make_result(finish_reason=None))

    row = row_by_name(stats, "chat")
    assert row["requests_with_estimated_tokens"] == 1
    assert row["finish_reasons"] == "length=1 none=1 stop=2"


def test_failures_counted_per_phase() -> None:
    stats = LLMStats()
    stats.record(connect_failure())
    stats.record(make_result(ok=False, failed_phase="first_token", gaps_s=()))
    stats.record(make_result(ok=False, failed_phase="completion"))
    stats.record(make_result(ok=False, failed_phase="completion"))

    row = row_by_name(stats, "chat")
    assert row["requests_failed"] == 4
    assert row["connect_failures"] == 1
    assert row["first_token_failures"] == 1
    assert row["completion_failures"] == 2
    assert row["requests_completed"] == 0


def test_failed_request_keeps_observed_latencies_only() -> None:
    stats = LLMStats()
    stats.record(make_result(ok=False, failed_phase="completion", ttft_s=0.200, gaps_s=(0.010,), input_tokens=9))

    entry = stats.entries["chat"]
    assert entry.histograms["ttft_ms"].count == 1
    assert entry.histograms["itl_ms"].count == ITL_WEIGHT_PER_TOKEN
    assert entry.histograms["e2e_latency_ms"].count == 0
    assert entry.histograms["tpot_ms"].count == 0
    assert entry.histograms["request_output_tokens_per_second"].count == 0
    assert entry.output_tokens_total == 0
    assert entry.input_tokens_total == 0
    assert entry.finish_reasons == {}


def test_stopped_request_is_skipped() -> None:
    stats = LLMStats()
    stats.record(make_result(stopped=True, ok=False))

    assert stats.entries == {}
    assert stats.rows()[-1]["requests_failed"] == 0


def test_rows_sorted_with_aggregated_last() -> None:
    stats = LLMStats()
    for name in ("zeta", "alpha", "mid"):
        stats.record(make_result(name))

    rows = stats.rows()
    assert [row["name"] for row in rows] == ["alpha", "mid", "zeta", AGGREGATED_NAME]
    for row in rows:
        assert list(row) == stats.columns()
    assert list(rows[0])[0] == "name"


def test_aggregated_row_sums_names() -> None:
    stats = LLMStats()
    stats.record(make_result("a", ttft_s=0.100))
    stats.record(make_result("b", ttft_s=0.300))
    stats.record(connect_failure("b"))

    total = stats.rows()[-1]
    assert total["requests_completed"] == 2
    assert total["connect_failures"] == 1
    assert total["output_tokens_total"] == 6
    assert total["ttft_ms_mean"] == pytest.approx(200.0, abs=1e-9)


def test_rates_use_first_start_to_last_end() -> None:
    stats = LLMStats()
    # Request 1: starts at t, ends at t + 0.145 s. Request 2: starts at t + 1.855, same length.
    stats.record(make_result(start_time=1_000_000.0))
    stats.record(make_result(start_time=1_000_001.855, input_tokens=3))

    assert stats.duration_s() == pytest.approx(2.0, abs=1e-6)
    total = stats.rows()[-1]
    assert total["requests_per_second"] == pytest.approx(1.0, rel=1e-6)
    assert total["output_tokens_per_second"] == pytest.approx(3.0, rel=1e-6)
    assert total["input_tokens_per_second"] == pytest.approx(5.0, rel=1e-6)


def test_percentiles_within_relative_error() -> None:
    generator = random.Random(11)
    ttfts = [generator.uniform(0.01, 2.0) for _ in range(500)]
    stats = LLMStats(percentiles=[0.5, 0.9, 0.99])
    for ttft in ttfts:
        stats.record(make_result(ttft_s=ttft))

    row = row_by_name(stats, "chat")
    ordered = sorted(ttft * 1000.0 for ttft in ttfts)
    for fraction in (0.5, 0.9, 0.99):
        exact = ordered[int(fraction * len(ordered) + 0.999999) - 1]
        assert row[f"ttft_ms_{percentile_label(fraction)}"] == pytest.approx(exact, rel=RELATIVE_ERROR)


def test_empty_stats_have_aggregated_row_only() -> None:
    rows = LLMStats().rows()

    assert len(rows) == 1
    assert rows[0]["name"] == AGGREGATED_NAME
    assert rows[0]["requests_per_second"] is None
    assert rows[0]["ttft_ms_p50"] is None


def test_reset_forgets_everything() -> None:
    stats = LLMStats()
    stats.record(make_result())
    stats.append_history(now=1_000_010.0)
    stats.reset()

    assert stats.entries == {}
    assert stats.history == []
    assert stats.rows()[-1]["requests_completed"] == 0


def random_results(seed: int, count: int) -> list[StreamResult]:
    generator = random.Random(seed)
    results = []
    for index in range(count):
        events = generator.randint(1, 12)
        name = generator.choice(["chat", "completion"])
        start = 1_000_000.0 + generator.uniform(0.0, 10.0)
        if generator.random() < 0.1:
            results.append(connect_failure(name, start))
            continue
        failed = generator.random() < 0.1
        results.append(
            make_result(
                name,
                start_time=start,
                ttft_s=generator.uniform(0.01, 1.0),
                gaps_s=tuple(generator.uniform(0.0001, 0.05) for _ in range(events - 1)),
                tokens=tuple(float(generator.choice([1, 1, 3])) for _ in range(events)),
                ok=not failed,
                failed_phase="completion" if failed else None,
                input_tokens=generator.randint(1, 100),
                finish_reason=generator.choice(["stop", "length"]),
                tokens_estimated=index % 5 == 0,
            )
        )
    return results


def assert_rows_match(merged: list[dict[str, Any]], single: list[dict[str, Any]]) -> None:
    assert [row["name"] for row in merged] == [row["name"] for row in single]
    for merged_row, single_row in zip(merged, single):
        for column, value in single_row.items():
            if column.endswith("_mean") or column.endswith("_per_second"):
                assert merged_row[column] == pytest.approx(value, rel=1e-12), column
            else:
                assert merged_row[column] == value, column


def test_worker_reports_merge_to_single_process_numbers() -> None:
    results = random_results(seed=12, count=600)
    single = LLMStats()
    workers = [LLMStats(), LLMStats(), LLMStats()]
    master = LLMStats()
    for index, result in enumerate(results):
        single.record(result)
        workers[index % 3].record(result)
        # Workers report every 100 requests, as a worker reports every few seconds.
        if index % 100 == 99:
            for worker in workers:
                report = worker.take_report()
                if report is not None:
                    master.merge_report(report)
    for worker in workers:
        report = worker.take_report()
        if report is not None:
            master.merge_report(report)

    assert_rows_match(master.rows(), single.rows())


def test_report_survives_locust_message() -> None:
    worker = LLMStats()
    for result in random_results(seed=13, count=50):
        worker.record(result)
    expected = worker.rows()
    message = Message("stats", {"llm_metrics": worker.take_report()}, "worker-1")

    master = LLMStats()
    master.merge_report(Message.unserialize(message.serialize()).data["llm_metrics"])

    assert_rows_match(master.rows(), expected)


def test_take_report_resets_and_returns_none_when_empty() -> None:
    worker = LLMStats()
    assert worker.take_report() is None

    worker.record(make_result())
    assert worker.take_report() is not None
    assert worker.take_report() is None
    assert worker.entries == {}


def test_merge_report_rejects_other_version() -> None:
    worker = LLMStats()
    worker.record(make_result())
    report = worker.take_report()
    assert report is not None
    report["version"] = 99

    with pytest.raises(ValueError, match="unsupported LLM metrics report version 99"):
        LLMStats().merge_report(report)


def test_merge_report_rejects_other_relative_error() -> None:
    worker = LLMStats(relative_error=0.02)
    worker.record(make_result())
    report = worker.take_report()
    assert report is not None

    with pytest.raises(ValueError, match="relative error 0.02"):
        LLMStats().merge_report(report)


def test_report_is_plain_json() -> None:
    worker = LLMStats()
    for result in random_results(seed=14, count=20):
        worker.record(result)

    report = worker.take_report()
    assert json.loads(json.dumps(report)) == report


def test_current_window_rates_and_percentiles() -> None:
    now = 2_000_000.5
    stats = LLMStats()
    # Ten requests of 145 ms and 3 tokens ended in the middle of each of the 5 whole
    # seconds before now's second. The first request started in the first of those seconds.
    for second in range(5):
        for _ in range(10):
            stats.record(make_result(start_time=2_000_000 - 5 + second + 0.5 - 0.145, ttft_s=0.100))

    point = stats.current(now=now)
    assert point["requests_per_second"] == pytest.approx(10.0, rel=1e-9)
    assert point["output_tokens_per_second"] == pytest.approx(30.0, rel=1e-9)
    assert point["input_tokens_per_second"] == pytest.approx(70.0, rel=1e-9)
    assert point["ttft_ms_p50"] == pytest.approx(100.0, rel=RELATIVE_ERROR)
    assert point["itl_ms_p95"] == pytest.approx(20.0, rel=RELATIVE_ERROR)
    assert point["time"] == now


def test_current_window_leaves_out_old_and_delayed_seconds() -> None:
    now = 2_000_000.5
    stats = LLMStats()
    stats.record(make_result(start_time=now - 100.0))
    stats.record(make_result(start_time=now - RECENT_WINDOW_S - 3.0))
    stats.record(make_result(start_time=now - 2.5))

    point = stats.current(now=now, delay_s=3)
    # Window: the 10 whole seconds before now - 3 s. Only the second request ended there.
    assert point["requests_per_second"] == pytest.approx(1 / RECENT_WINDOW_S, rel=1e-9)


def test_current_window_without_samples_has_no_percentiles() -> None:
    point = LLMStats().current(now=2_000_000.0)

    assert point["requests_per_second"] == 0.0
    assert point["ttft_ms_p50"] is None
    assert point["itl_ms_p95"] is None


def test_history_point_keys() -> None:
    stats = LLMStats()
    stats.record(make_result(start_time=2_000_000.0))
    point = stats.append_history(now=2_000_003.0)

    assert stats.history == [point]
    for key in (
        "time",
        "output_tokens_per_second",
        "ttft_ms_p50",
        "ttft_ms_p95",
        "itl_ms_p50",
        "itl_ms_p95",
        "requests_per_second",
    ):
        assert key in point


def test_recent_seconds_are_bounded() -> None:
    stats = LLMStats()
    for second in range(500):
        stats.record(make_result(start_time=2_000_000.0 + second))

    assert len(stats._recent) <= 31


def test_column_names_follow_percentiles() -> None:
    columns = column_names([0.5, 0.999])

    assert columns[0] == "name"
    assert "ttft_ms_p50" in columns
    assert "itl_ms_p99_9" in columns
    assert "tpot_ms_mean" in columns
    assert "e2e_latency_ms_p50" in columns
    assert "time_to_first_visible_token_ms_p99_9" in columns


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50,90,95,99", [0.5, 0.9, 0.95, 0.99]),
        (" 99 , 50 ,50", [0.5, 0.99]),
        ("99.9,100", [0.999, 1.0]),
        ("0.1", [0.001]),
    ],
)
def test_parse_percentiles_accepts(text: str, expected: list[float]) -> None:
    assert parse_percentiles(text) == expected


@pytest.mark.parametrize("text", ["", "50,,90", "abc", "0", "-5", "101", "nan", "50;90"])
def test_parse_percentiles_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="e.g. 50,90,95,99"):
        parse_percentiles(text)
