"""The mock server: an asyncio Protocol per connection and timer callbacks per response.

Each response is a small state machine driven by timer callbacks on absolute
deadlines (see _timers.py), with no task or coroutine per stream. That keeps the cost of one streamed
event at one timer callback and one ``send`` call, which is what lets one core serve
tens of thousands of events per second (see docs/mock-server.md).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gzip
import json
import logging
import os
import random
import signal
import sys
import time
import zlib
from collections.abc import Callable
from typing import TextIO

from locust_llm_sse.mock._config import MockConfig
from locust_llm_sse.mock._http import MAX_BODY_BYTES, MAX_HEAD_BYTES, HttpError, RequestHead, parse_head, response_head
from locust_llm_sse.mock._openai import StreamTemplates, completion_body, error_body, models_body
from locust_llm_sse.mock._plan import Plan, RequestError, build_plan, iter_deadlines, iter_token_groups, token_text
from locust_llm_sse.mock._timers import Scheduler, TimerHandle, create_scheduler

logger = logging.getLogger(__name__)

_COMPLETION_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "text"}
_PARENT_POLL_S = 0.5


class MockServer:
    """Listening socket, open connections, counters and the seeded fault generator."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.counters: collections.Counter[str] = collections.Counter()
        self.started_at = int(time.time())
        self._fault_rng = random.Random(config.seed)
        self._request_number = 0
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.scheduler: Scheduler | None = None

    async def start(self) -> int:
        """Bind and listen. Returns the port, which the OS picks when ``config.port`` is 0."""
        loop = asyncio.get_running_loop()
        self.scheduler = create_scheduler(loop, self.config.timer)
        self._server = await loop.create_server(
            lambda: _Connection(self), self.config.host, self.config.port, reuse_address=True, backlog=4096
        )
        # NOTE: a host name that resolves to several addresses gets one socket each, and
        # with port 0 they may get different ports. Only the first one is reported.
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and abort open connections, including streams in progress."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.abort()
        await self._server.wait_closed()
        if self.scheduler is not None:
            self.scheduler.close()

    def next_request_number(self) -> int:
        self._request_number += 1
        return self._request_number

    @property
    def fault_rng(self) -> random.Random:
        return self._fault_rng

    def jitter_rng(self, request_number: int) -> random.Random | None:
        """Return a generator for one request's jitter, derived from the seed and the request number.

        A separate generator per request keeps each request's gaps reproducible
        however the streams of concurrent requests interleave.
        """
        if self.config.jitter_ms == 0:
            return None
        return random.Random(f"{self.config.seed}:{request_number}")


