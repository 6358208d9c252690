"""Tests against a real LLM server: llama-cpp-python with Gemma 3 270M, on 127.0.0.1.

The server tests are marked ``llama`` and skipped when the ``[llama]`` extra is missing.
Each class shares one server: one with ``interrupt_requests`` off (requests queue) and
one with it on (llama-cpp-python's default, which cuts the running stream short when
another request arrives). The command-line tests at the end start their own. The parser
and error-message tests at the top need no server.
"""

from __future__ import annotations

import locust  # noqa: F401 - gevent must patch the socket module before requests loads

import csv
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from locust.env import Environment

from locust_llm_sse import PHASE_REQUEST_TYPES, LLMClient, StreamResult
from locust_llm_sse.llama import LlamaServer, LlamaServerError, LlamaTimings, missing_modules, parse_timings
from locust_llm_sse.llama.__main__ import main as llama_main

REPO_DIR = Path(__file__).parent.parent
CHAT_LOCUSTFILE = REPO_DIR / "locustfiles" / "chat.py"
COMPARE_LOCUSTFILE = REPO_DIR / "tests" / "locustfiles" / "llama_compare.py"
PHASE_TYPES = [PHASE_REQUEST_TYPES[phase] for phase in ("connect", "first_token", "completion")]
PROMPT = "Write a short poem about load testing."
MISSING_FINISH = "stream ended without a finish reason"
EMPTY_STREAM = "stream ended before the first token"

_missing = missing_modules()
skip_without_llama = pytest.mark.skipif(
    bool(_missing), reason=f"the [llama] extra is not installed (missing {', '.join(_missing)}): pip install '.[llama]'"
)


# -- no server ------------------------------------------------------------------------------

LOG_EXCERPT = """\
INFO:     127.0.0.1:53868 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 16 prefix-match hit, remaining 1 prompt tokens to eval
llama_perf_context_print:        load time =       0.19 ms
llama_perf_context_print: prompt eval time =       0.00 ms /     1 tokens (    0.00 ms per token,      inf tokens per second)
llama_perf_context_print:        eval time =     430.59 ms /    32 runs   (   13.46 ms per token,    74.32 tokens per second)
llama_perf_context_print:       total time =     498.95 ms /    33 tokens
llama_perf_context_print:    graphs reused =         31
INFO:     127.0.0.1:53872 - "POST /v1/chat/completions HTTP/1.1" 200 OK
llama_perf_context_print:        load time =       0.19 ms
llama_perf_context_print: prompt eval time =     214.81 ms /    12 tokens (   17.90 ms per token,    55.86 tokens per second)
llama_perf_context_print:        eval time =     439.56 ms /    31 runs   (   14.18 ms per token,    70.53 tokens per second)
llama_perf_context_print:       total time =     732.54 ms /    43 tokens
llama_perf_context_print:        load time =       0.19 ms
llama_perf_context_print: prompt eval time =      81.40 ms /    13 tokens (    6.26 ms per token,   159.70 tokens per second)
"""


def test_parse_timings_reads_each_block() -> None:
    timings = parse_timings(LOG_EXCERPT)

    assert timings == [
        LlamaTimings(
            prompt_eval_ms=0.0,
            prompt_eval_tokens=1,
            eval_ms=430.59,
            eval_runs=32,
            total_ms=498.95,
            total_tokens=33,
            reused_prompt_tokens=16,
        ),
        LlamaTimings(
            prompt_eval_ms=214.81,
            prompt_eval_tokens=12,
            eval_ms=439.56,
            eval_runs=31,
            total_ms=732.54,
            total_tokens=43,
            reused_prompt_tokens=None,
        ),
    ]
    assert timings[1].eval_tokens_per_second == pytest.approx(70.53, abs=0.01)


def test_cli_without_extra_names_install_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # find_spec() returns None for it now

    with caplog.at_level(logging.ERROR):
        status = llama_main(["--port", "0"])

    assert status == 1
    assert "missing: llama_cpp" in caplog.text
    assert "pip install '.[llama]'" in caplog.text


# -- helpers --------------------------------------------------------------------------------


