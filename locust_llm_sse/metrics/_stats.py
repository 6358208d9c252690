"""Token-level statistics of streamed requests, per request name and aggregated.

Every quantity is a counter or a ``LogHistogram``, so the statistics of several processes
merge exactly: counters add, histogram buckets add. Nothing is kept per request, so memory
grows with the number of request names, never with the number of requests.

Which requests count where:

* A request with ``stopped`` set (Locust stopped the user mid-stream) is skipped entirely.
* A failed request adds one to ``requests_failed`` and to the counter of its failed phase.
* Latency samples whose two ends were observed count for every request that is not
  stopped: TTFT and time to first visible token when that moment came, and the gap
  before each output event that carried tokens. A request that got its first token and
  then failed mid-stream therefore still contributes its TTFT and inter-token latencies.
* End-to-end latency, TPOT, per-request output token rate, token counts, finish reasons
  and the requests/s and tokens/s rates count successful requests only, because they need
  the end of the stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from locust_llm_sse._result import PHASE_COMPLETION, PHASE_CONNECT, PHASE_FIRST_TOKEN, StreamResult
from locust_llm_sse.metrics._histogram import DEFAULT_RELATIVE_ERROR, LogHistogram

AGGREGATED_NAME = "Aggregated"

DEFAULT_PERCENTILES = [0.5, 0.9, 0.95, 0.99]

HISTOGRAM_METRICS = (
    "ttft_ms",
    "time_to_first_visible_token_ms",
    "tpot_ms",
    "itl_ms",
    "e2e_latency_ms",
    "request_output_tokens_per_second",
)
"""Metrics kept as histograms, in column order. Each gets a ``_mean`` column and one per percentile."""

COUNTER_COLUMNS = (
    "requests_completed",
    "requests_failed",
    "connect_failures",
    "first_token_failures",
    "completion_failures",
    "requests_per_second",
    "output_tokens_per_second",
    "input_tokens_per_second",
    "input_tokens_total",
    "output_tokens_total",
    "reasoning_tokens_total",
    "output_tokens_mean",
    "requests_with_estimated_tokens",
    "finish_reasons",
)
"""Columns between ``name`` and the histogram columns, in order."""

ITL_WEIGHT_PER_TOKEN = 1000
"""Histogram weight of one token in the inter-token latency histogram.

