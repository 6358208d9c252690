"""Compare each request of a Locust run with llama.cpp's own timings of the same request.

Load it next to locustfiles/chat.py, with one user, against a server started with
``python -m locust_llm_sse.llama --log-file PATH``::

    locust -f locustfiles/chat.py,tests/locustfiles/llama_compare.py --host URL \\
        --headless -u 1 -r 1 -t 30s --max-tokens 32 --llama-log PATH [--compare-json OUT]

When Locust quits, the successful requests are paired in order with the timing blocks
that the server logged after the test started, and the medians of both are printed.
The pairing assumes that requests do not overlap, so it needs ``-u 1``. The file also
loads ``locust_llm_sse.metrics`` for the LLM statistics and ``--llm-json``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from typing import Any

from locust import events

import locust_llm_sse.metrics  # noqa: F401 - adds the LLM statistics, their summary and --llm-json
from locust_llm_sse import StreamResult, llm_request_hook
from locust_llm_sse.llama import LlamaTimings, parse_timings

logger = logging.getLogger(__name__)

_results: list[StreamResult] = []
_log_offset = 0


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--llama-log",
        default="",
        help="Log file of the llama.cpp server, from python -m locust_llm_sse.llama --log-file PATH",
    )
    parser.add_argument("--compare-json", default="", help="File to write the per-request comparison to, as JSON")


@events.init.add_listener
def record_results(environment: Any, **_kwargs: Any) -> None:
    def keep(result: StreamResult, **_kwargs: Any) -> None:
        if result.ok:
            _results.append(result)

    llm_request_hook(environment.events).add_listener(keep)


@events.test_start.add_listener
def remember_log_size(environment: Any, **_kwargs: Any) -> None:
    global _log_offset
    path = environment.parsed_options.llama_log
    _log_offset = os.path.getsize(path) if path else 0


@events.quitting.add_listener
def compare(environment: Any, **_kwargs: Any) -> None:
    path = environment.parsed_options.llama_log
    if not path:
        logger.error("Missing --llama-log: pass the log file of python -m locust_llm_sse.llama --log-file PATH")
        return
    with open(path, "rb") as log:
        log.seek(_log_offset)
        timings = parse_timings(log.read().decode("utf-8", errors="replace"))
    pairs = _pair(_results, timings)
    if not pairs:
        logger.error("Nothing to compare: %d successful requests, %d timing blocks in %s", len(_results), len(timings), path)
        return
    rows = [_row(result, timing) for result, timing in pairs]
    medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    print(_format_table(medians, len(rows)), flush=True)
    if environment.parsed_options.compare_json:
        with open(environment.parsed_options.compare_json, "w", encoding="utf-8") as file:
            json.dump({"requests": rows, "medians": medians}, file, indent=2)


def _pair(results: list[StreamResult], timings: list[LlamaTimings]) -> list[tuple[StreamResult, LlamaTimings]]:
    """Pair requests and timing blocks in order.

    A stream that Locust stopped at the end of the run is not in ``results``, but the
    server may have finished it and logged its block, which is then the last one.
    """
    if len(timings) == len(results) + 1:
        timings = timings[:-1]
    if len(timings) != len(results):
        logger.warning(
            "%d successful requests but %d timing blocks. The pairing expects one block per request, "
            "which needs -u 1 and no failures. Pairing the first %d in order.",
            len(results), len(timings), min(len(results), len(timings)),
        )
    return list(zip(results, timings))


def _row(result: StreamResult, timing: LlamaTimings) -> dict[str, float]:
    assert result.ttft_ms is not None and result.completion_ms is not None
    decode_ms = result.completion_ms - result.ttft_ms
    return {
        "ttft_ms": result.ttft_ms,
        "decode_ms": decode_ms,
        "completion_ms": result.completion_ms,
        "output_tokens": result.output_tokens,
        "output_tokens_per_second": result.output_tokens * 1000.0 / result.completion_ms,
        "decode_tokens_per_second": (result.output_tokens - 1) * 1000.0 / decode_ms if decode_ms > 0 else 0.0,
        "llama_prompt_eval_ms": timing.prompt_eval_ms,
        "llama_prompt_eval_tokens": timing.prompt_eval_tokens,
        "llama_eval_ms": timing.eval_ms,
        "llama_eval_runs": timing.eval_runs,
        "llama_total_ms": timing.total_ms,
        "llama_eval_tokens_per_second": timing.eval_tokens_per_second or 0.0,
    }


def _format_table(medians: dict[str, float], count: int) -> str:
    lines = [
        f"Medians of {count} requests    client (Locust)   llama.cpp log",
        f"first token / prompt eval   {medians['ttft_ms']:10.1f} ms   {medians['llama_prompt_eval_ms']:10.1f} ms",
        f"decode / eval               {medians['decode_ms']:10.1f} ms   {medians['llama_eval_ms']:10.1f} ms",
        f"completion / total          {medians['completion_ms']:10.1f} ms   {medians['llama_total_ms']:10.1f} ms",
        f"output tokens / eval runs   {medians['output_tokens']:10.1f}      {medians['llama_eval_runs']:10.1f}",
        f"decode tokens/s             {medians['decode_tokens_per_second']:10.1f}      "
        f"{medians['llama_eval_tokens_per_second']:10.1f}",
        f"output tokens/s (end to end){medians['output_tokens_per_second']:10.1f}",
    ]
    return "\n".join(lines)
