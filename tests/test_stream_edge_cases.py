"""Streams beyond the recorded cases, through LLMClient and the replay server: encodings, bad events, size, framing."""

from __future__ import annotations

import logging

import pytest

from locust_llm_sse import LLMClient


def test_unknown_content_encoding_fails_first_token(replay_url: str) -> None:
    result = LLMClient(f"{replay_url}/X01").chat("hi")

    assert not result.ok
    assert result.failed_phase == "first_token"
    assert result.error_kind == "undecodable_body"
    assert result.error.startswith("response has Content-Encoding compress, which this client cannot decode")


def test_corrupt_gzip_fails_with_decode_error(replay_url: str) -> None:
    result = LLMClient(f"{replay_url}/X02").chat("hi")

    assert not result.ok
    assert result.failed_phase == "first_token"
    assert result.error_kind == "undecodable_body"
    assert result.error == "stream body could not be decoded as Content-Encoding gzip"


def test_non_json_event_fails_and_logs_data(replay_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="locust_llm_sse._client"):
        result = LLMClient(f"{replay_url}/X03").chat("hi")

    assert not result.ok
    assert result.failed_phase == "completion"
    assert result.error == "malformed stream event: data is not JSON"
    assert result.text == "Hi"
    assert result.output_tokens == 1
    assert "{not json at all" in caplog.text


def test_event_of_300_kb_in_small_reads(replay_url: str) -> None:
    result = LLMClient(f"{replay_url}/X04").chat("hi")

    assert result.ok, result.error
    assert result.text == "x" * 300_000
    assert result.output_tokens == 1
    # The event is complete only when its last 1000-byte read arrives, sent at 60 ms.
    assert 60 - 2 <= result.ttft_ms <= 60 + 30


def test_bom_mixed_line_ends_multiline_data(replay_url: str) -> None:
    result = LLMClient(f"{replay_url}/X05").chat("hi")

    assert result.ok, result.error
    assert result.text == "AB"
    assert result.finish_reason == "stop"
    # The read at 30 ms ends the data line with CR; the blank line (CRLF) arrives at 50 ms.
    assert 50 - 2 <= result.ttft_ms <= 50 + 30
    assert 90 - 2 <= result.completion_ms <= 90 + 30
