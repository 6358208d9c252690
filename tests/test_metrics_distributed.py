"""Distributed runs: a real master and two real workers against the mock server.

Each process of the test locustfile dumps the StreamResults it saw. The master's
``--llm-json`` must equal what the workers' own data gives. Request counts and token
totals must match exactly, and percentiles must equal those of the merged histograms of
the workers' samples. They must also be within the histogram's 1 % error of the exact
percentiles of those samples.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_metrics_end_to_end import (
    LOCUSTFILE,
    MOCK_ARGS,
    assert_results_follow_schedule,
    assert_row_follows_schedule,
    assert_row_matches_results,
    result_from_dump,
)

from locust_llm_sse import StreamResult
from locust_llm_sse.metrics import LLMStats
from locust_llm_sse.mock._process import MockServerProcess

RUN_TIME = "5s"
PROCESS_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def mock_base_url() -> Iterator[str]:
    with MockServerProcess(*MOCK_ARGS) as mock:
        yield mock.base_url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def locust_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", "locustfile.py", *args]


def start(command: list[str], cwd: Path, dump_dir: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "LLM_TEST_DUMP_DIR": str(dump_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_all(processes: list[subprocess.Popen[str]]) -> list[str]:
    """Wait for every process (at most PROCESS_TIMEOUT_S each) and return their output; kill the rest."""
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=PROCESS_TIMEOUT_S)
            outputs.append(output)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return outputs


def load_dumps_per_process(dump_dir: Path) -> dict[str, list[StreamResult]]:
    return {
        path.name: [result_from_dump(data) for data in json.loads(path.read_text())]
        for path in sorted(dump_dir.glob("seen-*.json"))
    }


def merged_worker_stats(results_per_process: dict[str, list[StreamResult]], percentiles: list[float]) -> LLMStats:
    """Merge each process's own statistics the way a master does, from the dumped results."""
    merged = LLMStats(percentiles=percentiles)
    for results in results_per_process.values():
        worker = LLMStats(percentiles=percentiles)
        for result in results:
            worker.record(result)
        report = worker.take_report()
        if report is not None:
            merged.merge_report(report)
    return merged


def assert_json_equals_merged_workers(data: dict[str, Any], merged: LLMStats) -> None:
    expected_rows = merged.rows_with_finish_reason_counts()
    actual_rows = [*data["per_name"], data["aggregated"]]
    assert [row["name"] for row in actual_rows] == [row["name"] for row in expected_rows]
    for actual, expected in zip(actual_rows, expected_rows):
        assert list(actual) == list(expected)
        for column, value in expected.items():
            if column.endswith("_mean") or column.endswith("_per_second"):
                # Sums of floats, merged in another order.
                assert actual[column] == pytest.approx(value, rel=1e-9), column
            else:
                assert actual[column] == value, column


def check_run(tmp_path: Path, dump_dir: Path, worker_count: int) -> None:
    data = json.loads((tmp_path / "out" / "llm.json").read_text())
    results_per_process = load_dumps_per_process(dump_dir)
    worker_results = {name: results for name, results in results_per_process.items() if results}
    all_results = [result for results in results_per_process.values() for result in results]

    # The master dumps an empty list; every worker made requests.
    assert len(results_per_process) == worker_count + 1
    assert len(worker_results) == worker_count
    assert_results_follow_schedule(all_results)
    assert data["aggregated"]["requests_completed"] == len(all_results)
    assert_row_matches_results(data["aggregated"], all_results, data["percentiles"])
    assert_row_follows_schedule(data["aggregated"])
    assert_json_equals_merged_workers(data, merged_worker_stats(results_per_process, data["percentiles"]))
    assert os.path.exists(tmp_path / "out" / "run_llm_stats.csv")


def test_master_equals_merged_workers(mock_base_url: str, tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    dump_dir = tmp_path / "dumps"
    dump_dir.mkdir()
    port = str(free_port())

    master = start(
        locust_command(
            "--master", "--headless", "--expect-workers", "2", "--expect-workers-max-wait", "30",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "-u", "4", "-r", "4", "-t", RUN_TIME, "--stop-timeout", "0", "-H", mock_base_url,
            "--csv", "out/run", "--llm-json", "out/llm.json", "--llm-percentiles", "50,90,95,99,99.9",
        ),
        tmp_path,
        dump_dir,
    )  # fmt: skip
    workers = [
        start(locust_command("--worker", "--master-host", "127.0.0.1", "--master-port", port), tmp_path, dump_dir)
        for _ in range(2)
    ]
    outputs = wait_all([master, *workers])

    assert master.returncode == 0, outputs[0][-3000:]
    assert "LLM summary" in outputs[0]
    for worker, output in zip(workers, outputs[1:]):
        assert worker.returncode == 0, output[-3000:]
        assert "LLM summary" not in output
    check_run(tmp_path, dump_dir, worker_count=2)


def test_processes_option_equals_merged_workers(mock_base_url: str, tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    dump_dir = tmp_path / "dumps"
    dump_dir.mkdir()
    # A free port, not Locust's default 5557: workers of another run on this machine must
    # not join this master.
    port = str(free_port())

    process = start(
        locust_command(
            "--headless", "--processes", "2", "-u", "4", "-r", "4", "-t", RUN_TIME, "--stop-timeout", "0",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "--master-host", "127.0.0.1", "--master-port", port,
            "-H", mock_base_url, "--csv", "out/run", "--llm-json", "out/llm.json",
        ),
        tmp_path,
        dump_dir,
    )  # fmt: skip
    (output,) = wait_all([process])

    assert process.returncode == 0, output[-3000:]
    assert output.count("LLM summary") == 1
    check_run(tmp_path, dump_dir, worker_count=2)