class RequestLog:
    """A Locust environment whose request events are kept, for clients made with ``client()``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.environment = Environment()
        self.events: list[dict[str, Any]] = []
        self.environment.events.request.add_listener(lambda **event: self.events.append(event))

    def client(self) -> LLMClient:
        """Return a new client (its own connection) that reports to this environment."""
        return LLMClient(self.base_url, environment=self.environment, first_token_timeout=30, inter_token_timeout=10)

    def phases(self, name: str) -> list[tuple[str, str | None]]:
        """Return ``(request_type, failure message or None)`` of each event of ``name``, in order."""
        return [
            (event["request_type"], str(event["exception"]) if event["exception"] else None)
            for event in self.events
            if event["name"] == name
        ]


def run_locust(
    tmp_path: Path, base_url: str, *arguments: str, locustfiles: str = str(CHAT_LOCUSTFILE), timeout_s: float = 60
) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "locust", "-f", locustfiles, "--host", base_url,
        "--headless", "--only-summary", "--csv", "out", *arguments,
    ]
    environment = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout_s)


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a Locust ``*_stats.csv`` keyed by Type (the Aggregated row by its name)."""
    with open(path, newline="", encoding="utf-8") as file:
        return {row["Type"] or row["Name"]: row for row in csv.DictReader(file)}


