"""CSV, JSON and console output of ``LLMStats``."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from typing import Any

from locust_llm_sse.metrics._histogram import MIN_TRACKED_VALUE
from locust_llm_sse.metrics._stats import LLMStats, percentile_label

MISSING_CSV_VALUE = "N/A"
"""CSV cell of an undefined value, as in Locust's own CSV files."""

JSON_FORMAT_VERSION = 1

SUMMARY_WIDTH = 60
_LABEL_WIDTH = 45

_SUMMARY_METRICS = (
    # (metric, section header, short name, unit)
    ("ttft_ms", "Time to first token", "TTFT", "ms"),
    ("time_to_first_visible_token_ms", "Time to first visible token", "first visible token", "ms"),
    ("tpot_ms", "Time per output token, first token excluded", "TPOT", "ms"),
    ("itl_ms", "Inter-token latency, per token", "ITL", "ms"),
    ("e2e_latency_ms", "End-to-end latency", "E2E latency", "ms"),
    ("request_output_tokens_per_second", "Output token rate of one request", "tokens/s per request", "tok/s"),
)


def stats_csv_path(prefix: str) -> str:
    """Return the path of the statistics CSV for Locust's ``--csv`` prefix."""
    return f"{prefix}_llm_stats.csv"


def history_csv_path(prefix: str) -> str:
    """Return the path of the history CSV for Locust's ``--csv`` prefix."""
    return f"{prefix}_llm_stats_history.csv"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return MISSING_CSV_VALUE
    if isinstance(value, float):
        # Three decimals keep microseconds of a millisecond value.
        return f"{value:.3f}"
    return value


def _make_parent_directory(path: str) -> None:
    if directory := os.path.dirname(path):
        os.makedirs(directory, exist_ok=True)


def write_stats_csv(stats: LLMStats, path: str) -> None:
    """Write the header and all rows of ``stats`` to ``path``, replacing the file at once.

    The rows go to a temporary file in the same directory that is then renamed, so a
    reader never sees a half-written file.
    """
    _make_parent_directory(path)
    columns = stats.columns()
    rows = stats.rows()
    directory = os.path.dirname(path) or "."
    descriptor, temporary_path = tempfile.mkstemp(prefix=".llm_stats_", suffix=".csv", dir=directory)
    try:
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row[column]) for column in columns])
        os.replace(temporary_path, path)
    except BaseException:
        os.unlink(temporary_path)
        raise


