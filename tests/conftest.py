"""Shared fixtures: servers on 127.0.0.1 that the tests start and stop themselves."""

from __future__ import annotations

import locust  # noqa: F401 - gevent must patch the socket module before requests loads

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from locust_llm_sse.mock._process import MockServerProcess

TESTS_DIR = Path(__file__).parent
CASES_PATH = TESTS_DIR / "fixtures" / "sse_cases.json"
EXTRA_CASES_PATH = TESTS_DIR / "fixtures" / "extra_cases.json"


def load_cases() -> dict[str, dict]:
    with open(CASES_PATH, encoding="utf-8") as file:
        return {case["id"]: case for case in json.load(file)}


@pytest.fixture(scope="session")
def replay_url() -> Iterator[str]:
    """Base URL of the replay server for the recorded and extra cases; ``/<case id>`` selects a case."""
    process = subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "support" / "replay_server.py"), str(CASES_PATH), str(EXTRA_CASES_PATH), "--max-stall-s", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("listening on "), f"replay server printed {line!r}"
        yield line.removeprefix("listening on ")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """Base URL (with /v1) of a mock server with a fast, fixed schedule: TTFT 50 ms, ITL 5 ms, 20 tokens."""
    with MockServerProcess("--ttft-ms", "50", "--itl-ms", "5", "--output-tokens", "20") as mock:
        yield mock.base_url + "/v1"
