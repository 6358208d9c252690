"""Minimal HTTP/1.1 request parsing and response heads for the mock server.

Only what OpenAI clients send is supported: a request line, header fields and a body
delimited by Content-Length. Everything here is pure (no sockets), so the server's
protocol class stays small and the parser can be tested on bytes.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
"""Maximum size of a request line plus header fields. Larger heads get 431."""

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Maximum request body size. Larger bodies get 413."""

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request that cannot be parsed. The connection is closed after the error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RequestHead:
    """Request line and header fields. Header names are lower-cased, and a repeated
    field keeps its last value."""

    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        """Target without the query string."""
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def content_length(self) -> int:
        """Body length in bytes, validated when the head was parsed."""
        return int(self.headers.get("content-length", "0"))


def parse_head(data: bytes) -> RequestHead:
    """Parse a request head without its final blank line.

    Raises HttpError for a malformed request line or header field, an unsupported HTTP
    version, an invalid Content-Length and for a chunked request body.
    """
    # Latin-1 maps every byte to one character, so decoding cannot fail.
    text = data.decode("latin-1")

    lines = text.split("\r\n")
    # RFC 9112, section 2.2: a server SHOULD ignore empty lines before the request line.
    while lines and lines[0] == "":
        lines.pop(0)
    if not lines:
        raise HttpError(400, "The request line is missing.")

    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, f"Invalid request line {lines[0][:100]!r}.")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"HTTP version {version[:20]!r} is not supported; use HTTP/1.1.")

    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"Invalid header field {line[:100]!r}.")
        headers[name.lower()] = value.strip(" \t")

    if "transfer-encoding" in headers:
        raise HttpError(411, "Chunked request bodies are not supported; send the body with Content-Length.")
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(400, f"Invalid Content-Length {length[:40]!r}.")
        if int(length) > MAX_BODY_BYTES:
            raise HttpError(413, f"The request body of {length} bytes is larger than the limit of {MAX_BODY_BYTES} bytes.")
    return RequestHead(method=method, target=target, version=version, headers=headers)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """Return the current time in the IMF-fixdate format of the Date header, cached per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Build a status line and header fields, ending with the blank line. A Date field is added."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", f"Date: {http_date()}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