def append_history_csv(stats: LLMStats, path: str, timestamp: int) -> None:
    """Append the current rows of ``stats`` to ``path``, each prefixed by ``timestamp`` (epoch seconds).

    The header is written when the file is new or empty. Its columns follow the
    percentiles of the first write.
    """
    # NOTE: if the percentiles change during a run (in the web UI), later rows have other
    # columns than the header.
    _make_parent_directory(path)
    columns = stats.columns()
    with open(path, "a", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        if file.tell() == 0:
            writer.writerow(["timestamp", *columns])
        for row in stats.rows():
            writer.writerow([timestamp, *(_csv_cell(row[column]) for column in columns)])


def build_json(stats: LLMStats) -> dict[str, Any]:
    """Return the final numbers as a JSON-ready dict.

    ``per_name`` contains the rows of the request names and ``aggregated`` the row of all.
    Their keys are the CSV columns, except that ``finish_reasons`` maps each reason to a
    count. Undefined values are null.
    """
    rows = stats.rows_with_finish_reason_counts()
    return {
        "format_version": JSON_FORMAT_VERSION,
        "percentiles": list(stats.percentiles),
        "histogram_relative_error": stats.relative_error,
        "histogram_min_tracked_value": MIN_TRACKED_VALUE,
        "start_time": stats.first_start_time(),
        "end_time": stats.last_end_time(),
        "duration_s": stats.duration_s(),
        "per_name": rows[:-1],
        "aggregated": rows[-1],
    }


def write_json(stats: LLMStats, path: str) -> None:
    """Write ``build_json(stats)`` to ``path``, creating its directory."""
    _make_parent_directory(path)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(build_json(stats), file, indent=2, allow_nan=False)
        file.write("\n")


def _line(label: str, value: Any, decimals: int = 2) -> str:
    if value is None:
        text = MISSING_CSV_VALUE
    elif isinstance(value, float):
        text = f"{value:.{decimals}f}"
    else:
        text = str(value)
    return f"{label:<{_LABEL_WIDTH}} {text}"


def _header(title: str, fill: str) -> str:
    return f" {title} ".center(SUMMARY_WIDTH, fill)


def summary_lines(stats: LLMStats) -> list[str]:
    """Return the end-of-run summary as text lines, or an empty list when nothing was counted.

    The aggregated numbers come as a block of "label: value" lines per metric, like the
    summary of LLM serving benchmarks. With more than one request name, a table with one
    line per name follows.
    """
    if not stats.entries:
        return []
    rows = stats.rows_with_finish_reason_counts()
    total = rows[-1]
    labels = [percentile_label(fraction) for fraction in stats.percentiles]

    lines = [_header("LLM summary", "=")]
    lines.append(_line("Successful requests:", total["requests_completed"]))
    lines.append(_line("Failed requests:", total["requests_failed"]))
    lines.append(
        _line(
            "  connect / first token / completion:",
            f"{total['connect_failures']} / {total['first_token_failures']} / {total['completion_failures']}",
        )
    )
    lines.append(_line("Duration, first start to last end (s):", stats.duration_s()))
    lines.append(_line("Total input tokens:", total["input_tokens_total"]))
    lines.append(_line("Total output tokens:", total["output_tokens_total"]))
    lines.append(_line("Total reasoning tokens:", total["reasoning_tokens_total"]))
    lines.append(_line("Requests with estimated token counts:", total["requests_with_estimated_tokens"]))
    finish_reasons = " ".join(f"{reason}={count}" for reason, count in total["finish_reasons"].items())
    lines.append(_line("Finish reasons:", finish_reasons or MISSING_CSV_VALUE))
    lines.append(_line("Request throughput (req/s):", total["requests_per_second"]))
    lines.append(_line("Output token throughput (tok/s):", total["output_tokens_per_second"]))
    lines.append(_line("Input token throughput (tok/s):", total["input_tokens_per_second"]))

    for metric, title, short_name, unit in _SUMMARY_METRICS:
        lines.append(_header(title, "-"))
        lines.append(_line(f"Mean {short_name} ({unit}):", total[f"{metric}_mean"], decimals=3))
        for label in labels:
            display = label.replace("_", ".").upper()
            lines.append(_line(f"{display} {short_name} ({unit}):", total[f"{metric}_{label}"], decimals=3))
    lines.append("=" * SUMMARY_WIDTH)

    if len(rows) > 2:
        lines.extend(_per_name_table(rows, labels[-1] if labels else None))
    return lines


def _per_name_table(rows: list[dict[str, Any]], label: str | None) -> list[str]:
    columns: list[tuple[str, str]] = [("requests_completed", "reqs"), ("requests_failed", "fails")]
    for metric, short in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("tpot_ms", "TPOT"), ("e2e_latency_ms", "E2E")):
        columns.append((f"{metric}_mean", f"{short} avg"))
        if label is not None:
            columns.append((f"{metric}_{label}", f"{short} {label}"))
    columns.append(("output_tokens_per_second", "out tok/s"))

    name_width = max(len("Name"), *(len(row["name"]) for row in rows))
    header = f"{'Name':<{name_width}} " + " ".join(f"{title:>11}" for _, title in columns)
    lines = ["", "LLM statistics per request name (times in ms)", header, "-" * len(header)]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            if value is None:
                cells.append(f"{MISSING_CSV_VALUE:>11}")
            elif isinstance(value, float):
                cells.append(f"{value:>11.2f}")
            else:
                cells.append(f"{value:>11}")
        lines.append(f"{row['name']:<{name_width}} " + " ".join(cells))
    return lines
