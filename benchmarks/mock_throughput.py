"""Measure how many streamed events per second the mock server sends from one core.

The server runs pinned to one CPU and a load client runs pinned to another, in its
own process, with many concurrent keep-alive streams. The script reports SSE events
received per second and the server's CPU time per event, read from /proc/PID/stat.
Events are all SSE events: per response, the role prelude, one event per token, the
finish chunk, the usage chunk and ``[DONE]``. The run is bounded in time and in
requests per stream, and stops by itself.

    python benchmarks/mock_throughput.py                   # 400 streams, ITL 10 ms
    python benchmarks/mock_throughput.py --itl-ms 0        # as fast as possible

Linux only (sched_setaffinity and /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

_CLIENT_FLAG = "--run-client"
_MAX_REQUESTS_PER_STREAM = 100_000
_DRAIN_TIMEOUT_S = 5.0


# Load client, run in a child process pinned to its own CPU. It needs only the
# standard library.


@dataclass
class _ClientRun:
    """Counters shared by all connections, and the time after which no request starts."""

    stop_at: float = float("inf")
    events: int = 0
    responses: int = 0
    errors: list[str] = field(default_factory=list)


class _StreamClient(asyncio.Protocol):
    """One keep-alive connection that sends the next request when a response ends.

    It counts SSE events by their closing blank line (``\\n\\n``), which never occurs
    in the HTTP head or the chunk framing, and detects the end of a response by the
    zero-length last chunk.
    """

    def __init__(self, request: bytes, run: _ClientRun, finished: asyncio.Future[None]) -> None:
        self._request = request
        self._run = run
        self._finished = finished
        self._transport: asyncio.Transport | None = None
        self._previous = b""
        self._requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self) -> None:
        """Send the next request on this connection."""
        assert self._transport is not None
        self._requests += 1
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        window = self._previous + data
        # The last byte of the previous read joins this one, so a blank line split
        # across two reads counts once.
        self._run.events += window.count(b"\n\n") - self._previous.count(b"\n\n")
        self._previous = window[-7:]
        if not self._previous.endswith(b"\r\n0\r\n\r\n"):
            return
        self._run.responses += 1
        self._previous = b""
        if time.perf_counter() < self._run.stop_at and self._requests < _MAX_REQUESTS_PER_STREAM:
            self.send()
        else:
            assert self._transport is not None
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._run.errors.append(repr(exc))
        if not self._finished.done():
            self._finished.set_result(None)


async def _run_client(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host, port = args.run_client.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(
        {
            "model": "mock-llm",
            "messages": [{"role": "user", "content": "benchmark"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    # Open every connection before the first request, so that the warm-up and the
    # window do not include connection setup under a growing load.
    run = _ClientRun()
    clients: list[_StreamClient] = []
    finished: list[asyncio.Future[None]] = []
    for _ in range(args.streams):
        future: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(lambda f=future: _StreamClient(request, run, f), host, int(port))
        clients.append(client)
        finished.append(future)

    start = time.perf_counter()
    run.stop_at = start + args.warmup_s + args.duration_s
    for client in clients:
        client.send()

    await asyncio.sleep(args.warmup_s)
    events_before, responses_before, cpu_before = run.events, run.responses, _own_cpu_s()
    window_start = time.perf_counter()
    print("window-start", flush=True)

    await asyncio.sleep(max(0.0, run.stop_at - time.perf_counter()))
    window_s = time.perf_counter() - window_start
    result = {
        "window_s": window_s,
        "events": run.events - events_before,
        "responses": run.responses - responses_before,
        "client_cpu_s": _own_cpu_s() - cpu_before,
    }
    print("window-end " + json.dumps(result), flush=True)

    # Let streams in progress end, so the server is not left writing to closed sockets.
    await asyncio.wait(finished, timeout=_DRAIN_TIMEOUT_S)
    result["errors"] = run.errors[:5]
    result["error_count"] = len(run.errors)
    print("done " + json.dumps(result), flush=True)


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


# Orchestrator


def _process_cpu_s(pid: int) -> float:
    """Return user plus system CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name in field 2 may contain spaces, so split after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _runqueue_wait_s(pid: int) -> float:
    """Return the seconds a process spent runnable but waiting for a CPU, from /proc/PID/schedstat.

    A large share means other processes competed for the server's CPU, so the events
    per second understate what the server can do. Returns 0 where schedstat is missing.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read_line(stream, prefix: str, deadline: float) -> str:
    line = stream.readline().decode()
    if not line.startswith(prefix) or time.perf_counter() > deadline:
        raise RuntimeError(f"The load client printed {line!r}, expected a line starting with {prefix!r}.")
    return line[len(prefix):].strip()


def _run_benchmark(args: argparse.Namespace) -> dict[str, object]:
    from locust_llm_sse.mock import MockServerProcess

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("This benchmark needs two CPUs: one for the server and one for the load client.")
    server_cpu, client_cpu = args.server_cpu, args.client_cpu
    if server_cpu not in cpus or client_cpu not in cpus or server_cpu == client_cpu:
        raise SystemExit(f"--server-cpu and --client-cpu must be two different CPUs out of {cpus}.")

    server_args = [
        "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms),
        "--output-tokens", str(args.output_tokens), "--tokens-per-event", "1", "--timer", args.timer,
        "--log-level", "warning",
    ]
    original_affinity = os.sched_getaffinity(0)
    # Children inherit the CPU affinity of this process when they start.
    os.sched_setaffinity(0, {server_cpu})
    server = MockServerProcess(*server_args)
    try:
        url = server.start()
        os.sched_setaffinity(0, {client_cpu})
        client_command = [
            sys.executable, os.path.abspath(__file__), _CLIENT_FLAG, url,
            "--streams", str(args.streams), "--duration-s", str(args.duration_s), "--warmup-s", str(args.warmup_s),
        ]
        client = subprocess.Popen(client_command, stdout=subprocess.PIPE)
        os.sched_setaffinity(0, original_affinity)
        try:
            deadline = time.perf_counter() + args.warmup_s + args.duration_s + 30
            _read_line(client.stdout, "window-start", deadline)
            server_cpu_before = _process_cpu_s(server.pid)
            server_wait_before = _runqueue_wait_s(server.pid)
            window = json.loads(_read_line(client.stdout, "window-end", deadline))
            server_cpu_s = _process_cpu_s(server.pid) - server_cpu_before
            server_wait_s = _runqueue_wait_s(server.pid) - server_wait_before
            load_average = _load_average()
            done = json.loads(_read_line(client.stdout, "done", deadline + _DRAIN_TIMEOUT_S))
            client.wait(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        os.sched_setaffinity(0, original_affinity)
        server.stop()

    events = window["events"]
    window_s = window["window_s"]
    return {
        "machine": {
            "nproc": os.cpu_count(), "cpu_model": _cpu_model(), "python": platform.python_version(),
            "load_average_at_end": load_average,
        },
        "settings": {
            "streams": args.streams, "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms,
            "output_tokens": args.output_tokens, "duration_s": args.duration_s, "timer": args.timer,
        },
        "window_s": round(window_s, 3),
        "events": events,
        "responses": window["responses"],
        "events_per_s": round(events / window_s),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_share": round(server_cpu_s / window_s, 3),
        "server_cpu_us_per_event": round(server_cpu_s / events * 1e6, 2) if events else None,
        "server_runqueue_wait_share": round(server_wait_s / window_s, 3),
        "client_cpu_share": round(window["client_cpu_s"] / window_s, 3),
        "client_errors": done["error_count"],
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(_CLIENT_FLAG, metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=400, help="Concurrent keep-alive streams (default: %(default)s).")
    parser.add_argument("--itl-ms", type=float, default=10.0, help="Server --itl-ms (default: %(default)s).")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="Server --ttft-ms (default: %(default)s).")
    parser.add_argument(
        "--output-tokens", type=int, default=100, help="Server --output-tokens, one token per event (default: %(default)s)."
    )
    parser.add_argument(
        "--timer", choices=("auto", "timerfd", "asyncio"), default="auto", help="Server --timer (default: %(default)s)."
    )
    parser.add_argument("--duration-s", type=float, default=10.0, help="Measured window in s (default: %(default)s).")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="Load before the window in s (default: %(default)s).")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the server (default: %(default)s).")
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU for the load client (default: %(default)s).")
    args = parser.parse_args()
    if not 1 <= args.streams <= 10_000:
        parser.error(f"--streams must be from 1 to 10000, got {args.streams}")
    if not 0 < args.duration_s <= 300 or not 0 <= args.warmup_s <= 60:
        parser.error("--duration-s must be in (0, 300] and --warmup-s in [0, 60]")
    return args


def main() -> None:
    args = _parse_args()
    if args.run_client:
        asyncio.run(_run_client(args))
        return
    result = _run_benchmark(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
