"""Measure the CPU cost of the token-level metrics per streamed event, with metrics on and off.

Two measurements in one run:

1. Listener alone: ``LLMStats.record`` on synthetic StreamResults (events of 1, 1 and 3
   tokens, the first two reasoning), in microseconds per output event.
2. Real streams: requests through ``LLMClient`` against the mock server (started here on
   127.0.0.1, TTFT and ITL 0 ms), one after another in one greenlet. Rounds alternate
   between the metrics' ``llm_request`` listener attached (on) and not attached (off).
   The script reports the median CPU time of this process per output event of each
   setting. The mock runs in its own process, so its CPU time is not counted.

    python benchmarks/metrics_overhead.py
    python benchmarks/metrics_overhead.py --requests 100 --tokens 512 --rounds 5

Every loop is bounded by the request and round counts, and each request by the client's
timeouts.
"""

from __future__ import annotations

import locust  # noqa: F401 - gevent must patch the socket module before requests loads

import argparse
import os
import platform
import statistics
import time

from locust.env import Environment
from locust.event import Events

from locust_llm_sse._client import LLMClient
from locust_llm_sse._result import StreamResult
from locust_llm_sse.metrics import LLMStats, get_llm_stats
from locust_llm_sse.mock._process import MockServerProcess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _synthetic_result(index: int, events: int) -> StreamResult:
    sent = 1000.0 + index
    times = [sent + 0.1 + 0.01 * event for event in range(events)]
    tokens = [3.0 if event % 3 == 2 else 1.0 for event in range(events)]
    return StreamResult(
        name=f"request-{index % 4}",
        url="http://127.0.0.1/v1/chat/completions",
        start_time=1_700_000_000.0 + index,
        request_sent_at=sent,
        headers_received_at=sent + 0.01,
        first_token_at=times[0],
        first_visible_token_at=times[2] if events > 2 else times[0],
        last_token_at=times[-1],
        end_at=times[-1] + 0.001,
        input_tokens=100,
        output_tokens=round(sum(tokens)),
        reasoning_tokens=2,
        tokens_estimated=False,
        finish_reason="stop",
        output_event_times=times,
        output_event_tokens=tokens,
        output_event_reasoning=[event < 2 for event in range(events)],
        ok=True,
    )


def measure_listener(requests: int, events: int) -> float:
    """Return the microseconds of ``LLMStats.record`` per output event."""
    results = [_synthetic_result(index, events) for index in range(requests)]
    stats = LLMStats()
    started = time.process_time()
    for result in results:
        stats.record(result)
    elapsed = time.process_time() - started
    return elapsed * 1e6 / (requests * events)


def _stream_round(base_url: str, requests: int, tokens: int, metrics_on: bool) -> tuple[float, int]:
    """Stream ``requests`` requests and return the CPU seconds and the output events."""
    environment = Environment(events=Events())
    environment.create_local_runner()
    if metrics_on:
        get_llm_stats(environment)
    client = LLMClient(base_url, environment=environment, user=None)
    events = 0
    started = time.process_time()
    for _ in range(requests):
        result = client.chat("benchmark", max_tokens=tokens, name="chat")
        if not result.ok:
            raise RuntimeError(f"benchmark request failed: {result.error_kind}: {result.error}")
        events += len(result.output_event_times)
    elapsed = time.process_time() - started
    environment.runner.quit()
    return elapsed, events


def measure_streams(requests: int, tokens: int, rounds: int) -> tuple[float, float]:
    """Return the median CPU microseconds per output event with metrics off and on."""
    off: list[float] = []
    on: list[float] = []
    mock_args = ("--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", str(tokens), "--log-level", "warning")
    with MockServerProcess(*mock_args) as mock:
        # One unmeasured round opens the connection and warms up both code paths.
        _stream_round(mock.base_url, 5, tokens, metrics_on=True)
        for _ in range(rounds):
            for metrics_on, samples in ((False, off), (True, on)):
                elapsed, events = _stream_round(mock.base_url, requests, tokens, metrics_on)
                samples.append(elapsed * 1e6 / events)
    return statistics.median(off), statistics.median(on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="Requests per round of streams (default: 50)")
    parser.add_argument("--tokens", type=int, default=256, help="Output tokens per request (default: 256)")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per setting, alternating (default: 5)")
    parser.add_argument(
        "--synthetic-requests", type=int, default=20_000, help="Synthetic results for the listener (default: 20000)"
    )
    arguments = parser.parse_args()
    for option in ("requests", "tokens", "rounds", "synthetic_requests"):
        if getattr(arguments, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")

    print(f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"Python {platform.python_version()}, Locust {locust.__version__}")

    listener_us = measure_listener(arguments.synthetic_requests, 64)
    print(f"LLMStats.record alone: {listener_us:.3f} us per output event (64 events per request)")

    off_us, on_us = measure_streams(arguments.requests, arguments.tokens, arguments.rounds)
    print(
        f"Streams from the mock ({arguments.rounds} rounds x {arguments.requests} requests x "
        f"{arguments.tokens} tokens, CPU of the client process, median of rounds):"
    )
    print(f"  metrics off: {off_us:.2f} us per output event")
    print(f"  metrics on:  {on_us:.2f} us per output event")
    print(f"  difference:  {on_us - off_us:.2f} us per output event, ratio on/off {on_us / off_us:.3f}")


if __name__ == "__main__":
    main()
