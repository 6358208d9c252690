"""Real ``locust --headless`` runs of locustfiles/chat.py in a subprocess, against the mock server."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from locust_llm_sse.mock._process import MockServerProcess

CHAT_LOCUSTFILE = Path(__file__).parent.parent / "locustfiles" / "chat.py"
SECRET_KEY = "sk-test-DO-NOT-PRINT-7f3a9c"
PHASE_TYPES = ["1 conn", "2 ttft", "3 e2e"]


def run_locust(
    tmp_path: Path, *arguments: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "locust", "-f", str(CHAT_LOCUSTFILE), "--headless", "--only-summary", *arguments]
    environment = {**os.environ, **(env or {})}
    environment.pop("OPENAI_API_KEY", None) if env is None or "OPENAI_API_KEY" not in env else None
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout_s)


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a Locust ``*_stats.csv`` keyed by Type (the Aggregated row by its name)."""
    with open(path, newline="", encoding="utf-8") as file:
        return {row["Type"] or row["Name"]: row for row in csv.DictReader(file)}


def assert_funnel(rows: dict[str, dict[str, str]]) -> None:
    counts = [int(rows[phase]["Request Count"]) for phase in PHASE_TYPES]
    failures = [int(rows[phase]["Failure Count"]) for phase in PHASE_TYPES]
    # A phase runs only after the one before succeeded; streams cut by the end of the run
    # have no later phases, hence <= rather than ==.
    assert counts[1] <= counts[0] - failures[0]
    assert counts[2] <= counts[1] - failures[1]
    assert counts[2] > 0


def test_main_job_on_bundled_mock_writes_three_phases(tmp_path: Path) -> None:
    completed = run_locust(tmp_path, "-u", "4", "-r", "4", "-t", "4s", "--csv", "out")

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "started the bundled mock LLM server" in completed.stderr
    rows = read_stats(tmp_path / "out_stats.csv")
    for phase in PHASE_TYPES:
        assert rows[phase]["Name"] == "/v1/chat/completions"
        assert int(rows[phase]["Failure Count"]) == 0
    assert_funnel(rows)
    # The mock's default schedule: TTFT 100 ms, then 64 tokens 10 ms apart.
    assert 100 <= float(rows["2 ttft"]["Median Response Time"]) <= 130
    assert 730 <= float(rows["3 e2e"]["Median Response Time"]) <= 800
    assert float(rows["3 e2e"]["Average Content Size"]) > float(rows["2 ttft"]["Average Content Size"])


def test_faults_fail_their_phase_with_stable_messages(tmp_path: Path) -> None:
    mock_options = "--ttft-ms 20 --itl-ms 2 --output-tokens 10 --rate-500 0.2 --rate-cut 0.2 --rate-error-event 0.2 --seed 7"
    completed = run_locust(tmp_path, "-u", "3", "-r", "3", "-t", "4s", "--csv", "out", "--mock-options", mock_options)

    assert completed.returncode == 1, completed.stderr[-3000:]
    rows = read_stats(tmp_path / "out_stats.csv")
    assert_funnel(rows)
    assert int(rows["1 conn"]["Failure Count"]) > 0
    assert int(rows["2 ttft"]["Failure Count"]) == 0
    assert int(rows["3 e2e"]["Failure Count"]) > 0
    with open(tmp_path / "out_failures.csv", newline="", encoding="utf-8") as file:
        failures = {(row["Method"], row["Error"]) for row in csv.DictReader(file)}
    methods = {method for method, _error in failures}
    assert methods == {"1 conn", "3 e2e"}
    errors = " | ".join(error for _method, error in failures)
    assert "HTTP 500" in errors
    assert "stream cut off before its end" in errors
    assert "stream error event" in errors
    # One row per kind: messages carry no per-request detail.
    assert len(failures) == 3


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
def test_host_with_or_without_v1_prefix(tmp_path: Path, suffix: str) -> None:
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5") as mock:
        completed = run_locust(
            tmp_path, "--host", mock.base_url + suffix, "-u", "1", "-r", "1", "-t", "2s", "--csv", "out"
        )

    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = read_stats(tmp_path / "out_stats.csv")
    assert rows["3 e2e"]["Name"] == "/v1/chat/completions"
    assert int(rows["3 e2e"]["Request Count"]) > 0


def test_api_key_never_written(tmp_path: Path) -> None:
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5", "--rate-500", "0.3") as mock:
        completed = run_locust(
            tmp_path,
            "--host", mock.base_url + "/v1",
            "-u", "2", "-r", "2", "-t", "3s",
            "--csv", "out", "--csv-full-history", "--html", "report.html",
            "--loglevel", "DEBUG", "--logfile", "locust.log",
            env={"OPENAI_API_KEY": SECRET_KEY},
        )
        mock_log = mock.stderr_text()

    assert completed.returncode == 1, completed.stderr[-3000:]  # the injected 500s
    written = [completed.stdout, completed.stderr, mock_log]
    written += [path.read_text(encoding="utf-8", errors="replace") for path in tmp_path.iterdir() if path.is_file()]
    assert len(written) >= 7  # stdout, stderr, mock log, 4 CSV files, the HTML report, the log file
    for text in written:
        assert SECRET_KEY not in text
        assert SECRET_KEY[-10:] not in text


def test_remote_host_without_key_stops_with_fix(tmp_path: Path) -> None:
    completed = run_locust(tmp_path, "--host", "https://api.example.invalid/v1", "-u", "1", "-t", "2s", "--model", "m")

    assert completed.returncode == 1
    assert "No API key for https://api.example.invalid/v1: set OPENAI_API_KEY or pass --api-key" in completed.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--extra-body", "[1, 2]"], "invalid --extra-body '[1, 2]': expected a JSON object"),
        (["--extra-body", "{bad"], "invalid --extra-body '{bad': not JSON"),
        (["--prompts-file", "missing.txt"], "invalid --prompts-file 'missing.txt'"),
        (["--max-tokens", "0"], "invalid --max-tokens 0: expected a finite number greater than 0"),
        (["--host", "127.0.0.1:8000"], "invalid host '127.0.0.1:8000': expected a base URL"),
        (["--host", "http://:8000"], "invalid host 'http://:8000': expected a base URL"),
        (["--first-token-timeout", "nan"], "invalid --first-token-timeout nan: expected a finite number greater than 0"),
        (["--failure-pause", "-1"], "invalid --failure-pause -1.0: expected a finite number of seconds, 0 or more"),
        (["--host", "http://127.0.0.1:1/v1"], "Cannot connect to http://127.0.0.1:1/v1/models: check --host"),
    ],
)
def test_bad_option_exits_with_fix(tmp_path: Path, arguments: list[str], message: str) -> None:
    completed = run_locust(tmp_path, "-u", "1", "-t", "2s", *arguments)

    assert completed.returncode == 1
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_prompts_file_and_extra_body_reach_server(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        '"first prompt"\n{"prompt": "second prompt"}\n{"messages": [{"role": "user", "content": "third"}]}\n',
        encoding="utf-8",
    )
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "3") as mock:
        completed = run_locust(
            tmp_path,
            "--host", mock.base_url,
            "--prompts-file", "prompts.jsonl",
            "--extra-body", '{"temperature": 0}',
            "-u", "1", "-r", "1", "-t", "2s", "--csv", "out",
        )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert int(read_stats(tmp_path / "out_stats.csv")["3 e2e"]["Request Count"]) >= 3
