"""locustfiles/chat.py as a user runs it: the web UI, Ctrl-C, a dying mock server, failure pauses."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from locust_llm_sse.mock._process import MockServerProcess
from tests.test_locust_headless import CHAT_LOCUSTFILE, SECRET_KEY, read_stats, run_locust


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_locust(tmp_path: Path, *arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start locust with chat.py in a session of its own, so a test can signal it like a terminal does."""
    environment = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(CHAT_LOCUSTFILE), *arguments],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_url(url: str, timeout_s: float = 20.0) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_process(process: subprocess.Popen) -> tuple[str, str]:
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=10)


def pid_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_web_ui_pages_do_not_contain_api_key(tmp_path: Path) -> None:
    port = free_port()
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5") as mock:
        process = start_locust(
            tmp_path, "--host", mock.base_url, "--web-host", "127.0.0.1", "--web-port", str(port),
            env={"OPENAI_API_KEY": SECRET_KEY},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            index = wait_for_url(base + "/")
            started = requests.post(base + "/swarm", data={"user_count": 1, "spawn_rate": 1, "host": mock.base_url}, timeout=10)
            time.sleep(1.5)
            pages = [index.text, started.text] + [
                requests.get(base + path, timeout=10).text for path in ("/stats/requests", "/llm/stats.json", "/stats/report")
            ]
            requests.post(base + "/stop", timeout=10)
        finally:
            stdout, stderr = stop_process(process)

    assert index.status_code == 200
    assert "max_tokens" in index.text  # the form shows the job's other options
    for text in pages + [stdout, stderr]:
        assert SECRET_KEY not in text


def test_web_ui_start_form_changes_apply(tmp_path: Path) -> None:
    """Options changed in the start form between two tests apply to the second test."""
    port = free_port()
    with MockServerProcess("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "50") as mock:
        process = start_locust(tmp_path, "--host", mock.base_url, "--web-host", "127.0.0.1", "--web-port", str(port))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_url(base + "/")
            means = []
            for max_tokens in (5, 20):
                form = {"user_count": 1, "spawn_rate": 1, "host": mock.base_url, "max_tokens": max_tokens}
                assert requests.post(base + "/swarm", data=form, timeout=10).json()["success"]
                time.sleep(1.5)
                requests.post(base + "/stop", timeout=10)
                time.sleep(0.5)
                rows = requests.get(base + "/llm/stats.json", timeout=10).json()["rows"]
                aggregated = [row for row in rows if row["name"] == "Aggregated"][0]
                means.append(aggregated["output_tokens_mean"])
                requests.post(base + "/stats/reset", timeout=10)
        finally:
            stop_process(process)

    assert means[0] == 5
    assert means[1] == 20


def test_ctrl_c_with_bundled_mock_is_clean(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: no failures, exit 0, mock gone."""
    process = start_locust(tmp_path, "--headless", "-u", "3", "-r", "3", "-t", "60s", "--csv", "out", "--only-summary")
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "out_stats.csv").exists() or "3 e2e" not in (tmp_path / "out_stats.csv").read_text():
            assert time.monotonic() < deadline, "no completed request within 20 s"
            time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    mock_pid = int(re.search(r"started the bundled mock LLM server at \S+ \(PID (\d+)\)", stderr).group(1))
    assert process.returncode == 0, stderr[-3000:]
    assert "Error report" not in stdout
    assert not pid_is_running(mock_pid)


def test_mock_exit_stops_the_test(tmp_path: Path) -> None:
    process = start_locust(tmp_path, "--headless", "-u", "2", "-r", "2", "-t", "60s", "--only-summary")
    try:
        deadline = time.monotonic() + 20
        log = ""
        while "started the bundled mock LLM server" not in log:
            assert time.monotonic() < deadline, "the mock server did not start"
            log += process.stderr.readline()  # type: ignore[union-attr]
        mock_pid = int(re.search(r"\(PID (\d+)\)", log).group(1))
        time.sleep(1.0)
        os.kill(mock_pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 1
    assert f"The bundled mock server (PID {mock_pid}) exited with status -9; stopping the test" in stderr


@pytest.mark.parametrize("retry_after_s", ["1", "0"])
def test_http_errors_pause_users(tmp_path: Path, retry_after_s: str) -> None:
    """A 429 pauses the user for Retry-After, and for --failure-pause (1 s) when that is longer."""
    completed = run_locust(
        tmp_path,
        "-u", "2", "-r", "2", "-t", "3s", "--csv", "out",
        "--mock-options", f"--rate-429 1 --retry-after-s {retry_after_s}",
    )

    assert completed.returncode == 1
    connects = int(read_stats(tmp_path / "out_stats.csv")["1 conn"]["Request Count"])
    # Two users, each paused 1 s after every 429, for 3 seconds: about 6 requests, not thousands.
    assert 2 <= connects <= 10
    with open(tmp_path / "out_failures.csv", newline="", encoding="utf-8") as file:
        errors = [row["Error"] for row in csv.DictReader(file)]
    assert len(errors) == 1
    assert "HTTP 429" in errors[0]


def test_processes_with_bad_option_exit_1(tmp_path: Path) -> None:
    """With --processes, the master checks the options at test start and quits with its workers."""
    started = time.monotonic()

    completed = run_locust(tmp_path, "--processes", "2", "-u", "2", "-t", "5s", "--max-tokens", "0", timeout_s=40)

    assert completed.returncode == 1
    assert "invalid --max-tokens 0: expected a finite number greater than 0" in completed.stderr
    assert time.monotonic() - started < 30


def test_user_without_host_exits_1(tmp_path: Path) -> None:
    locustfile = tmp_path / "no_host.py"
    locustfile.write_text(
        "from locust import task\n"
        "from locust_llm_sse import LLMUser\n\n\n"
        "class NoHostUser(LLMUser):\n"
        "    @task\n"
        "    def chat(self):\n"
        "        self.client.chat('hi')\n",
        encoding="utf-8",
    )

    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "1", "-t", "3s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert completed.returncode == 1
    assert "No host set: pass --host with the server's base URL" in completed.stderr


def test_bad_mock_options_exit_with_fix(tmp_path: Path) -> None:
    invalid = run_locust(tmp_path, "-u", "1", "-t", "2s", "--mock-options", "--ttft-ms -1")
    unquoted = run_locust(tmp_path, "-u", "1", "-t", "2s", "--mock-options", '--model "open')

    assert invalid.returncode == 1
    assert "The bundled mock server did not start with --mock-options '--ttft-ms -1'" in invalid.stderr
    assert "--ttft-ms" in invalid.stderr.split("did not start", 1)[1]
    assert "Traceback" not in invalid.stderr
    assert unquoted.returncode == 1
    assert "invalid --mock-options '--model \"open': No closing quotation" in unquoted.stderr


def test_prompts_file_bad_json_line(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "fine"}\n{"prompt": "unterminated\n', encoding="utf-8")

    completed = run_locust(tmp_path, "-u", "1", "-t", "2s", "--prompts-file", "prompts.jsonl")

    assert completed.returncode == 1
    assert "invalid --prompts-file 'prompts.jsonl', line 2: not valid JSON" in completed.stderr
