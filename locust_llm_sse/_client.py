"""The streaming client: POST a request, read its Server-Sent Events, fire three Locust events.

Each request fires Locust ``request`` events for up to three phases, in order and each at
most once. Connect (type ``1 conn``) runs from sending the request to the response
headers, first token (``2 ttft``) to the first event that carries output, and completion
(``3 e2e``) to the end of the stream. A phase that fails is fired as a failure and the later phases are not
fired, so the three rows of a request name read as a funnel. Durations come from
``time.perf_counter``, and ``start_time`` is the wall clock.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import locust  # noqa: F401 - gevent must patch the socket module before requests loads
import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from locust_llm_sse._events import llm_request_hook
from locust_llm_sse._protocol import KIND_MALFORMED, StreamEnd, StreamParser, describe_error
from locust_llm_sse._result import PHASE_COMPLETION, PHASE_CONNECT, PHASE_FIRST_TOKEN, StreamResult
from locust_llm_sse._sse import EventDecoder
from locust_llm_sse._url import join_url, validate_base_url

logger = logging.getLogger(__name__)

#: The Locust ``request_type`` (the Type column) of each phase: connect, time to first
#: token, end-to-end. Locust sorts rows by name, then type, so the digits keep the rows of
#: one request name in funnel order. Locust's console table fits 8 characters of type.
PHASE_REQUEST_TYPES = {
    PHASE_CONNECT: "1 conn",
    PHASE_FIRST_TOKEN: "2 ttft",
    PHASE_COMPLETION: "3 e2e",
}

KIND_CONNECT_TIMEOUT = "connect_timeout"
KIND_CONNECTION_ERROR = "connection_error"
KIND_HEADERS_TIMEOUT = "headers_timeout"
KIND_REDIRECT = "redirect"
KIND_NOT_EVENT_STREAM = "not_an_event_stream"
KIND_FIRST_TOKEN_TIMEOUT = "first_token_timeout"
KIND_INTER_TOKEN_TIMEOUT = "inter_token_timeout"
KIND_TRUNCATED = "truncated_stream"
KIND_UNDECODABLE = "undecodable_body"
KIND_INTERNAL = "client_error"

_READ_SIZE = 65536
_ERROR_BODY_LIMIT = 65536
_ERROR_BODY_TIMEOUT_S = 5.0
_DRAIN_TIMEOUT_S = 0.2


StopCondition = Callable[[StreamResult], bool]
"""A caller's test, run after every output event, that ends the read early when True."""