class _BodyWriter:
    """Encoder for a streamed body: optional gzip, then chunked framing or none.

    With gzip, every ``encode`` call ends with a sync flush so that the client can
    decompress each event as soon as it arrives.
    """

    __slots__ = ("_chunked", "_compressor")

    def __init__(self, chunked: bool, compress: bool) -> None:
        self._chunked = chunked
        self._compressor = zlib.compressobj(wbits=31) if compress else None

    def encode(self, data: bytes) -> bytes:
        if self._compressor is not None:
            data = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def end(self) -> bytes:
        """Return the gzip trailer and the zero-length last chunk, as the framing needs."""
        tail = b""
        if self._compressor is not None:
            tail = self._compressor.flush(zlib.Z_FINISH)
        if not self._chunked:
            return tail
        if tail:
            return b"%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail)
        return b"0\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One client connection: parses requests in order and sends one response at a time.

    Pipelined requests wait in the buffer until the current response has ended.
    """

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_paused = False
        self._on_resume: Callable[[], None] | None = None
        self._buffer = bytearray()
        self._head: RequestHead | None = None
        self._busy = False
        self._keep_alive = True
        self._peer_eof = False
        self._reading_paused = False
        self._completion: _Completion | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._connections.discard(self)
        if self._completion is not None:
            self._completion.cancel()
            self._completion = None
            self.server.counters["client_disconnects"] += 1
            logger.debug("Client disconnected during a response: %r", exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        callback, self._on_resume = self._on_resume, None
        if callback is not None:
            callback()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._process()
        elif len(self._buffer) > MAX_HEAD_BYTES + MAX_BODY_BYTES and not self._reading_paused:
            # Stop reading pipelined requests until the current response has ended.
            self.transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        # Keep the write side open so that a client that half-closes after its request
        # still gets the response.
        self._peer_eof = True
        if not self._busy:
            self._process()
        return True

    # Helpers used by _Completion

    @property
    def keep_alive(self) -> bool:
        """Whether the current request allows another one on this connection."""
        return self._keep_alive

    def call_on_resume(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transport's write buffer has drained."""
        self._on_resume = callback

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def finish_response(self, close: bool) -> None:
        """Mark the response as sent, then close or read the next request."""
        self._busy = False
        self._completion = None
        if close or not self._keep_alive:
            self.transport.close()
            self.closed = True
            return
        # call_soon, not a direct call, so that a run of pipelined requests with
        # immediate responses does not recurse.
        self.loop.call_soon(self._process)

    def send_json(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        """Send a whole JSON response and end the exchange, keeping the connection if allowed."""
        fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        fields.extend(headers or [])
        if not self._keep_alive:
            fields.append(("Connection", "close"))
        self.transport.write(response_head(status, fields) + body)
        self.server.counters[f"status_{status}"] += 1
        self.finish_response(close=False)

    def send_error(
        self, status: int, message: str, error_type: str, code: str | None,
        param: str | None = None, headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Send an OpenAI-shaped error response, logged at DEBUG because clients cause most of them."""
        logger.debug("Responding with %d (%s): %s", status, code, message)
        self.send_json(status, error_body(message, error_type, code, param), headers)

    # Request parsing and routing

    def _process(self) -> None:
        while not self._busy and not self.closed:
            try:
                request = self._next_request()
            except HttpError as error:
                self._reject(error)
                return
            if request is None:
                if self._reading_paused:
                    self.transport.resume_reading()
                    self._reading_paused = False
                if self._peer_eof:
                    self.transport.close()
                    self.closed = True
                return
            self._dispatch(*request)

    def _next_request(self) -> tuple[RequestHead, bytes] | None:
        """Parse the next complete request from the buffer, or return None if it is incomplete."""
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise HttpError(431, f"The request head is larger than the limit of {MAX_HEAD_BYTES} bytes.")
                return None
            self._head = parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
            if self._head.headers.get("expect", "").lower() == "100-continue":
                if len(self._buffer) < self._head.content_length:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        length = self._head.content_length
        if len(self._buffer) < length:
            return None
        head, self._head = self._head, None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return head, body

    def _reject(self, error: HttpError) -> None:
        """Send an error response to a request that could not be parsed, then close,
        because the position of the next request is unknown."""
        self.server.counters["bad_requests"] += 1
        logger.debug("Rejected a malformed request with %d: %s", error.status, error.message)
        body = error_body(error.message, "invalid_request_error", "invalid_request")
        head = response_head(
            error.status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")],
        )
        self.transport.write(head + body)
        self.transport.close()
        self.closed = True

    def _dispatch(self, head: RequestHead, body: bytes) -> None:
        t0 = self.loop.time()
        self._busy = True
        self._keep_alive = head.keep_alive and not self._peer_eof
        self.server.counters["requests"] += 1
        path = head.path

        if path in _COMPLETION_PATHS:
            if head.method != "POST":
                self._method_not_allowed(head, "POST")
                return
            self._start_completion(_COMPLETION_PATHS[path], head, body, t0)
        elif path == "/v1/models":
            if head.method != "GET":
                self._method_not_allowed(head, "GET")
                return
            self.send_json(200, models_body(self.server.config.model, self.server.started_at))
        elif path == "/health":
            self.send_json(200, b"{}")
        else:
            self.send_error(
                404, f"Unknown URL: {head.method} {path[:200]}. The mock serves /v1/chat/completions, "
                "/v1/completions and /v1/models.", "invalid_request_error", "unknown_url",
            )

    def _method_not_allowed(self, head: RequestHead, allowed: str) -> None:
        self.send_error(
            405, f"Method {head.method} is not allowed on {head.path}; use {allowed}.",
            "invalid_request_error", "method_not_allowed", headers=[("Allow", allowed)],
        )

    def _start_completion(self, endpoint: str, head: RequestHead, body: bytes, t0: float) -> None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            self.server.counters["bad_requests"] += 1
            self.send_error(400, f"The request body is not valid JSON: {error}", "invalid_request_error", "invalid_json")
            return
        try:
            plan = build_plan(endpoint, data, self.server.config, self.server.fault_rng)
        except RequestError as error:
            self.server.counters["bad_requests"] += 1
            self.send_error(error.status, error.message, "invalid_request_error", error.code, error.param)
            return

        if head.version == "HTTP/1.0":
            # HTTP/1.0 clients do not understand chunked framing.
            plan = dataclasses.replace(plan, chunked=False)
        if plan.fault is not None:
            self.server.counters[f"fault_{plan.fault}"] += 1

        model = self.server.config.model
        if plan.fault == "429":
            self.send_error(
                429, f"Rate limit reached for {model}. This error was injected by the mock server.",
                "requests", "rate_limit_exceeded", headers=[("Retry-After", str(plan.retry_after_s))],
            )
            return
        if plan.fault == "500":
            self.send_error(
                500, "The server had an error while processing your request. This error was injected by the mock server.",
                "server_error", "internal_error",
            )
            return

        number = self.server.next_request_number()
        self._completion = _Completion(self, plan, t0, number, self.server.jitter_rng(number))
        self._completion.start()


class _Completion:
    """One completion response in progress, streamed or not, driven by timer callbacks.

    Content event ``k`` is due at the ``k``-th deadline of ``iter_deadlines``. A
    non-streamed response follows the same schedule without sending, so its body goes
    out at the deadline of the last token.
    """

    def __init__(self, connection: _Connection, plan: Plan, t0: float, number: int, rng: random.Random | None) -> None:
        self._connection = connection
        self._plan = plan
        self._groups = iter_token_groups(plan)
        self._deadlines = iter_deadlines(plan, t0, rng)
        self._next_token = 0
        self._scheduler = connection.server.scheduler
        self._timer: TimerHandle | None = None
        self._fault_pending = plan.fault in ("error_event", "cut", "stall")
        self._id = f"{'chatcmpl' if plan.endpoint == 'chat' else 'cmpl'}-mock-{number}"
        self._created = int(time.time())
        self._reasoning_parts: list[str] = []
        self._content_parts: list[str] = []
        self._templates: StreamTemplates | None = None
        self._writer: _BodyWriter | None = None

    def start(self) -> None:
        """Send the response head at once when streaming, then schedule the first event."""
        plan = self._plan
        if plan.stream:
            connection = self._connection
            self._templates = StreamTemplates(plan, self._id, self._created, connection.server.config.model)
            self._writer = _BodyWriter(plan.chunked, plan.gzip)
            fields = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Request-Id", self._id)]
            if plan.gzip:
                fields.append(("Content-Encoding", "gzip"))
            if plan.chunked:
                fields.append(("Transfer-Encoding", "chunked"))
                if not connection.keep_alive:
                    fields.append(("Connection", "close"))
            else:
                fields.append(("Connection", "close"))
            head = response_head(200, fields)
            prelude = self._templates.role_event()
            connection.transport.write(head + self._writer.encode(prelude) if prelude else head)
            connection.server.counters["status_200"] += 1
        self._schedule_next()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule_next(self) -> None:
        self._timer = self._scheduler.call_at(next(self._deadlines), self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        connection = self._connection
        if connection.closed:
            return
        if connection.write_paused:
            # The deadline has passed, so the event goes out as soon as the buffer drains.
            connection.call_on_resume(self._on_deadline)
            return
        try:
            self._step()
        except Exception:
            connection.server.counters["internal_errors"] += 1
            logger.exception("Failed to send the next event of %s; aborting the connection", self._id)
            connection.abort()

    def _step(self) -> None:
        plan = self._plan
        if self._fault_pending and self._next_token >= plan.fault_token:
            self._send_fault()
            return

        reasoning, first, count = next(self._groups)
        self._next_token = first + count
        text = token_text(first, count)
        last = self._next_token >= plan.completion_tokens
        ends_normally = last and not self._fault_pending

        if not plan.stream:
            (self._reasoning_parts if reasoning else self._content_parts).append(text)
            if ends_normally:
                self._send_whole_body()
            else:
                self._schedule_next()
            return

        assert self._templates is not None and self._writer is not None
        event = self._templates.content_event(reasoning, text)
        if ends_normally:
            data = self._writer.encode(event + self._templates.end_events()) + self._writer.end()
            self._connection.transport.write(data)
            self._connection.finish_response(close=not plan.chunked)
        else:
            self._connection.transport.write(self._writer.encode(event))
            self._schedule_next()

    def _send_whole_body(self) -> None:
        plan = self._plan
        connection = self._connection
        body = completion_body(
            plan, self._id, self._created, connection.server.config.model,
            "".join(self._reasoning_parts), "".join(self._content_parts),
        )
        fields = [("Content-Type", "application/json"), ("X-Request-Id", self._id)]
        if plan.gzip:
            body = gzip.compress(body, mtime=0)
            fields.append(("Content-Encoding", "gzip"))
        if plan.chunked:
            fields.append(("Content-Length", str(len(body))))
            if not connection.keep_alive:
                fields.append(("Connection", "close"))
        else:
            fields.append(("Connection", "close"))
        connection.transport.write(response_head(200, fields) + body)
        connection.server.counters["status_200"] += 1
        connection.finish_response(close=not plan.chunked)

    def _send_fault(self) -> None:
        plan = self._plan
        connection = self._connection
        logger.debug("Injecting fault %r into %s after %d tokens", plan.fault, self._id, self._next_token)
        if plan.fault == "error_event":
            message = "The server had an error while generating the response. This error was injected by the mock server."
            if plan.stream:
                assert self._templates is not None and self._writer is not None
                data = self._writer.encode(self._templates.error_events(message)) + self._writer.end()
                connection.transport.write(data)
                connection.finish_response(close=not plan.chunked)
            else:
                connection.send_error(500, message, "server_error", "internal_error")
        elif plan.fault == "cut":
            connection.finish_response(close=True)
        else:
            self._fault_pending = False
            self._timer = self._scheduler.call_at(connection.loop.time() + plan.stall_s, self._end_stall)

    def _end_stall(self) -> None:
        self._timer = None
        if not self._connection.closed:
            self._connection.finish_response(close=True)


def format_url(host: str, port: int) -> str:
    """Return the base URL, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _watch_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when standard input reaches end of file or the parent process changes.

    Only the parent has the write end of our stdin pipe open, so the kernel closes it
    when the parent dies in any way, kill -9 included. The parent-PID poll covers a stdin that
    cannot be watched, such as /dev/null.
    """
    parent = os.getppid()

    def check_parent() -> None:
        if os.getppid() != parent:
            logger.info("Parent process %d has exited; stopping", parent)
            stop.set()
        else:
            loop.call_later(_PARENT_POLL_S, check_parent)

    loop.call_later(_PARENT_POLL_S, check_parent)

    if sys.stdin is None:
        return
    fd = sys.stdin.fileno()

    def on_stdin() -> None:
        try:
            data = os.read(fd, 65536)
        except OSError as error:
            logger.info("Reading standard input failed (%s); stopping as if the parent had exited", error)
            data = b""
        if not data:
            logger.info("Standard input closed, so the parent process has exited; stopping")
            loop.remove_reader(fd)
            stop.set()

    try:
        loop.add_reader(fd, on_stdin)
    except (OSError, ValueError) as error:
        # epoll rejects regular files and some devices. The PID poll still runs.
        logger.debug("Cannot watch standard input (%s); watching the parent PID only", error)


async def serve(config: MockConfig, *, exit_with_parent: bool = False, ready_output: TextIO | None = None) -> None:
    """Run the server until SIGINT or SIGTERM, or the parent's exit with ``exit_with_parent``.

    Once listening, writes ``listening on <URL>`` as one flushed line to
    ``ready_output`` (standard output by default). Raises OSError if the address cannot
    be bound.
    """
    loop = asyncio.get_running_loop()
    server = MockServer(config)
    port = await server.start()
    url = format_url(config.host, port)

    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    if exit_with_parent:
        _watch_parent(loop, stop)

    logger.info(
        "Mock server started on %s: model %s, TTFT %g ms, ITL %g ms, %d output tokens",
        url, config.model, config.ttft_ms, config.itl_ms, config.output_tokens,
    )
    output = ready_output if ready_output is not None else sys.stdout
    print(f"listening on {url}", file=output, flush=True)

    try:
        await stop.wait()
    finally:
        await server.close()
        counts = ", ".join(f"{name} {count}" for name, count in sorted(server.counters.items())) or "no requests"
        logger.info("Mock server stopped: %s", counts)