An event can carry a fractional token count when usage is shared out by text length.
Histogram weights are integers, so that merges stay exact, so the weights are milli-tokens.
"""

RECENT_WINDOW_S = 10
"""Length of the sliding window behind the current rates and percentiles in ``history``."""

RECENT_RETENTION_S = 30
"""Seconds of per-second data kept for the sliding window. Older seconds are dropped."""

REPORT_VERSION = 1
"""Version of the worker report layout. The master drops reports of another version."""

FINISH_REASON_MISSING = "none"
"""Key under which successful requests without a finish reason are counted."""

_FAILURE_COUNTERS = {
    PHASE_CONNECT: "connect_failures",
    PHASE_FIRST_TOKEN: "first_token_failures",
    PHASE_COMPLETION: "completion_failures",
}


def parse_percentiles(text: str) -> list[float]:
    """Parse comma-separated percentiles such as ``"50,90,95,99"`` into sorted fractions.

    Each value must be a number above 0 and at most 100, and duplicates are dropped. Raises
    ValueError naming the bad value and the expected format.
    """
    fractions: set[float] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            percent = Fraction(part)
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"invalid percentile {part!r} in {text!r}: give comma-separated numbers "
                "above 0 and up to 100, e.g. 50,90,95,99"
            ) from None
        if not 0 < percent <= 100:
            raise ValueError(
                f"invalid percentile {part!r} in {text!r}: each must be above 0 and at most 100, e.g. 50,90,95,99"
            )
        fractions.add(float(percent / 100))
    return sorted(fractions)


def percentile_label(fraction: float) -> str:
    """Return the column suffix of a percentile: ``p50`` for 0.5, ``p99_9`` for 0.999."""
    percent = format((Decimal(repr(fraction)) * 100).normalize(), "f")
    return "p" + percent.replace(".", "_")


def column_names(percentiles: list[float]) -> list[str]:
    """Return the CSV columns (and ``rows()`` keys) for the given percentiles, in order."""
    columns = ["name", *COUNTER_COLUMNS]
    for metric in HISTOGRAM_METRICS:
        columns.append(f"{metric}_mean")
        columns.extend(f"{metric}_{percentile_label(fraction)}" for fraction in percentiles)
    return columns


@dataclass(slots=True)
class _Sample:
    """Contribution of one finished request to the statistics, derived once from its StreamResult."""

    ok: bool
    failed_phase: str | None
    start_time: float
    """Wall clock (epoch seconds) when the request was sent."""
    end_time: float
    """Wall clock when the stream ended or failed."""
    ttft_ms: float | None
    time_to_first_visible_token_ms: float | None
    e2e_latency_ms: float | None
    tpot_ms: float | None
    output_tokens_per_second: float | None
    inter_token_latencies: list[tuple[float, int]]
    """Per-token latency in ms and its weight in milli-tokens, one pair per output event after the first."""
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    tokens_estimated: bool
    finish_reason: str


def _inter_token_latencies(result: StreamResult) -> list[tuple[float, int]]:
    """Return the per-token latency before each output event after the first, with its weight.

    The gap before an event is divided by the tokens that event carried, and recorded with
    that many tokens as weight, so an event of three tokens after 30 ms adds three tokens
    of 10 ms. An event with no tokens adds nothing, and its gap is carried into the next
    event that has tokens.
    """
    times = result.output_event_times
    tokens = result.output_event_tokens
    latencies: list[tuple[float, int]] = []
    if len(times) < 2:
        return latencies

    previous = times[0]
    for index in range(1, min(len(times), len(tokens))):
        token_count = tokens[index]
        weight = round(token_count * ITL_WEIGHT_PER_TOKEN)
        if weight < 1:
            continue
        latencies.append(((times[index] - previous) * 1000.0 / token_count, weight))
        previous = times[index]
    return latencies


def _reasoning_tokens(result: StreamResult) -> int:
    """Return the reasoning tokens from usage, else the tokens of the reasoning-only events."""
    if result.reasoning_tokens is not None:
        return result.reasoning_tokens
    estimate = sum(
        tokens for tokens, reasoning in zip(result.output_event_tokens, result.output_event_reasoning) if reasoning
    )
    return round(estimate)


def _sample_from_result(result: StreamResult) -> _Sample:
    completion_ms = result.completion_ms
    end_time = result.start_time + completion_ms / 1000.0 if completion_ms is not None else result.start_time
    return _Sample(
        ok=result.ok,
        failed_phase=result.failed_phase,
        start_time=result.start_time,
        end_time=end_time,
        ttft_ms=result.ttft_ms,
        time_to_first_visible_token_ms=result.time_to_first_visible_token_ms,
        e2e_latency_ms=completion_ms if result.ok else None,
        tpot_ms=result.tpot_ms,
        output_tokens_per_second=result.output_tokens_per_second,
        inter_token_latencies=_inter_token_latencies(result),
        input_tokens=result.input_tokens or 0,
        output_tokens=result.output_tokens,
        reasoning_tokens=_reasoning_tokens(result) if result.ok else 0,
        tokens_estimated=result.tokens_estimated,
        finish_reason=result.finish_reason or FINISH_REASON_MISSING,
    )


def _new_histograms(relative_error: float) -> dict[str, LogHistogram]:
    return {metric: LogHistogram(relative_error) for metric in HISTOGRAM_METRICS}


def _min_or_none(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _max_or_none(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return max(first, second)


@dataclass
class LLMStatsEntry:
    """Counters and histograms of one request name (or of all, for the aggregated row)."""

    name: str
    relative_error: float = DEFAULT_RELATIVE_ERROR
    requests_completed: int = 0
    requests_failed: int = 0
    """Failed requests, including those counted by the phase counters below."""
    connect_failures: int = 0
    first_token_failures: int = 0
    completion_failures: int = 0
    input_tokens_total: int = 0
    """Prompt tokens of successful requests. A request without usage adds 0."""
    output_tokens_total: int = 0
    reasoning_tokens_total: int = 0
    requests_with_estimated_tokens: int = 0
    """Successful requests whose output tokens were counted from events because no usage arrived."""
    finish_reasons: dict[str, int] = field(default_factory=dict)
    first_start_time: float | None = None
    """Earliest wall-clock start of a counted request (epoch seconds)."""
    last_end_time: float | None = None
    """Latest wall-clock end of a counted request (epoch seconds)."""
    histograms: dict[str, LogHistogram] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.histograms:
            self.histograms = _new_histograms(self.relative_error)

    def add(self, sample: _Sample) -> None:
        """Count one finished request."""
        histograms = self.histograms
        if sample.ok:
            self.requests_completed += 1
            self.input_tokens_total += sample.input_tokens
            self.output_tokens_total += sample.output_tokens
            self.reasoning_tokens_total += sample.reasoning_tokens
            if sample.tokens_estimated:
                self.requests_with_estimated_tokens += 1
            self.finish_reasons[sample.finish_reason] = self.finish_reasons.get(sample.finish_reason, 0) + 1
            if sample.e2e_latency_ms is not None:
                histograms["e2e_latency_ms"].add(sample.e2e_latency_ms)
            if sample.tpot_ms is not None:
                histograms["tpot_ms"].add(sample.tpot_ms)
            if sample.output_tokens_per_second is not None:
                histograms["request_output_tokens_per_second"].add(sample.output_tokens_per_second)
        else:
            self.requests_failed += 1
            counter = _FAILURE_COUNTERS.get(sample.failed_phase or "")
            if counter is not None:
                setattr(self, counter, getattr(self, counter) + 1)

        if sample.ttft_ms is not None:
            histograms["ttft_ms"].add(sample.ttft_ms)
        if sample.time_to_first_visible_token_ms is not None:
            histograms["time_to_first_visible_token_ms"].add(sample.time_to_first_visible_token_ms)
        itl = histograms["itl_ms"]
        for latency_ms, weight in sample.inter_token_latencies:
            itl.add(latency_ms, weight)

        self.first_start_time = _min_or_none(self.first_start_time, sample.start_time)
        self.last_end_time = _max_or_none(self.last_end_time, sample.end_time)

    def merge(self, other: LLMStatsEntry) -> None:
        """Add the counts of ``other``. Raises ValueError if their histograms do not line up."""
        for metric, histogram in other.histograms.items():
            self.histograms[metric].merge(histogram)
        for counter in (
            "requests_completed",
            "requests_failed",
            "connect_failures",
            "first_token_failures",
            "completion_failures",
            "input_tokens_total",
            "output_tokens_total",
            "reasoning_tokens_total",
            "requests_with_estimated_tokens",
        ):
            setattr(self, counter, getattr(self, counter) + getattr(other, counter))
        for reason, count in other.finish_reasons.items():
            self.finish_reasons[reason] = self.finish_reasons.get(reason, 0) + count
        self.first_start_time = _min_or_none(self.first_start_time, other.first_start_time)
        self.last_end_time = _max_or_none(self.last_end_time, other.last_end_time)

    @property
    def is_empty(self) -> bool:
        """True when no request was counted."""
        return self.first_start_time is None

    def row(self, percentiles: list[float], duration_s: float | None) -> dict[str, Any]:
        """Return the row of this entry. Rates divide by ``duration_s``, the span of the whole run.

        Values are None where undefined: rates without a duration, means and percentiles
        without samples. ``finish_reasons`` is a dict here, and ``LLMStats.rows`` turns it into text.
        """

        def per_second(total: int) -> float | None:
            return total / duration_s if duration_s else None

        row: dict[str, Any] = {
            "name": self.name,
            "requests_completed": self.requests_completed,
            "requests_failed": self.requests_failed,
            "connect_failures": self.connect_failures,
            "first_token_failures": self.first_token_failures,
            "completion_failures": self.completion_failures,
            "requests_per_second": per_second(self.requests_completed),
            "output_tokens_per_second": per_second(self.output_tokens_total),
            "input_tokens_per_second": per_second(self.input_tokens_total),
            "input_tokens_total": self.input_tokens_total,
            "output_tokens_total": self.output_tokens_total,
            "reasoning_tokens_total": self.reasoning_tokens_total,
            "output_tokens_mean": (
                self.output_tokens_total / self.requests_completed if self.requests_completed else None
            ),
            "requests_with_estimated_tokens": self.requests_with_estimated_tokens,
            "finish_reasons": dict(sorted(self.finish_reasons.items())),
        }
        labels = [percentile_label(fraction) for fraction in percentiles]
        for metric in HISTOGRAM_METRICS:
            histogram = self.histograms[metric]
            row[f"{metric}_mean"] = histogram.mean
            for label, value in zip(labels, histogram.quantiles(percentiles)):
                row[f"{metric}_{label}"] = value
        return row

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for Locust's worker messages (string keys, lists, numbers)."""
        return {
            "name": self.name,
            "requests_completed": self.requests_completed,
            "requests_failed": self.requests_failed,
            "connect_failures": self.connect_failures,
            "first_token_failures": self.first_token_failures,
            "completion_failures": self.completion_failures,
            "input_tokens_total": self.input_tokens_total,
            "output_tokens_total": self.output_tokens_total,
            "reasoning_tokens_total": self.reasoning_tokens_total,
            "requests_with_estimated_tokens": self.requests_with_estimated_tokens,
            "finish_reasons": dict(self.finish_reasons),
            "first_start_time": self.first_start_time,
            "last_end_time": self.last_end_time,
            "histograms": {metric: histogram.to_dict() for metric, histogram in self.histograms.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMStatsEntry:
        """Rebuild an entry from ``to_dict`` output."""
        histograms = {metric: LogHistogram.from_dict(data["histograms"][metric]) for metric in HISTOGRAM_METRICS}
        return cls(
            name=str(data["name"]),
            relative_error=histograms["ttft_ms"].relative_error,
            requests_completed=int(data["requests_completed"]),
            requests_failed=int(data["requests_failed"]),
            connect_failures=int(data["connect_failures"]),
            first_token_failures=int(data["first_token_failures"]),
            completion_failures=int(data["completion_failures"]),
            input_tokens_total=int(data["input_tokens_total"]),
            output_tokens_total=int(data["output_tokens_total"]),
            reasoning_tokens_total=int(data["reasoning_tokens_total"]),
            requests_with_estimated_tokens=int(data["requests_with_estimated_tokens"]),
            finish_reasons={str(reason): int(count) for reason, count in data["finish_reasons"].items()},
            first_start_time=data["first_start_time"],
            last_end_time=data["last_end_time"],
            histograms=histograms,
        )


@dataclass
class _RecentSecond:
    """Contribution to the sliding window of the requests that ended in one wall-clock second."""

    second: int
    relative_error: float
    requests_completed: int = 0
    output_tokens: int = 0
    input_tokens: int = 0
    ttft_ms: LogHistogram = field(init=False)
    itl_ms: LogHistogram = field(init=False)

    def __post_init__(self) -> None:
        self.ttft_ms = LogHistogram(self.relative_error)
        self.itl_ms = LogHistogram(self.relative_error)

    def add(self, sample: _Sample) -> None:
        if sample.ok:
            self.requests_completed += 1
            self.output_tokens += sample.output_tokens
            self.input_tokens += sample.input_tokens
        if sample.ttft_ms is not None:
            self.ttft_ms.add(sample.ttft_ms)
        for latency_ms, weight in sample.inter_token_latencies:
            self.itl_ms.add(latency_ms, weight)

    def merge(self, other: _RecentSecond) -> None:
        self.requests_completed += other.requests_completed
        self.output_tokens += other.output_tokens
        self.input_tokens += other.input_tokens
        self.ttft_ms.merge(other.ttft_ms)
        self.itl_ms.merge(other.itl_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "requests_completed": self.requests_completed,
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "ttft_ms": self.ttft_ms.to_dict(),
            "itl_ms": self.itl_ms.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _RecentSecond:
        ttft = LogHistogram.from_dict(data["ttft_ms"])
        recent = cls(second=int(data["second"]), relative_error=ttft.relative_error)
        recent.requests_completed = int(data["requests_completed"])
        recent.output_tokens = int(data["output_tokens"])
        recent.input_tokens = int(data["input_tokens"])
        recent.ttft_ms = ttft
        recent.itl_ms = LogHistogram.from_dict(data["itl_ms"])
        return recent


class LLMStats:
    """Token-level statistics of one Locust process, or of a master merging its workers.

    Get the instance of an environment with ``locust_llm_sse.metrics.get_llm_stats``, which
    also feeds ``record`` from the ``llm_request`` event.
    """

    def __init__(
        self,
        percentiles: list[float] | None = None,
        relative_error: float = DEFAULT_RELATIVE_ERROR,
    ) -> None:
        self.relative_error = relative_error
        self.percentiles: list[float] = list(DEFAULT_PERCENTILES if percentiles is None else percentiles)
        """Percentiles reported in rows, as fractions (0.95 for p95), sorted."""
        self.entries: dict[str, LLMStatsEntry] = {}
        """One entry per request name."""
        self.history: list[dict[str, Any]] = []
        """Points appended by ``append_history``, about once per second while a test runs.

        Each is ``{"time", "requests_per_second", "output_tokens_per_second", "ttft_ms_p50",
        "ttft_ms_p95", "itl_ms_p50", "itl_ms_p95"}``: epoch seconds, then rates and
        percentiles over the last ``RECENT_WINDOW_S`` whole seconds. A percentile is None
        when no sample fell in the window. The list grows by one point per second of test
        until a reset, as Locust's own history does.
        """
        self._recent: dict[int, _RecentSecond] = {}

    # -- Recording -------------------------------------------------------------------------

    def record(self, result: StreamResult) -> None:
        """Count one finished request. A request with ``stopped`` set is skipped."""
        if result.stopped:
            return
        sample = _sample_from_result(result)

        entry = self.entries.get(result.name)
        if entry is None:
            entry = self.entries[result.name] = LLMStatsEntry(result.name, self.relative_error)
        entry.add(sample)

        second = int(sample.end_time)
        recent = self._recent.get(second)
        if recent is None:
            recent = self._recent[second] = _RecentSecond(second, self.relative_error)
            self._drop_old_seconds(second - RECENT_RETENTION_S)
        recent.add(sample)

    def _drop_old_seconds(self, oldest_kept: int) -> None:
        for second in [second for second in self._recent if second < oldest_kept]:
            del self._recent[second]

    def reset(self) -> None:
        """Forget every count and the history, as Locust's "Reset stats" does for its own statistics."""
        self.entries = {}
        self._recent = {}
        self.history = []

    # -- Reading ---------------------------------------------------------------------------

    def aggregated(self) -> LLMStatsEntry:
        """Return a new entry named "Aggregated" that merges all request names."""
        total = LLMStatsEntry(AGGREGATED_NAME, self.relative_error)
        for entry in self.entries.values():
            total.merge(entry)
        return total

    def first_start_time(self) -> float | None:
        """Wall clock (epoch seconds) of the earliest counted request start, or None."""
        starts = [entry.first_start_time for entry in self.entries.values() if entry.first_start_time is not None]
        return min(starts) if starts else None

    def last_end_time(self) -> float | None:
        """Wall clock (epoch seconds) of the latest counted request end, or None."""
        ends = [entry.last_end_time for entry in self.entries.values() if entry.last_end_time is not None]
        return max(ends) if ends else None

    def duration_s(self) -> float | None:
        """Seconds from the earliest request start to the latest request end, or None."""
        start = self.first_start_time()
        end = self.last_end_time()
        if start is None or end is None:
            return None
        return end - start

    def columns(self) -> list[str]:
        """Return the keys of ``rows()``, which are also the CSV columns."""
        return column_names(self.percentiles)

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per request name, sorted by name, then the "Aggregated" row.

        Keys are the CSV columns, ``name`` first. ``finish_reasons`` is text such as
        ``"length=3 stop=12"``. Rates are totals divided by the span from the earliest
        request start to the latest request end, the same span for every row.
        """
        rows = self.rows_with_finish_reason_counts()
        for row in rows:
            row["finish_reasons"] = " ".join(f"{reason}={count}" for reason, count in row["finish_reasons"].items())
        return rows

    def rows_with_finish_reason_counts(self) -> list[dict[str, Any]]:
        """Return ``rows()`` with ``finish_reasons`` as a dict from reason to count."""
        duration_s = self.duration_s()
        rows = [self.entries[name].row(self.percentiles, duration_s) for name in sorted(self.entries)]
        rows.append(self.aggregated().row(self.percentiles, duration_s))
        return rows

    def current(self, now: float | None = None, delay_s: int = 0) -> dict[str, Any]:
        """Return the rates and percentiles of the requests that ended in the last whole seconds.

        The window covers the ``RECENT_WINDOW_S`` whole seconds before ``now`` minus
        ``delay_s``, and starts no earlier than the second of the first request. A master
        passes a delay of the worker report interval, so that the seconds it reads are
        complete. The current, partial second is never included.
        """
        now = time.time() if now is None else now
        end = int(now) - delay_s
        start = end - RECENT_WINDOW_S
        total_start = self.first_start_time()
        if total_start is not None:
            start = max(start, int(total_start))
        seconds = end - start

        window = _RecentSecond(start, self.relative_error)
        for second, recent in self._recent.items():
            if start <= second < end:
                window.merge(recent)

        def per_second(total: int) -> float:
            return total / seconds if seconds > 0 else 0.0

        ttft_p50, ttft_p95 = window.ttft_ms.quantiles([0.5, 0.95])
        itl_p50, itl_p95 = window.itl_ms.quantiles([0.5, 0.95])
        return {
            "time": now,
            "requests_per_second": per_second(window.requests_completed),
            "output_tokens_per_second": per_second(window.output_tokens),
            "input_tokens_per_second": per_second(window.input_tokens),
            "ttft_ms_p50": ttft_p50,
            "ttft_ms_p95": ttft_p95,
            "itl_ms_p50": itl_p50,
            "itl_ms_p95": itl_p95,
        }

    def append_history(self, now: float | None = None, delay_s: int = 0) -> dict[str, Any]:
        """Append ``current(now, delay_s)`` to ``history`` and return it."""
        point = self.current(now, delay_s)
        self.history.append(point)
        self._drop_old_seconds(int(point["time"]) - RECENT_RETENTION_S)
        return point

    # -- Distributed runs ------------------------------------------------------------------

    def take_report(self) -> dict[str, Any] | None:
        """Return everything counted since the last report as plain data, and forget it.

        A worker calls this for each report to the master, as Locust's workers do with
        their own statistics. Returns None when nothing was counted. The history is kept.
        """
        if not self.entries and not self._recent:
            return None
        report = {
            "version": REPORT_VERSION,
            "relative_error": self.relative_error,
            "entries": [entry.to_dict() for entry in self.entries.values()],
            "recent": [recent.to_dict() for recent in self._recent.values()],
        }
        self.entries = {}
        self._recent = {}
        return report

    def merge_report(self, report: dict[str, Any]) -> None:
        """Add a worker's ``take_report`` data.

        Raises ValueError for a report of another layout version or relative error, and
        then adds nothing of that report.
        """
        version = report.get("version")
        if version != REPORT_VERSION:
            raise ValueError(
                f"unsupported LLM metrics report version {version!r} (expected {REPORT_VERSION}): "
                "run the same locust-llm-sse version on the master and the workers"
            )
        if report.get("relative_error") != self.relative_error:
            raise ValueError(
                f"LLM metrics report has histogram relative error {report.get('relative_error')!r}, "
                f"but this process uses {self.relative_error!r}: run the same locust-llm-sse "
                "version on the master and the workers"
            )
        entries = [LLMStatsEntry.from_dict(data) for data in report["entries"]]
        recent_seconds = [_RecentSecond.from_dict(data) for data in report["recent"]]

        for incoming in entries:
            entry = self.entries.get(incoming.name)
            if entry is None:
                self.entries[incoming.name] = incoming
            else:
                entry.merge(incoming)

        oldest_kept = int(time.time()) - RECENT_RETENTION_S
        for incoming_second in recent_seconds:
            if incoming_second.second < oldest_kept:
                continue
            recent = self._recent.get(incoming_second.second)
            if recent is None:
                self._recent[incoming_second.second] = incoming_second
            else:
                recent.merge(incoming_second)