class LLMStreamError(Exception):
    """A failed phase of a streamed request; Locust shows and groups it by its message."""

    def __init__(self, message: str, kind: str, phase: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.phase = phase


class LLMClient:
    """A requests-based client that streams LLM responses and reports them to Locust.

    Transport errors, HTTP errors and broken streams never raise into task code: they are
    recorded as failures and returned in the ``StreamResult``. When Locust stops the user
    mid-stream, the response is closed, no failure is recorded and the stop goes on.
    """

    def __init__(
        self,
        base_url: str,
        *,
        environment: Any = None,
        user: Any = None,
        model: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        chat_path: str = "/v1/chat/completions",
        completions_path: str = "/v1/completions",
        connect_timeout: float = 10.0,
        first_token_timeout: float = 60.0,
        inter_token_timeout: float = 30.0,
        include_usage: bool = True,
        require_finish_reason: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        self.environment = environment
        self.user = user
        self.model = model
        self.headers = dict(headers or {})
        self.extra_body = dict(extra_body or {})
        self.chat_path = chat_path
        self.completions_path = completions_path
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.first_token_timeout = _positive("first_token_timeout", first_token_timeout)
        self.inter_token_timeout = _positive("inter_token_timeout", inter_token_timeout)
        self.include_usage = include_usage
        self.require_finish_reason = require_finish_reason
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxy or .netrc surprises in a load test
        self._api_key = api_key
        _warm_up_resolver(self.base_url)

    # -- public API -----------------------------------------------------------------------

    def chat(
        self,
        prompt: str | list[dict[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        name: str | None = None,
        stop_when: StopCondition | None = None,
        **body: Any,
    ) -> StreamResult:
        """Stream a chat completion for a prompt string or an OpenAI ``messages`` list.

        Extra keyword arguments are added to the request body (``temperature=0``,
        ``tools=[...]``, ...). ``name`` groups the Locust rows, as Locust's own ``name=`` does;
        the default is the URL path. ``stop_when`` is called with the result after every
        output event. When it returns True, the client stops reading, closes the connection
        and records a success with ``stopped_early`` set.
        """
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        request_body: dict[str, Any] = {"messages": messages}
        return self._post_openai(self.chat_path, request_body, model, max_tokens, name, stop_when, body)

    def completion(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        name: str | None = None,
        stop_when: StopCondition | None = None,
        **body: Any,
    ) -> StreamResult:
        """Stream a legacy text completion (``/v1/completions``) for ``prompt``; arguments as for ``chat``."""
        return self._post_openai(self.completions_path, {"prompt": prompt}, model, max_tokens, name, stop_when, body)

    def stream(
        self,
        path: str,
        body: dict[str, Any],
        *,
        name: str | None = None,
        stop_when: StopCondition | None = None,
    ) -> StreamResult:
        """POST ``body`` as JSON to ``path`` (joined to the base URL) and read the event stream.

        For APIs other than OpenAI's chat and completions, e.g. Anthropic's ``/v1/messages``
        or OpenAI's ``/v1/responses``; ``"stream": true`` is added unless ``body`` sets it.
        """
        url = join_url(self.base_url, path)
        return self._request(url, {"stream": True, **body}, name or urlsplit(url).path, stop_when)

    # -- request --------------------------------------------------------------------------

    def _post_openai(
        self,
        path: str,
        body: dict[str, Any],
        model: str | None,
        max_tokens: int | None,
        name: str | None,
        stop_when: StopCondition | None,
        extra: dict[str, Any],
    ) -> StreamResult:
        model = model or self.model
        request_body: dict[str, Any] = {}
        if model:
            request_body["model"] = model
        request_body.update(body)
        request_body["stream"] = True
        if self.include_usage:
            request_body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            request_body["max_tokens"] = max_tokens
        request_body.update(self.extra_body)
        request_body.update(extra)
        url = join_url(self.base_url, path)
        return self._request(url, request_body, name or urlsplit(url).path, stop_when)

    def _request_headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Compressed events would be held back by the compressor; ask for none.
            "Accept-Encoding": "identity",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(self.headers)
        return headers

    def _request(self, url: str, body: dict[str, Any], name: str, stop_when: StopCondition | None) -> StreamResult:
        result = StreamResult(name=name, url=url)
        payload = json.dumps(body).encode("utf-8")
        headers = self._request_headers()
        response: requests.Response | None = None
        reusable = False
        try:
            result.start_time = time.time()
            result.request_sent_at = time.perf_counter()
            response = self._connect(url, payload, headers, result)
            if response is not None:
                reusable = self._read_stream(response, result, stop_when)
        except BaseException as error:  # noqa: BLE001 - the stop of a user must close the stream
            if isinstance(error, Exception):
                logger.exception("Unexpected error while streaming %s", name)
                self._fail(result, _current_phase(result), KIND_INTERNAL, f"unexpected client error: {type(error).__name__}")
            else:
                # GreenletExit, KeyboardInterrupt: Locust is stopping this user. The cut is
                # not the server's fault, so no phase event is fired for it.
                result.stopped = True
                result.end_at = time.perf_counter()
                self._close(response, reusable=False)
                response = None
                self._fire_result(result)
                raise
        finally:
            self._close(response, reusable)
        self._fire_result(result)
        return result

    def _connect(
        self, url: str, payload: bytes, headers: dict[str, str], result: StreamResult
    ) -> requests.Response | None:
        """Send the request and check the status; return the response, or None after a failure."""
        try:
            response = self.session.post(
                url,
                data=payload,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(self.connect_timeout, self.first_token_timeout),
            )
        except requests.exceptions.ConnectTimeout:
            self._fail(result, PHASE_CONNECT, KIND_CONNECT_TIMEOUT, f"connect timed out after {self.connect_timeout:g} s")
            return None
        except requests.exceptions.ReadTimeout:
            self._fail(
                result,
                PHASE_CONNECT,
                KIND_HEADERS_TIMEOUT,
                f"no response headers within the first-token timeout of {self.first_token_timeout:g} s",
            )
            return None
        except requests.exceptions.ConnectionError as error:
            self._fail(result, PHASE_CONNECT, KIND_CONNECTION_ERROR, _describe_connection_error(error, self.base_url))
            return None

        result.headers_received_at = time.perf_counter()
        result.status_code = response.status_code
        result.content_type = response.headers.get("Content-Type")
        if response.status_code >= 300:
            self._fail_status(response, result)
            response.close()
            return None
        self._fire_phase(result, PHASE_CONNECT, result.connect_ms, 0)

        media_type = (result.content_type or "").split(";")[0].strip().lower()
        if media_type != "text/event-stream":
            self._read_non_stream_body(response, result)
            self._fail(
                result,
                PHASE_FIRST_TOKEN,
                KIND_NOT_EVENT_STREAM,
                f"response is not an event stream: Content-Type {media_type or 'missing'}; "
                "the server ignored stream=true or the path is wrong",
            )
            response.close()
            return None

        encodings = [part.strip().lower() for part in response.headers.get("Content-Encoding", "").split(",")]
        unknown = [part for part in encodings if part and part != "identity" and part not in response.raw.CONTENT_DECODERS]
        if unknown:
            self._fail(
                result,
                PHASE_FIRST_TOKEN,
                KIND_UNDECODABLE,
                f"response has Content-Encoding {', '.join(unknown)}, which this client cannot decode: "
                "install its decoder (brotli, zstandard) or make the server honour Accept-Encoding: identity",
            )
            response.close()
            return None
        return response

    def _fail_status(self, response: requests.Response, result: StreamResult) -> None:
        status = response.status_code
        result.end_at = result.headers_received_at  # the phase ends at the headers; the body only explains
        result.retry_after_s = _parse_retry_after(response.headers.get("Retry-After"))
        if status < 400:
            location = response.headers.get("Location", "")
            message = f"HTTP {status} redirect to {location or 'an unknown location'}: use that URL as the host"
            self._fail(result, PHASE_CONNECT, KIND_REDIRECT, message)
            return
        body = _read_bounded(response, result)
        detail = ""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("error"):
            detail = describe_error(parsed["error"])
        elif isinstance(parsed, dict) and (parsed.get("message") or parsed.get("detail")):
            detail = describe_error(parsed)
        message = f"HTTP {status} {detail}" if detail else f"HTTP {status} {response.reason or ''}".rstrip()
        self._fail(result, PHASE_CONNECT, f"http_status_{status}", message)

    def _read_non_stream_body(self, response: requests.Response, result: StreamResult) -> None:
        """Copy the text and usage of a non-streamed JSON response into the result, for the caller to inspect."""
        body = _read_bounded(response, result)
        try:
            parsed = json.loads(body)
        except ValueError:
            return
        if not isinstance(parsed, dict):
            return
        for choice in parsed.get("choices") or ():
            if isinstance(choice, dict):
                message = choice.get("message") or {}
                result.text += message.get("content") or choice.get("text") or ""
                result.finish_reason = choice.get("finish_reason") or result.finish_reason
        usage = parsed.get("usage")
        if isinstance(usage, dict):
            result.usage = usage
            if isinstance(usage.get("prompt_tokens"), int):
                result.input_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                result.output_tokens = usage["completion_tokens"]
                result.tokens_estimated = False

    # -- stream ---------------------------------------------------------------------------

    def _read_stream(self, response: requests.Response, result: StreamResult, stop_when: StopCondition | None) -> bool:
        """Read events until the stream ends; return whether the connection can be reused."""
        decoder = EventDecoder(self._read_chunks(response, result))
        parser = StreamParser(result, require_finish_reason=self.require_finish_reason)
        end: StreamEnd | None = None
        clean_eof = False

        try:
            for event in decoder:
                now = time.perf_counter()
                output_events = len(result.output_event_times)
                end = parser.handle(event, now, unterminated=decoder.unterminated)
                if output_events == 0 and result.first_token_at is not None:
                    self._fire_phase(result, PHASE_FIRST_TOKEN, result.ttft_ms, result.response_length)
                if end is not None:
                    break
                if stop_when is not None and len(result.output_event_times) > output_events and stop_when(result):
                    result.stopped_early = True
                    end = StreamEnd(True)
                    break
            else:
                clean_eof = True
        except ReadTimeoutError:
            if result.first_token_at is None:
                end = StreamEnd(False, KIND_FIRST_TOKEN_TIMEOUT, f"first token timed out after {self.first_token_timeout:g} s")
            else:
                end = StreamEnd(
                    False, KIND_INTER_TOKEN_TIMEOUT, f"inter-token timeout: no data for {self.inter_token_timeout:g} s"
                )
        except DecodeError:
            encoding = response.headers.get("Content-Encoding", "")
            end = StreamEnd(False, KIND_UNDECODABLE, f"stream body could not be decoded as Content-Encoding {encoding}")
        except (ProtocolError, requests.exceptions.ConnectionError, OSError):
            logger.debug("Stream of %s broke off", result.name, exc_info=True)
            end = StreamEnd(False, KIND_TRUNCATED, "stream cut off before its end")

        now = time.perf_counter()
        if end is None:
            end = parser.finish_at_eof()
        parser.settle_token_counts()
        result.end_at = now
        if result.warnings:
            logger.debug("Stream of %s: %s", result.name, "; ".join(result.warnings))

        if end.ok:
            result.ok = True
            self._fire_phase(result, PHASE_COMPLETION, result.completion_ms, result.response_length)
            if result.stopped_early:
                return False  # unread bytes are left on the connection, so it must not be reused
            return clean_eof or self._drain(response)

        if end.kind == KIND_TRUNCATED and result.first_token_at is None:
            end = StreamEnd(False, KIND_TRUNCATED, "stream cut off before the first token")
        if end.kind == KIND_MALFORMED:
            _log_malformed_event(result.name, end.detail)
        self._fail(result, _current_phase(result), end.kind or KIND_TRUNCATED, end.message or "stream failed")
        return False

    def _read_chunks(self, response: requests.Response, result: StreamResult) -> Iterator[bytes]:
        """Yield body bytes as they arrive, whatever the framing, decoding gzip if sent.

        ``read1`` returns what the connection has instead of waiting for a fixed size to
        fill. Before each read, the socket timeout is set to what is left of the first-token
        deadline, or to the inter-token timeout once output has arrived.
        """
        raw = response.raw
        sock = _socket_of(raw)
        while True:
            if sock is not None:
                if result.first_token_at is None:
                    remaining = result.request_sent_at + self.first_token_timeout - time.perf_counter()
                    if remaining <= 0:
                        raise ReadTimeoutError(None, None, "first-token deadline passed")  # type: ignore[arg-type]
                    sock.settimeout(remaining)
                else:
                    sock.settimeout(self.inter_token_timeout)
            chunk = raw.read1(_READ_SIZE, decode_content=True)
            if not chunk:
                return
            result.response_length += len(chunk)
            yield chunk

    def _drain(self, response: requests.Response) -> bool:
        """Read what follows the end event (e.g. the last empty chunk) so the connection can be reused."""
        raw = response.raw
        sock = _socket_of(raw)
        try:
            if sock is not None:
                sock.settimeout(_DRAIN_TIMEOUT_S)
            for _ in range(16):
                if not raw.read1(_READ_SIZE, decode_content=True):
                    return True
        except (ProtocolError, ReadTimeoutError, requests.exceptions.ConnectionError, OSError):
            pass
        return False

    def _close(self, response: requests.Response | None, reusable: bool) -> None:
        if response is None:
            return
        try:
            if reusable:
                response.raw.release_conn()
            response.close()
        except Exception:  # noqa: BLE001 - closing must never mask the outcome
            logger.debug("Closing the response failed", exc_info=True)

    # -- Locust events --------------------------------------------------------------------

    def _fail(self, result: StreamResult, phase: str, kind: str, message: str) -> None:
        result.ok = False
        result.failed_phase = phase
        result.error_kind = kind
        result.error = message
        if result.end_at is None:
            result.end_at = time.perf_counter()
        elapsed_ms = (result.end_at - result.request_sent_at) * 1000.0
        error = LLMStreamError(message, kind, phase)
        self._fire_phase(result, phase, elapsed_ms, result.response_length, error)

    def _fire_phase(
        self,
        result: StreamResult,
        phase: str,
        response_time_ms: float | None,
        response_length: int,
        exception: Exception | None = None,
    ) -> None:
        if self.environment is None:
            return
        context = self.user.context() if self.user is not None else {}
        self.environment.events.request.fire(
            request_type=PHASE_REQUEST_TYPES[phase],
            name=result.name,
            response_time=response_time_ms or 0.0,
            response_length=response_length,
            response=None,
            context=context,
            exception=exception,
            start_time=result.start_time,
            url=result.url,
        )

    def _fire_result(self, result: StreamResult) -> None:
        if self.environment is None:
            return
        llm_request_hook(self.environment.events).fire(result=result, user=self.user, environment=self.environment)


_malformed_events_logged = 0
_MAX_MALFORMED_EVENT_LOGS = 3


def _log_malformed_event(name: str, data: str | None) -> None:
    """Log the data of the first few malformed events (the failure message omits it to stay stable)."""
    global _malformed_events_logged
    _malformed_events_logged += 1
    if _malformed_events_logged <= _MAX_MALFORMED_EVENT_LOGS:
        logger.warning(
            "Malformed stream event in %s, data %r%s", name, (data or "")[:200],
            "; later ones are logged at DEBUG" if _malformed_events_logged == _MAX_MALFORMED_EVENT_LOGS else "",
        )
    else:
        logger.debug("Malformed stream event in %s, data %r", name, (data or "")[:200])


def _current_phase(result: StreamResult) -> str:
    if result.headers_received_at is None:
        return PHASE_CONNECT
    if result.first_token_at is None:
        return PHASE_FIRST_TOKEN
    return PHASE_COMPLETION


def _warm_up_resolver(base_url: str) -> None:
    """Resolve the host once, so the first request does not pay for starting gevent's resolver.

    Under gevent the first ``getaddrinfo`` starts a thread pool, which took about 20 ms on
    the first request of a process and would have been counted in its connect time.
    """
    parts = urlsplit(base_url)
    try:
        socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        pass  # the request will fail at connect with the reason


def _positive(option: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"invalid {option} {value!r}: expected a finite number of seconds greater than 0")
    return float(value)


def _socket_of(raw: Any) -> socket.socket | None:
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


def _read_bounded(response: requests.Response, result: StreamResult) -> bytes:
    """Read at most 64 KiB of a body that is not an event stream, waiting at most 5 s per read."""
    sock = _socket_of(response.raw)
    try:
        if sock is not None:
            sock.settimeout(_ERROR_BODY_TIMEOUT_S)
        body = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True) or b""
    except (ProtocolError, ReadTimeoutError, requests.exceptions.ConnectionError, OSError):
        return b""
    result.response_length += len(body)
    return body


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def _describe_connection_error(error: requests.exceptions.ConnectionError, base_url: str) -> str:
    """Name the cause in stable words; the host is constant within a run, so grouping holds."""
    text = str(error)
    host = urlsplit(base_url).netloc
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS handshake with {host} failed: check the scheme (http or https) of the host"
    if "Connection refused" in text or "Errno 111" in text:
        return f"connection refused by {host}: is the server running there?"
    if "Name or service not known" in text or "getaddrinfo" in text or "NameResolution" in text:
        return f"host name of {host} could not be resolved: check the host"
    if "Connection reset" in text or "RemoteDisconnected" in text or "aborted" in text:
        return f"connection to {host} closed before the response headers"
    return f"connection to {host} failed"
