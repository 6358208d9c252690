"""Tests of the bundled mock server, against real server processes on 127.0.0.1.

Most tests read responses with a raw-socket HTTP/1.1 client, so that the framing the
server sends (chunk boundaries, the last chunk, connection close) and the arrival
time of every chunk are visible.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from locust_llm_sse.mock import MockServerError, MockServerProcess
from locust_llm_sse.mock._config import MockConfig
from locust_llm_sse.mock._plan import build_plan, iter_deadlines

pytestmark = pytest.mark.timeout(30)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER_MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello mock server"}]


# Raw HTTP/1.1 client


@dataclass
class RawResponse:
    """A response as it arrived. ``chunks`` are (arrival time, payload) pairs: chunk
    payloads for chunked framing, and the data of each read otherwise."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = False
    """True once the framing marks the end of the body: the zero-length last chunk, the
    Content-Length, or end of file for a close-delimited body."""
    closed: bool = False
    """True if the server closed the connection."""

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One keep-alive HTTP/1.1 connection that times the arrival of every read."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.host = host
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self._eof = False
        self._last_arrival = 0.0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, path: str, body: Any = None, method: str = "POST", version: str = "HTTP/1.1", headers: str = "") -> float:
        """Send a request and return the perf_counter time just before sending."""
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        head = f"{method} {path} {version}\r\nHost: {self.host}\r\n{headers}"
        if data or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        started = time.perf_counter()
        self.sock.sendall(head.encode() + b"\r\n" + data)
        return started

    def _read(self) -> None:
        """Append one read to the buffer and note its arrival time."""
        data = self.sock.recv(65536)
        self._last_arrival = time.perf_counter()
        if not data:
            self._eof = True
        self._buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._read()
            if self._eof:
                raise EOFError(f"connection closed before {marker!r}")
        before, self._buffer = self._buffer.split(marker, 1)
        return before

    def response(self) -> RawResponse:
        """Read one response. A connection closed mid-body gives ``complete=False``."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *fields = head.split("\r\n")
        headers = {}
        for line in fields:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        result = RawResponse(status=int(status_line.split(" ")[1]), headers=headers)
        if result.status < 200:
            # An interim response such as 100 Continue has no body.
            result.complete = True
            return result

        if headers.get("transfer-encoding") == "chunked":
            self._read_chunks(result)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            while len(self._buffer) < length and not self._eof:
                self._read()
            result.body, self._buffer = self._buffer[:length], self._buffer[length:]
            result.complete = len(result.body) == length
        else:
            if self._buffer:
                result.chunks.append((self._last_arrival, self._buffer))
            while not self._eof:
                self._read()
                if self._buffer[len(result.body) :]:
                    result.chunks.append((self._last_arrival, self._buffer[len(result.body) :]))
            result.body = self._buffer
            self._buffer = b""
            result.complete = True
        result.closed = self._eof or self._peer_closed(wait=headers.get("connection") == "close")
        return result

    def _read_chunks(self, result: RawResponse) -> None:
        """Read chunks up to the last one or end of file. A chunk's arrival time is that
        of the read that completed it."""
        while True:
            try:
                size_line = self._read_until(b"\r\n")
            except EOFError:
                return
            size = int(size_line, 16)
            while len(self._buffer) < size + 2 and not self._eof:
                self._read()
            if len(self._buffer) < size + 2:
                return
            if size == 0:
                self._buffer = self._buffer[2:]
                result.complete = True
                return
            payload, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            result.chunks.append((self._last_arrival, payload))
            result.body += payload

    def _peer_closed(self, wait: bool) -> bool:
        """Return True if the server has closed the connection, waiting for that up to
        2 s if ``wait`` is set and not at all otherwise."""
        self.sock.settimeout(2.0 if wait else 0.0)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, socket.timeout):
            return False
        finally:
            self.sock.settimeout(5)
        return data == b""

    def request(self, path: str, body: Any = None, **kwargs: Any) -> RawResponse:
        self.send(path, body, **kwargs)
        return self.response()


def sse_data(body: bytes) -> list[str]:
    """Return the data field of every event in an SSE body."""
    events = []
    for block in body.decode().split("\n\n"):
        lines = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        if lines:
            events.append("\n".join(lines))
    return events


def sse_chunks(body: bytes) -> list[dict[str, Any]]:
    """Return the JSON events of an SSE body, without the final ``[DONE]``."""
    return [json.loads(data) for data in sse_data(body) if data != "[DONE]"]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "mock-llm", "messages": USER_MESSAGES, **fields}


def stream_chat(**fields: Any) -> dict[str, Any]:
    return chat(stream=True, **fields)


def content_of(chunks: list[dict[str, Any]], key: str = "content") -> list[str]:
    return [c["choices"][0]["delta"][key] for c in chunks if c["choices"] and c["choices"][0]["delta"].get(key)]


@pytest.fixture(scope="module")
def mock_url() -> str:
    with MockServerProcess("--ttft-ms", "0", "--itl-ms", "1", "--output-tokens", "6", "--log-level", "warning") as mock:
        yield mock.base_url


@pytest.fixture
def connection(mock_url: str) -> RawConnection:
    with RawConnection(mock_url) as raw:
        yield raw


# Response shapes


def test_chat_stream_shape(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat())

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.complete
    data = sse_data(response.body)
    assert data[-1] == "[DONE]"
    chunks = sse_chunks(response.body)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "mock-llm" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert content_of(chunks) == [f"tok{i} " for i in range(6)]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all("usage" not in chunk for chunk in chunks)


def test_chat_stream_prelude_arrives_with_head(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"ttft_ms": 100}))

    first_chunk = sse_chunks(response.chunks[0][1])
    assert first_chunk[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(first_chunk) == 1


def test_chat_stream_usage_chunk(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(stream_options={"include_usage": True}))

    chunks = sse_chunks(response.body)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    # "be brief" + "hello mock server": 5 whitespace-separated words.
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert sse_data(response.body)[-1] == "[DONE]"


def test_max_tokens_cuts_with_length(connection: RawConnection) -> None:
    for limit_field in ("max_tokens", "max_completion_tokens"):
        body = stream_chat(stream_options={"include_usage": True}, **{limit_field: 3})
        chunks = sse_chunks(connection.request(CHAT, body).body)

        assert content_of(chunks) == ["tok0 ", "tok1 ", "tok2 "], limit_field
        assert chunks[-2]["choices"][0]["finish_reason"] == "length", limit_field
        assert chunks[-1]["usage"]["completion_tokens"] == 3, limit_field


def test_max_tokens_above_output_stops(connection: RawConnection) -> None:
    chunks = sse_chunks(connection.request(CHAT, stream_chat(max_tokens=100)).body)

    assert len(content_of(chunks)) == 6
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_non_streaming(connection: RawConnection) -> None:
    response = connection.request(CHAT, chat(max_tokens=4))

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3 "}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_completions_stream(connection: RawConnection) -> None:
    body = {"model": "mock-llm", "prompt": "one two three", "stream": True, "stream_options": {"include_usage": True}}
    response = connection.request(COMPLETIONS, body)

    chunks = sse_chunks(response.body)
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    texts = [chunk["choices"][0]["text"] for chunk in chunks if chunk["choices"]]
    assert texts == [f"tok{i} " for i in range(6)] + [""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    assert sse_data(response.body)[-1] == "[DONE]"


def test_completions_non_streaming(connection: RawConnection) -> None:
    cases = [("one two", 2), (["a b", "c"], 3), ([1, 2, 3, 4], 4), ([[1, 2], [3]], 3)]
    for prompt, prompt_tokens in cases:
        body = connection.request(COMPLETIONS, {"prompt": prompt, "max_tokens": 2}).json()

        assert body["object"] == "text_completion", prompt
        assert body["choices"][0]["text"] == "tok0 tok1 ", prompt
        assert body["usage"]["prompt_tokens"] == prompt_tokens, prompt


def test_models_lists_mock_model(connection: RawConnection) -> None:
    response = connection.request("/v1/models", method="GET")

    assert response.status == 200
    body = response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["mock-llm"]


# Errors


def assert_openai_error(response: RawResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_unknown_path_returns_404(connection: RawConnection) -> None:
    error = assert_openai_error(connection.request("/v1/nothing", {}), 404)

    assert "/v1/nothing" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_malformed_json_returns_400(connection: RawConnection) -> None:
    error = assert_openai_error(connection.request(CHAT, b'{"messages": ['), 400)

    assert error["code"] == "invalid_json"
    response = connection.request(CHAT, chat())
    assert response.status == 200, "the connection must stay usable after a 400"


def test_invalid_fields_return_400(connection: RawConnection) -> None:
    cases = [
        (CHAT, chat(mock={"ttft_ms": -1}), "mock.ttft_ms"),
        (CHAT, chat(mock={"fault": "explode"}), "mock.fault"),
        (CHAT, chat(mock={"tokens_per_event": [0]}), "tokens_per_event"),
        (CHAT, chat(mock={"framing": "length"}), "mock.framing"),
        (CHAT, chat(mock={"speed": 1}), "speed"),
        (CHAT, chat(max_tokens=0), "max_tokens"),
        (CHAT, chat(stream="yes"), "stream"),
        (CHAT, chat(n=2), "n must be 1"),
        (CHAT, {"messages": []}, "messages"),
        (COMPLETIONS, {"prompt": None}, "prompt"),
        (CHAT, [1, 2], "JSON object"),
    ]
    for path, body, named in cases:
        error = assert_openai_error(connection.request(path, body), 400)

        assert named in error["message"], body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/models HTTP/2.0\r\n\r\n", 505),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"GET /v1/models HTTP/1.1\r\nX-Padding: " + b"a" * 70_000, 431),
    ],
)
def test_malformed_request_closes(mock_url: str, request_bytes: bytes, status: int) -> None:
    with RawConnection(mock_url) as raw:
        raw.sock.sendall(request_bytes)
        response = raw.response()

    assert_openai_error(response, status)
    assert response.headers["connection"] == "close"
    assert response.closed


def test_wrong_method_returns_405(connection: RawConnection) -> None:
    response = connection.request(CHAT, method="GET")

    assert_openai_error(response, 405)
    assert response.headers["allow"] == "POST"


# Faults


def test_fault_429_has_retry_after(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"fault": "429", "retry_after_s": 7}))

    error = assert_openai_error(response, 429)
    assert response.headers["retry-after"] == "7"
    assert error["code"] == "rate_limit_exceeded"
    assert connection.request(CHAT, chat()).status == 200


def test_fault_500(connection: RawConnection) -> None:
    error = assert_openai_error(connection.request(CHAT, stream_chat(mock={"fault": "500"})), 500)

    assert error["type"] == "server_error"


def test_fault_error_event(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"fault": "error_event"}))

    assert response.status == 200
    assert response.complete
    data = sse_data(response.body)
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["type"] == "server_error"
    chunks = sse_chunks(response.body)[:-1]
    assert content_of(chunks) == ["tok0 ", "tok1 ", "tok2 "]
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks)
    assert connection.request(CHAT, chat()).status == 200


def test_fault_cut_omits_last_chunk(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"fault": "cut"}))

    assert response.status == 200
    assert not response.complete
    assert response.closed
    assert content_of(sse_chunks(response.body)) == ["tok0 ", "tok1 ", "tok2 "]
    assert "[DONE]" not in sse_data(response.body)


def test_fault_stall_pauses_then_closes(connection: RawConnection) -> None:
    sent = connection.send(CHAT, stream_chat(mock={"fault": "stall", "stall_ms": 300, "itl_ms": 10}))
    response = connection.response()
    closed_after_s = time.perf_counter() - sent

    assert response.status == 200
    assert not response.complete
    assert response.closed
    assert content_of(sse_chunks(response.body)) == ["tok0 ", "tok1 ", "tok2 "]
    # Three events 10 ms apart, the stall from the fourth deadline, then close.
    assert 0.3 + 0.03 <= closed_after_s < 1.0


def test_fault_rates_follow_seed() -> None:
    arguments = ["--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "2", "--rate-429", "0.3", "--rate-500", "0.3"]
    statuses = []
    for _ in range(2):
        with MockServerProcess(*arguments, "--seed", "42") as mock, RawConnection(mock.base_url) as raw:
            statuses.append([raw.request(CHAT, chat()).status for _ in range(30)])

    assert statuses[0] == statuses[1]
    assert set(statuses[0]) == {200, 429, 500}


def test_fault_override_null_disables_rates() -> None:
    with MockServerProcess("--ttft-ms", "0", "--itl-ms", "0", "--rate-cut", "1") as mock:
        with RawConnection(mock.base_url) as raw:
            drawn = raw.request(CHAT, stream_chat())
        with RawConnection(mock.base_url) as raw:
            overridden = raw.request(CHAT, stream_chat(mock={"fault": None}))

    assert not drawn.complete
    assert overridden.complete


# Encoding, framing and token grouping


def test_gzip_flushes_every_event(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"gzip": True, "itl_ms": 5}))

    assert response.headers["content-encoding"] == "gzip"
    assert response.complete
    decompressor = zlib.decompressobj(wbits=31)
    decoded = []
    for _, payload in response.chunks:
        text = decompressor.decompress(payload)
        if text:
            decoded.append(text)
    # Every chunk but the gzip trailer decompresses to whole events at once.
    assert all(text.endswith(b"\n\n") for text in decoded)
    assert decompressor.eof
    plain = b"".join(decoded)
    assert content_of(sse_chunks(plain)) == [f"tok{i} " for i in range(6)]
    assert sse_data(plain)[-1] == "[DONE]"


def test_gzip_non_streaming(connection: RawConnection) -> None:
    response = connection.request(CHAT, chat(mock={"gzip": True}))

    assert response.headers["content-encoding"] == "gzip"
    body = json.loads(zlib.decompress(response.body, wbits=31))
    assert body["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4 tok5 "


def test_close_framing_ends_with_close(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"framing": "close", "itl_ms": 5}))

    assert response.status == 200
    assert "transfer-encoding" not in response.headers
    assert "content-length" not in response.headers
    assert response.headers["connection"] == "close"
    assert response.closed
    assert sse_data(response.body)[-1] == "[DONE]"
    assert content_of(sse_chunks(response.body)) == [f"tok{i} " for i in range(6)]


def test_http10_request_gets_close_framing(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(), version="HTTP/1.0")

    assert "transfer-encoding" not in response.headers
    assert response.closed
    assert sse_data(response.body)[-1] == "[DONE]"


def test_tokens_per_event_pattern(connection: RawConnection) -> None:
    response = connection.request(CHAT, stream_chat(mock={"tokens_per_event": [1, 1, 3], "output_tokens": 8}))

    chunks = sse_chunks(response.body)
    assert content_of(chunks) == ["tok0 ", "tok1 ", "tok2 tok3 tok4 ", "tok5 ", "tok6 ", "tok7 "]


def test_reasoning_before_content(connection: RawConnection) -> None:
    body = stream_chat(stream_options={"include_usage": True}, mock={"reasoning_tokens": 2, "tokens_per_event": [3]})
    chunks = sse_chunks(connection.request(CHAT, body).body)

    assert content_of(chunks, "reasoning_content") == ["tok0 tok1 "]
    assert content_of(chunks) == ["tok2 tok3 tok4 ", "tok5 "]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert not any("content" in delta and "reasoning_content" in delta for delta in deltas)
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}


def test_reasoning_non_streaming(connection: RawConnection) -> None:
    body = connection.request(CHAT, chat(mock={"reasoning_tokens": 4})).json()

    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == "tok0 tok1 tok2 tok3 "
    assert message["content"] == "tok4 tok5 "
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


def test_command_line_output_options() -> None:
    arguments = [
        "--model", "custom-model", "--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "5",
        "--tokens-per-event", "2,1", "--reasoning-tokens", "1", "--gzip", "--no-chunked", "--timer", "asyncio",
    ]
    with MockServerProcess(*arguments) as mock, RawConnection(mock.base_url) as raw:
        models = raw.request("/v1/models", method="GET").json()
        with RawConnection(mock.base_url) as stream_connection:
            response = stream_connection.request(CHAT, stream_chat())

    assert models["data"][0]["id"] == "custom-model"
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["connection"] == "close"
    chunks = sse_chunks(zlib.decompress(response.body, wbits=31))
    assert chunks[0]["model"] == "custom-model"
    assert content_of(chunks, "reasoning_content") == ["tok0 "]
    assert content_of(chunks) == ["tok1 ", "tok2 tok3 ", "tok4 "]


# Timing


def test_timing_matches_deadlines(mock_url: str) -> None:
    ttft_ms, itl_ms, tokens = 30.0, 10.0, 12
    ttfts, gaps = [], []
    with RawConnection(mock_url) as raw:
        for _ in range(4):
            sent = raw.send(CHAT, stream_chat(mock={"ttft_ms": ttft_ms, "itl_ms": itl_ms, "output_tokens": tokens}))
            response = raw.response()
            # The first chunk is the role prelude; each content event is its own chunk.
            arrivals = [arrived for arrived, _ in response.chunks[1:]]
            assert len(arrivals) == tokens
            ttfts.append((arrivals[0] - sent) * 1000)
            gaps.extend((later - earlier) * 1000 for earlier, later in zip(arrivals, arrivals[1:]))

    # Events leave about 0.1 ms after their deadline with the default timerfd timer,
    # and up to about 1 ms after with asyncio's timers. The tolerances leave room for a
    # busy machine. Deadlines are absolute, so lateness does not add up over a stream.
    assert ttft_ms - 0.5 <= statistics.median(ttfts) <= ttft_ms + 2.0, ttfts
    assert abs(statistics.median(gaps) - itl_ms) <= 1.0, gaps
    last_event_ms = statistics.median(ttfts) + sum(gaps) / 4
    assert last_event_ms <= ttft_ms + (tokens - 1) * itl_ms + 3.0


def test_non_streaming_waits_for_last_token(connection: RawConnection) -> None:
    sent = connection.send(CHAT, chat(mock={"ttft_ms": 50, "itl_ms": 10, "output_tokens": 6}))
    response = connection.response()
    elapsed_s = time.perf_counter() - sent

    assert response.status == 200
    # The body goes out at the deadline of the last token: 50 ms + 5 gaps of 10 ms.
    assert 0.1 - 0.001 <= elapsed_s < 0.5


def test_jitter_reproducible_and_bounded() -> None:
    config = MockConfig(ttft_ms=20, itl_ms=10, jitter_ms=4, output_tokens=50)
    plan = build_plan("chat", chat(), config, random.Random(0))

    def deadlines(seed: str) -> list[float]:
        iterator = iter_deadlines(plan, 0.0, random.Random(seed))
        return [next(iterator) for _ in range(50)]

    first = deadlines("0:1")
    assert first == deadlines("0:1")
    assert first != deadlines("0:2")
    assert 0.016 <= first[0] <= 0.024
    gaps = [later - earlier for earlier, later in zip(first, first[1:])]
    assert all(0.006 <= gap <= 0.014 for gap in gaps)
    assert statistics.pstdev(gaps) > 0.001


# Connections


def test_keep_alive_many_requests(mock_url: str) -> None:
    with RawConnection(mock_url) as raw:
        local_port = raw.sock.getsockname()[1]
        for index in range(60):
            body = stream_chat() if index % 2 else chat()
            response = raw.request(CHAT, body)
            assert response.status == 200, index
            assert response.complete, index
            assert not response.closed, index
        assert raw.sock.getsockname()[1] == local_port


def test_pipelined_requests_keep_order(connection: RawConnection) -> None:
    connection.send(CHAT, stream_chat(mock={"output_tokens": 2}))
    connection.send("/v1/models", method="GET")
    connection.send(CHAT, chat(mock={"output_tokens": 3}))

    first, second, third = connection.response(), connection.response(), connection.response()
    assert content_of(sse_chunks(first.body)) == ["tok0 ", "tok1 "]
    assert second.json()["object"] == "list"
    assert third.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "


def test_expect_continue(connection: RawConnection) -> None:
    body = json.dumps(chat()).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    connection.sock.sendall(head.encode())
    interim = connection.response()
    connection.sock.sendall(body)
    final = connection.response()

    assert interim.status == 100
    assert final.status == 200


def test_connection_close_header(connection: RawConnection) -> None:
    response = connection.request(CHAT, chat(), headers="Connection: close\r\n")

    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert response.closed


# Process handling and command line


def process_exited(pid: int) -> bool:
    """Return True if the process is gone or a zombie (exited, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_stop_terminates_cleanly() -> None:
    mock = MockServerProcess("--log-level", "info")
    url = mock.start()

    assert url.startswith("http://127.0.0.1:")
    assert mock.stop() == 0
    assert "Mock server stopped" in mock.stderr_text()
    assert mock.stop() == 0
    with pytest.raises(RuntimeError):
        mock.base_url


def test_child_exits_when_parent_killed() -> None:
    parent_code = textwrap.dedent(
        """
        import sys, time
        from locust_llm_sse.mock import MockServerProcess
        mock = MockServerProcess()
        mock.start()
        print(mock.pid, flush=True)
        time.sleep(30)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    try:
        child_pid = int(parent.stdout.readline())
        assert not process_exited(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)

        deadline = time.monotonic() + 5
        while not process_exited(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_exited(child_pid), "the mock server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--itl-ms", "-1"], ["--itl-ms", "'-1'", "milliseconds >= 0"]),
        (["--ttft-ms", "soon"], ["--ttft-ms", "'soon'"]),
        (["--output-tokens", "0"], ["--output-tokens", "'0'", ">= 1"]),
        (["--tokens-per-event", "1,,3"], ["--tokens-per-event", "'1,,3'", "such as 1 or 1,1,3"]),
        (["--rate-cut", "1.5"], ["--rate-cut", "'1.5'", "probability from 0 to 1"]),
        (["--port", "70000"], ["--port", "'70000'", "from 0 to 65535"]),
        (["--rate-429", "0.6", "--rate-500", "0.6"], ["add up to 1.2", "--rate-429", "at most 1"]),
    ],
)
def test_invalid_option_exits_with_message(arguments: list[str], expected: list[str]) -> None:
    environment = {**os.environ, "LOCUST_SKIP_MONKEY_PATCH": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "locust_llm_sse.mock", *arguments],
        capture_output=True, text=True, timeout=20, env=environment,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr


def test_start_failure_reports_stderr() -> None:
    with pytest.raises(MockServerError) as raised:
        MockServerProcess("--itl-ms", "-1").start()

    assert "exited with status 2" in str(raised.value)
    assert "--itl-ms" in str(raised.value)


def test_port_in_use_exits_with_message() -> None:
    with MockServerProcess() as first:
        port = first.base_url.rsplit(":", 1)[1]
        with pytest.raises(MockServerError) as raised:
            MockServerProcess(port=int(port)).start()

    assert "exited with status 1" in str(raised.value)
    assert "--port 0" in str(raised.value)


def test_console_script_serves() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "locust-llm-mock")
    if not os.path.exists(script):
        pytest.skip("the locust-llm-mock console script is not installed next to this Python")
    server = subprocess.Popen(
        [script, "--port", "0", "--log-level", "warning"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = server.stdout.readline().decode()
        assert line.startswith("listening on http://127.0.0.1:")
        with RawConnection(line.split()[-1]) as raw:
            assert raw.request(CHAT, chat(mock={"ttft_ms": 0, "itl_ms": 0})).status == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)

    assert server.returncode == 0, stderr