def read_failures(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def spawn_chat(log: RequestLog, name: str, max_tokens: int) -> gevent.Greenlet:
    return gevent.spawn(log.client().chat, PROMPT, max_tokens=max_tokens, name=name, temperature=0)


@pytest.fixture(scope="class")
def queued_server() -> Iterator[LlamaServer]:
    with LlamaServer(interrupt_requests=False, start_timeout_s=60) as server:
        yield server


@pytest.fixture(scope="class")
def interrupting_server() -> Iterator[LlamaServer]:
    with LlamaServer(interrupt_requests=True, start_timeout_s=60) as server:
        yield server


# -- requests queue (interrupt_requests off) ------------------------------------------------


@pytest.mark.llama
@skip_without_llama
class TestQueuedServer:
    @pytest.mark.timeout(90)
    def test_one_chat_matches_llama_timings(self, queued_server: LlamaServer) -> None:
        log = RequestLog(queued_server.base_url)
        before = len(queued_server.timings())

        result = log.client().chat(PROMPT, max_tokens=32, temperature=0)

        assert result.ok, result.error
        assert log.phases("/v1/chat/completions") == [(phase, None) for phase in PHASE_TYPES]
        assert result.finish_reason in ("length", "stop")
        assert result.usage is None  # llama-cpp-python sends no usage in a stream
        assert result.tokens_estimated is True
        assert 0 < result.output_tokens <= 32
        assert result.ttft_ms is not None and result.ttft_ms > 0
        assert result.completion_ms is not None and result.completion_ms > result.ttft_ms

        new_timings = queued_server.timings()[before:]
        assert len(new_timings) == 1
        timing = new_timings[0]
        # llama.cpp times its own work; the client also sees HTTP, SSE and sampling time.
        assert result.completion_ms >= timing.total_ms
        assert result.completion_ms <= 2 * timing.total_ms + 500
        decode_ms = result.completion_ms - result.ttft_ms
        assert decode_ms >= 0.8 * timing.eval_ms
        assert decode_ms <= 2.5 * timing.eval_ms + 250
        # One output event per token, except a few that join the bytes of one character.
        assert result.output_tokens <= timing.eval_runs + 1
        assert result.output_tokens >= (timing.eval_runs + 1) // 2

    @pytest.mark.timeout(60)
    def test_legacy_completion_streams(self, queued_server: LlamaServer) -> None:
        log = RequestLog(queued_server.base_url)

        result = log.client().completion("The sea is", max_tokens=16, temperature=0)

        assert result.ok, result.error
        assert log.phases("/v1/completions") == [(phase, None) for phase in PHASE_TYPES]
        assert result.finish_reason in ("length", "stop")
        assert result.text
        assert result.tokens_estimated is True
        assert 0 < result.output_tokens <= 16
        assert result.ttft_ms is not None and result.ttft_ms > 0
        assert result.completion_ms is not None and result.completion_ms > result.ttft_ms

    @pytest.mark.timeout(60)
    def test_concurrent_chats_wait_their_turn(self, queued_server: LlamaServer) -> None:
        log = RequestLog(queued_server.base_url)
        before = len(queued_server.timings())

        greenlets = [spawn_chat(log, f"queued {index}", 24) for index in range(3)]
        gevent.joinall(greenlets, timeout=45, raise_error=True)

        results: list[StreamResult] = [greenlet.value for greenlet in greenlets]
        for result in results:
            assert result is not None, "a request did not finish within 45 s"
            assert result.ok, result.error
        assert len(queued_server.timings()) - before == 3

        by_first_token = sorted(results, key=lambda result: result.first_token_at)
        for earlier, later in zip(by_first_token, by_first_token[1:]):
            # The server streams one completion at a time, so a request's first token
            # arrives only after the stream before it ended.
            assert later.first_token_at >= earlier.end_at - 0.1
            # Hence TTFT grows with the queue position, by at least about one generation.
            generation_ms = earlier.completion_ms - earlier.ttft_ms
            assert later.ttft_ms >= earlier.ttft_ms + 0.5 * generation_ms

    @pytest.mark.timeout(90)
    def test_locust_three_users_all_succeed(self, queued_server: LlamaServer, tmp_path: Path) -> None:
        completed = run_locust(tmp_path, queued_server.base_url, "-u", "3", "-r", "3", "-t", "8s", "--max-tokens", "16")

        assert completed.returncode == 0, completed.stderr[-3000:]
        rows = read_stats(tmp_path / "out_stats.csv")
        counts = [int(rows[phase]["Request Count"]) for phase in PHASE_TYPES]
        for phase in PHASE_TYPES:
            assert rows[phase]["Name"] == "/v1/chat/completions"
            assert int(rows[phase]["Failure Count"]) == 0
        # Streams cut by the end of the run have no later phases, hence >= rather than ==.
        assert counts[0] >= counts[1] >= counts[2] > 3
        assert read_failures(tmp_path / "out_failures.csv") == []
        # The server streams one request at a time, so a request waits for the two ahead
        # of it: its TTFT is longer than its own generation (completion - TTFT).
        ttft_ms = float(rows[PHASE_TYPES[1]]["Median Response Time"])
        completion_ms = float(rows[PHASE_TYPES[2]]["Median Response Time"])
        assert ttft_ms > completion_ms - ttft_ms

    @pytest.mark.timeout(90)
    def test_locust_one_user_agrees_with_llama_log(self, queued_server: LlamaServer, tmp_path: Path) -> None:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text(
            "Describe the sea in one sentence.\nName three colors of autumn leaves.\n"
            "Write a haiku about a slow web server.\nExplain what a queue is to a child.\n"
        )
        completed = run_locust(
            tmp_path, queued_server.base_url, "-u", "1", "-r", "1", "-t", "6s", "--max-tokens", "32",
            "--prompts-file", str(prompts), "--llama-log", str(queued_server.log_path), "--compare-json", "compare.json",
            locustfiles=f"{CHAT_LOCUSTFILE},{COMPARE_LOCUSTFILE}",
        )

        assert completed.returncode == 0, completed.stderr[-3000:]
        assert "first token / prompt eval" in completed.stdout
        with open(tmp_path / "compare.json", encoding="utf-8") as file:
            comparison = json.load(file)
        assert len(comparison["requests"]) >= 3
        medians = comparison["medians"]
        # The client's window contains llama.cpp's: the same work plus HTTP and SSE.
        assert medians["ttft_ms"] >= medians["llama_prompt_eval_ms"]
        assert medians["completion_ms"] >= medians["llama_total_ms"]
        assert medians["completion_ms"] <= 1.5 * medians["llama_total_ms"] + 200
        assert medians["decode_ms"] >= 0.8 * medians["llama_eval_ms"]
        assert medians["output_tokens"] <= medians["llama_eval_runs"] + 1


# -- the running stream is cut short (interrupt_requests on) -------------------------------


@pytest.mark.llama
@skip_without_llama
class TestInterruptingServer:
    @pytest.mark.timeout(90)
    def test_cut_streams_fail_without_finish_reason(self, interrupting_server: LlamaServer) -> None:
        log = RequestLog(interrupting_server.base_url)
        greenlets: dict[str, gevent.Greenlet] = {}
        next_request = {"first": ("second", 64), "second": ("third", 16)}

        def start_next_on_first_token(request_type: str, name: str, exception: Exception | None, **_: Any) -> None:
            # Each request starts once the one before streams output, so the server cuts
            # that one mid-stream.
            if request_type == PHASE_TYPES[1] and exception is None and name in next_request:
                next_name, max_tokens = next_request.pop(name)
                greenlets[next_name] = spawn_chat(log, next_name, max_tokens)

        log.environment.events.request.add_listener(start_next_on_first_token)
        greenlets["first"] = spawn_chat(log, "first", 64)
        deadline = time.monotonic() + 60
        # "second" starts before "first" ends and "third" before "second" ends, so one is
        # always running until all three have started.
        while len(greenlets) < 3 and time.monotonic() < deadline:
            if all(greenlet.dead for greenlet in greenlets.values()):
                break
            gevent.sleep(0.05)
        gevent.joinall(list(greenlets.values()), timeout=45, raise_error=True)

        assert sorted(greenlets) == ["first", "second", "third"]
        for name in ("first", "second"):
            result = greenlets[name].value
            assert result.ok is False
            assert result.failed_phase == "completion"
            assert result.error == MISSING_FINISH
            assert result.error_kind == "missing_finish_reason"
            assert result.output_tokens > 0
            assert log.phases(name) == [
                (PHASE_TYPES[0], None),
                (PHASE_TYPES[1], None),
                (PHASE_TYPES[2], MISSING_FINISH),
            ]
        third = greenlets["third"].value
        assert third.ok, third.error
        assert log.phases("third") == [(phase, None) for phase in PHASE_TYPES]

    @pytest.mark.timeout(60)
    def test_simultaneous_chats_only_last_succeeds(self, interrupting_server: LlamaServer) -> None:
        log = RequestLog(interrupting_server.base_url)

        greenlets = [spawn_chat(log, f"together {index}", 24) for index in range(3)]
        gevent.joinall(greenlets, timeout=45, raise_error=True)

        results: list[StreamResult] = [greenlet.value for greenlet in greenlets]
        assert all(result is not None for result in results), "a request did not finish within 45 s"
        assert sum(result.ok for result in results) == 1
        for result in results:
            if not result.ok:
                # A stream cut right after its role-only first chunk carries no output;
                # one cut later has output but no finish reason.
                assert result.error in (EMPTY_STREAM, MISSING_FINISH)
                assert result.status_code == 200

    @pytest.mark.timeout(90)
    def test_locust_two_users_count_cut_streams(self, interrupting_server: LlamaServer, tmp_path: Path) -> None:
        base_url = interrupting_server.base_url
        completed = run_locust(tmp_path, base_url, "-u", "2", "-r", "2", "-t", "6s", "--max-tokens", "16")

        assert completed.returncode == 1, completed.stderr[-3000:]
        rows = read_stats(tmp_path / "out_stats.csv")
        phase_failures = sum(int(rows[phase]["Failure Count"]) for phase in PHASE_TYPES[1:])
        assert int(rows[PHASE_TYPES[0]]["Failure Count"]) == 0
        assert phase_failures > 0
        failures = read_failures(tmp_path / "out_failures.csv")
        assert failures
        # Locust's failure table shows repr(exception).
        expected = {
            (PHASE_TYPES[1], f"LLMStreamError({EMPTY_STREAM!r})"),
            (PHASE_TYPES[2], f"LLMStreamError({MISSING_FINISH!r})"),
        }
        for failure in failures:
            assert (failure["Method"], failure["Error"]) in expected


# -- the command line -----------------------------------------------------------------------


def read_line(stream: Any, timeout_s: float) -> str:
    """Read one line from a pipe, or fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line within {timeout_s:g} s; received {received!r}"
        readable, _, _ = select.select([stream], [], [], min(remaining, 0.2))
        if readable:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"the pipe closed after {received!r}"
            received += chunk
    return received.split(b"\n", 1)[0].decode()


@pytest.mark.llama
@skip_without_llama
@pytest.mark.timeout(60)
def test_cli_prints_url_and_stops_server(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "locust_llm_sse.llama", "--port", "0", "--log-file", str(log_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base_url = read_line(process.stdout, 45)
        assert base_url.startswith("http://127.0.0.1:")
        client = LLMClient(base_url)
        result = client.chat(PROMPT, max_tokens=8)
        assert result.ok, result.error

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    assert "SIGTERM: stopping the server" in stderr
    assert "stopped with status" in stderr
    server_pid = int(stderr.split("Started llama.cpp server PID ", 1)[1].split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert "llama_perf_context_print" in log_file.read_text()


@pytest.mark.llama
@skip_without_llama
@pytest.mark.timeout(60)
def test_invalid_model_error_shows_log(tmp_path: Path) -> None:
    model_path = tmp_path / "invalid.gguf"
    model_path.write_text("not a GGUF file")
    server = LlamaServer(model_path, start_timeout_s=45)

    with pytest.raises(LlamaServerError) as raised:
        server.start()

    message = str(raised.value)
    assert "exited with status 1 before it was ready" in message
    assert "Failed to load model from file" in message
    assert server.poll() == 1
