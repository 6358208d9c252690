"""Server-Sent Events framing: byte chunks in, events out, with no network code.

Field parsing is sseclient-py's. This module feeds it whole lines that end in LF, because
sseclient-py given raw chunks gets three things wrong against the WHATWG HTML standard
("9.2 Server-sent events"). A leading byte-order mark hides the first field name. An
LF-ended line followed by a CRLF or CR blank line does not end the event. Each partial
line is re-joined with everything before it, which is quadratic for a line of hundreds
of kilobytes that arrives in many reads. Lines end at CR, LF or CRLF, also when the CR and the LF arrive in
different chunks, and bytes are decoded only after a line is whole, so a UTF-8 character
split across reads survives. Invalid UTF-8 becomes U+FFFD as the standard requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sseclient import Event, SSEClient

__all__ = ["Event", "EventDecoder"]

_BOM = b"\xef\xbb\xbf"


class _LineFeed:
    """An iterable over byte chunks that yields runs of whole lines, each ending in LF.

    ``exhausted`` turns True once the source has ended, before the unterminated tail (if
    any) is handed on, so a reader can tell that an event came from that tail.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.exhausted = False

    def __iter__(self) -> Iterator[bytes]:
        partial: list[bytes] = []  # bytes after the last line end, in arrival order
        after_cr = False  # the previous chunk ended with CR, so a leading LF belongs to it
        head: bytes | None = b""  # the first bytes, held until a byte-order mark is ruled out
        for chunk in self._chunks:
            if not chunk:
                continue
            if head is not None:
                head += chunk
                if len(head) < len(_BOM) and _BOM.startswith(head):
                    continue
                chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
                head = None
            if after_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            after_cr = chunk.endswith(b"\r")
            if not chunk:
                continue
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            last_end = chunk.rfind(b"\n")
            if last_end < 0:
                partial.append(chunk)
                continue
            lines = b"".join(partial) + chunk[: last_end + 1] if partial else chunk[: last_end + 1]
            partial = [chunk[last_end + 1 :]] if last_end + 1 < len(chunk) else []
            yield _valid_utf8(lines)
        self.exhausted = True
        if head:
            partial.insert(0, head[len(_BOM) :] if head.startswith(_BOM) else head)
        if partial:
            # sseclient-py hands on an unterminated final event at the end of input;
            # the reader decides what it is worth (see EventDecoder.unterminated).
            yield _valid_utf8(b"".join(partial) + b"\n")


def _valid_utf8(lines: bytes) -> bytes:
    if lines.isascii():
        return lines
    return lines.decode("utf-8", "replace").encode("utf-8")


class EventDecoder:
    """Decode an iterable of byte chunks into SSE events as each event completes.

    Iterating yields ``sseclient.Event`` objects (``event``, ``data``, ``id``, ``retry``) as
    soon as the blank line that ends them has been read, so a caller can stamp each one
    with its arrival time. Comments and events without a ``data`` field are skipped; an
    event with an empty ``data`` field is yielded with ``data == ""``.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._lines = _LineFeed(chunks)
        self._client = SSEClient(self._lines)

    def __iter__(self) -> Iterator[Event]:
        # NOTE: sseclient-py still appends the lines of one event one by one, so an event
        # of tens of thousands of lines decodes in time quadratic in its line count.
        for event in self._client.events():
            # The standard ignores an id with a NUL and a retry that is not all digits.
            if event.id is not None and "\x00" in event.id:
                event.id = None
            if event.retry is not None and not event.retry.isdigit():
                event.retry = None
            yield event

    @property
    def unterminated(self) -> bool:
        """True while handling an event that the input ended before its blank line.

        The standard says to discard such an event; a load tester still wants a final
        ``data: [DONE]`` that lacks only its blank line, so the caller decides.
        """
        return self._lines.exhausted
