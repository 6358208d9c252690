"""Tests of EventDecoder against the WHATWG HTML "Server-sent events" parsing rules.

Most cases are fed whole, one byte at a time and split at every point, because the
decoder must give the same events however the bytes arrive.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator

import pytest

from locust_llm_sse._sse import EventDecoder

BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes]) -> list[tuple[str, str]]:
    return [(event.event, event.data) for event in EventDecoder(chunks)]


def split_at(raw: bytes, points: Iterable[int]) -> list[bytes]:
    bounds = [0, *points, len(raw)]
    return [raw[start:end] for start, end in zip(bounds, bounds[1:])]


def byte_chunks(raw: bytes) -> Iterator[bytes]:
    return (raw[i : i + 1] for i in range(len(raw)))


def assert_same_for_all_splits(raw: bytes, expected: list[tuple[str, str]]) -> None:
    """Check the events for ``raw`` fed whole, byte by byte, and in two and three pieces."""
    assert decode([raw]) == expected
    assert decode(byte_chunks(raw)) == expected
    for first in range(1, len(raw)):
        assert decode(split_at(raw, [first])) == expected, f"split at {first}"
    for first in range(1, len(raw)):
        for second in range(first + 1, len(raw)):
            assert decode(split_at(raw, [first, second])) == expected, f"split at {first} and {second}"


# -- line ends and fields -------------------------------------------------------------

FRAMING_CASES = {
    "lf": (b"data: a\n\ndata: b\n\n", [("message", "a"), ("message", "b")]),
    "crlf": (b"data: a\r\n\r\ndata: b\r\n\r\n", [("message", "a"), ("message", "b")]),
    "cr": (b"data: a\r\rdata: b\r\r", [("message", "a"), ("message", "b")]),
    "lf line then crlf blank line": (b"data: a\n\r\ndata: b\n\n", [("message", "a"), ("message", "b")]),
    "lf line then cr blank line": (b"data: a\n\rdata: b\n\n", [("message", "a"), ("message", "b")]),
    "cr line then crlf blank line": (b"data: a\r\r\ndata: b\r\n\r\n", [("message", "a"), ("message", "b")]),
    "crlf line then lf blank line": (b"data: a\r\n\ndata: b\n\n", [("message", "a"), ("message", "b")]),
    "mixed line ends in one event": (b"data: a\rdata: b\r\ndata: c\n\n", [("message", "a\nb\nc")]),
    "multi-line data": (b"data: one\ndata: two\ndata: three\n\n", [("message", "one\ntwo\nthree")]),
    "data without space": (b"data:a\n\n", [("message", "a")]),
    "only one leading space removed": (b"data:  a\n\n", [("message", " a")]),
    "leading tab kept": (b"data:\ta\n\n", [("message", "\ta")]),
    "colon inside value": (b"data: a: b\n\n", [("message", "a: b")]),
    "comments ignored": (b": open\ndata: a\n: mid\ndata: b\n\n", [("message", "a\nb")]),
    "comment-only block": (b": keep-alive\n\ndata: a\n\n", [("message", "a")]),
    "event field": (b"event: delta\ndata: a\n\n", [("delta", "a")]),
    "event type resets": (b"event: x\ndata: a\n\ndata: b\n\n", [("x", "a"), ("message", "b")]),
    "empty event field": (b"event:\ndata: a\n\n", [("message", "a")]),
    "empty data field": (b"data:\n\n", [("message", "")]),
    "data without colon": (b"data\n\n", [("message", "")]),
    "empty data lines": (b"data:\ndata:\n\n", [("message", "\n")]),
    "event without data": (b"event: ping\n\n", []),
    "event without data then data": (b"event: ping\n\ndata: a\n\n", [("message", "a")]),
    "unknown field ignored": (b"foo: bar\ndata: a\n\n", [("message", "a")]),
    "field names are case-sensitive": (b"Data: a\n\ndata: b\n\n", [("message", "b")]),
    "space before field name": (b" data: a\n\n", []),
    "extra blank lines": (b"\n\ndata: a\n\n\n\n", [("message", "a")]),
}


@pytest.mark.parametrize(("raw", "expected"), FRAMING_CASES.values(), ids=FRAMING_CASES.keys())
def test_framing_any_split(raw: bytes, expected: list[tuple[str, str]]) -> None:
    assert_same_for_all_splits(raw, expected)


def test_cr_lf_split_across_chunks() -> None:
    # The LF that starts the second chunk completes the CR, so it is not a blank line.
    assert decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [("message", "a\nb")]


def test_id_and_retry_fields() -> None:
    events = list(EventDecoder([b"id: 7\nretry: 3000\nevent: delta\ndata: a\n\n"]))

    assert len(events) == 1
    assert events[0].id == "7"
    assert str(events[0].retry) == "3000"
    assert events[0].event == "delta"
    assert events[0].data == "a"


def test_id_with_null_ignored() -> None:
    events = list(EventDecoder([b"id: a\x00b\ndata: x\n\n"]))

    assert len(events) == 1
    assert events[0].id in (None, "")


def test_retry_not_digits_ignored() -> None:
    events = list(EventDecoder([b"retry: soon\ndata: x\n\n"]))

    assert len(events) == 1
    assert events[0].retry is None


# -- empty chunks ---------------------------------------------------------------------


def test_empty_chunks_change_nothing() -> None:
    chunks = [b"", b"\xef", b"", b"\xbb\xbf", b"", b"data: a\n", b"", b"\n", b"", b"data: b\r\n", b"", b"\r\n", b""]

    assert decode(chunks) == [("message", "a"), ("message", "b")]


def test_empty_chunk_between_cr_and_lf() -> None:
    assert decode([b"data: a\r", b"", b"\ndata: b\n\n"]) == [("message", "a\nb")]


# -- byte-order mark ------------------------------------------------------------------


def test_leading_bom_dropped_any_split() -> None:
    assert_same_for_all_splits(BOM + b"data: a\n\ndata: b\n\n", [("message", "a"), ("message", "b")])


@pytest.mark.parametrize(
    "chunks",
    [
        [b"\xef", b"\xbb\xbfdata: a\n\n"],
        [b"\xef\xbb", b"\xbfdata: a\n\n"],
        [b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"],
        [BOM, b"data: a\n\n"],
    ],
    ids=["1+rest", "2+rest", "1+1+1+rest", "bom alone"],
)
def test_leading_bom_split_over_chunks(chunks: list[bytes]) -> None:
    assert decode(chunks) == [("message", "a")]


def test_second_leading_bom_kept() -> None:
    # Only one BOM is removed, so the second one makes "\ufeffdata" an unknown field name.
    raw = BOM + BOM + b"data: 1\n\ndata: 2\n\n"

    assert_same_for_all_splits(raw, [("message", "2")])


def test_later_bom_not_removed() -> None:
    raw = b"data: 1\n\n" + BOM + b"data: 2\n\ndata: 3\n\n"

    assert_same_for_all_splits(raw, [("message", "1"), ("message", "3")])
    assert decode([b"data: 1\n\n", BOM + b"data: 2\n\n", b"data: 3\n\n"]) == [("message", "1"), ("message", "3")]


def test_bom_inside_value_kept() -> None:
    assert_same_for_all_splits(b"data: " + BOM + b"x\n\n", [("message", "\ufeffx")])


# -- UTF-8 ----------------------------------------------------------------------------


def test_multibyte_characters_any_split() -> None:
    # Two-, three- and four-byte characters, in the data and in the event name.
    raw = "event: d\u00e9lta\ndata: h\u00e9llo \u65e5\u672c \U0001f389 \u00fc\n\n".encode()

    assert_same_for_all_splits(raw, [("d\u00e9lta", "h\u00e9llo \u65e5\u672c \U0001f389 \u00fc")])


INVALID_UTF8_CASES = {
    "stray continuation byte": (b"data: a\xffb\n\n", "a\ufffdb"),
    "truncated sequence before lf": (b"data: \xe6\x97\n\n", "\ufffd"),
    "truncated sequence before cr": (b"data: \xc3\r\r", "\ufffd"),
    "surrogate": (b"data: \xed\xa0\x80\n\n", "\ufffd\ufffd\ufffd"),
    "overlong slash": (b"data: \xc0\xaf\n\n", "\ufffd\ufffd"),
    "truncated then ascii": (b"data: \xe2\x82x\n\n", "\ufffdx"),
}


@pytest.mark.parametrize(("raw", "expected_data"), INVALID_UTF8_CASES.values(), ids=INVALID_UTF8_CASES.keys())
def test_invalid_utf8_replaced(raw: bytes, expected_data: str) -> None:
    assert_same_for_all_splits(raw, [("message", expected_data)])


# -- unterminated tail ----------------------------------------------------------------


def decode_with_tail_flag(chunks: Iterable[bytes]) -> list[tuple[str, bool]]:
    decoder = EventDecoder(chunks)
    return [(event.data, decoder.unterminated) for event in decoder]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"data: a\n\n"], [("a", False)]),
        ([b"data: a\n\ndata: b"], [("a", False), ("b", True)]),
        ([b"data: a\n\n", b"data: b\n"], [("a", False), ("b", True)]),
        ([b"data: a\n\ndata: b\r"], [("a", False), ("b", True)]),
        ([b"data: [DONE]\n"], [("[DONE]", True)]),
        ([b"data: a\n\n", b"data: b\n\n"], [("a", False), ("b", False)]),
        ([b"data: a\n\n", b": comment"], [("a", False)]),
    ],
    ids=["terminated", "tail without line end", "tail without blank line", "tail ends in cr", "done", "two", "comment"],
)
def test_unterminated_flags_tail_only(chunks: list[bytes], expected: list[tuple[str, bool]]) -> None:
    assert decode_with_tail_flag(chunks) == expected


# -- timing of events -----------------------------------------------------------------


def test_events_yielded_when_blank_line_read() -> None:
    chunks = [
        b"data: a\n",
        b"\n",
        b"data: b\r\n",
        b"\r\n",
        b": ping\n\n",
        b"data: c\r",
        b"\r",  # A lone CR ends the line, so the event need not wait for the next byte.
        b"data: d\n\ndata: e\n\n",
        b"data: f",
    ]
    consumed = [0]

    def feed() -> Iterator[bytes]:
        for chunk in chunks:
            consumed[0] += 1
            yield chunk

    arrivals = [(event.data, consumed[0]) for event in EventDecoder(feed())]

    assert arrivals == [("a", 2), ("b", 4), ("c", 7), ("d", 8), ("e", 8), ("f", 9)]


# -- large events ---------------------------------------------------------------------


def chunked(raw: bytes, size: int) -> Iterator[bytes]:
    return (raw[i : i + size] for i in range(0, len(raw), size))


@pytest.mark.parametrize("chunk_size", [None, 1000, 1], ids=["whole", "1000 bytes", "1 byte"])
def test_500kb_single_line_event(chunk_size: int | None) -> None:
    value = "".join(chr(ord("a") + i % 26) for i in range(500_000)) + "\u00e9"
    raw = b"data: " + value.encode() + b"\r\n\r\ndata: next\n\n"
    chunks = [raw] if chunk_size is None else chunked(raw, chunk_size)

    events = decode(chunks)

    assert len(events) == 2
    assert events[0][1] == value
    assert events[1] == ("message", "next")


@pytest.mark.parametrize("chunk_size", [None, 1000], ids=["whole", "1000 bytes"])
def test_500kb_multi_line_event(chunk_size: int | None) -> None:
    # NOTE: sseclient-py 1.9 appends each line to the event one at a time, so the time grows
    # with the square of the line count. 20,000 lines take a fraction of a second, but a few
    # hundred thousand short lines take seconds.
    lines = [f"line {i:06d} " + "x" * 12 for i in range(20_000)]
    raw = b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"
    chunks = [raw] if chunk_size is None else chunked(raw, chunk_size)

    events = decode(chunks)

    assert len(raw) > 500_000
    assert events == [("message", "\n".join(lines))]


# -- comparison with a direct reading of the standard ---------------------------------


def reference_events(raw: bytes) -> list[tuple[str, str]]:
    """Parse ``raw`` as the WHATWG standard describes, plus the unterminated tail event.

    The whole input is decoded first (one leading BOM dropped, invalid UTF-8 replaced),
    then split into lines at CRLF, CR or LF. Only ``data`` and ``event`` are interpreted.
    """
    text = raw.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split("\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()
    events: list[tuple[str, str]] = []
    data: str | None = None
    event_type = ""
    for line in [*lines, ""]:  # The extra blank line dispatches the unterminated tail.
        if line == "":
            if data is not None:
                events.append((event_type or "message", data.removesuffix("\n")))
            data = None
            event_type = ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data = (data or "") + value + "\n"
        elif name == "event":
            event_type = value
    return events


FUZZ_PIECES = [
    b"data", b"data:", b"data: ", b"event: e", b"event", b"id: 1", b":", b" ", b"\t", b"x", b"y",
    b"\r", b"\n", b"\r\n", BOM, b"\xc3\xa9", b"\xe2\x82", b"\xac", b"\xff", b"\xc2\x85", b"\xe2\x80\xa8",
    b"\x0b", b"\x0c", b"\x1c", b"\x00",
]  # fmt: skip


def test_random_inputs_match_reference() -> None:
    generator = random.Random(20240601)
    for _ in range(3000):
        raw = b"".join(generator.choice(FUZZ_PIECES) for _ in range(generator.randint(0, 16)))
        points = sorted(set(generator.randint(1, max(len(raw) - 1, 1)) for _ in range(generator.randint(0, 4))))
        chunks = split_at(raw, [point for point in points if 0 < point < len(raw)])

        assert decode(chunks) == reference_events(raw), (raw, chunks)
