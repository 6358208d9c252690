"""Tests of the Locust wiring: options, event listeners, CSV, JSON and console output."""

from __future__ import annotations

import csv
import json
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
import pytest
from locust import User, constant, task
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.event import Events
from locust.exception import RPCError
from locust.rpc.protocol import Message
from locust.runners import MasterRunner, WorkerRunner

from locust_llm_sse._events import llm_request_hook
from locust_llm_sse.metrics import DEFAULT_PERCENTILES, get_llm_stats, parse_percentiles
from locust_llm_sse.metrics import _plugin
from locust_llm_sse.metrics._output import (
    MISSING_CSV_VALUE,
    append_history_csv,
    build_json,
    summary_lines,
    write_json,
    write_stats_csv,
)
from locust_llm_sse.metrics._stats import LLMStats
from test_metrics_stats import connect_failure, make_result


class IdleUser(User):
    wait_time = constant(1)

    @task
    def idle(self) -> None:
        pass


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Locust's parser reads locust.conf and pyproject.toml from the working directory.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def options(**values: Any) -> Namespace:
    defaults: dict[str, Any] = {
        "llm_percentiles": "50,90,95,99",
        "llm_json": None,
        "csv_prefix": None,
        "stats_history_enabled": False,
        "json": False,
    }
    defaults.update(values)
    return Namespace(**defaults)


def environment(**option_values: Any) -> Environment:
    return Environment(user_classes=[IdleUser], events=Events(), parsed_options=options(**option_values))


# -- Options -------------------------------------------------------------------------------


def test_default_percentiles_text_matches_constant() -> None:
    assert parse_percentiles(_plugin.DEFAULT_PERCENTILES_TEXT) == DEFAULT_PERCENTILES


def test_options_parse_with_defaults(in_tmp_path: Path) -> None:
    parsed = get_parser().parse_args(["-f", "locustfile.py"])

    assert parsed.llm_percentiles == "50,90,95,99"
    assert parsed.llm_json is None


def test_options_parse_given_values(in_tmp_path: Path) -> None:
    parsed = get_parser().parse_args(["--llm-percentiles", "50,99.9", "--llm-json", "out/llm.json"])

    assert parsed.llm_percentiles == "50,99.9"
    assert parsed.llm_json == "out/llm.json"


def test_options_read_environment_variables(in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCUST_LLM_PERCENTILES", "75,99")
    monkeypatch.setenv("LOCUST_LLM_JSON", "from-env.json")

    parsed = get_parser().parse_args([])

    assert parsed.llm_percentiles == "75,99"
    assert parsed.llm_json == "from-env.json"


def test_invalid_percentiles_option_names_option_and_fix(
    in_tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        get_parser().parse_args(["--llm-percentiles", "50,abc"])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--llm-percentiles" in error
    assert "'abc'" in error
    assert "e.g. 50,90,95,99" in error


def test_percentiles_option_shown_in_web_ui(in_tmp_path: Path) -> None:
    parser = get_parser()

    assert "llm_percentiles" in parser.args_included_in_web_ui
    assert "llm_json" not in parser.args_included_in_web_ui


# -- Listeners -----------------------------------------------------------------------------


def test_get_llm_stats_is_created_once() -> None:
    env = environment(llm_percentiles="50,99")

    stats = get_llm_stats(env)

    assert get_llm_stats(env) is stats
    assert stats.percentiles == [0.5, 0.99]


def test_llm_request_event_is_recorded() -> None:
    env = environment()
    stats = get_llm_stats(env)

    llm_request_hook(env.events).fire(result=make_result(), user=None, environment=env)

    assert stats.rows()[-1]["requests_completed"] == 1


def test_stats_without_options_use_defaults() -> None:
    env = Environment(user_classes=[IdleUser], events=Events())

    assert get_llm_stats(env).percentiles == DEFAULT_PERCENTILES


def test_reset_stats_event_resets() -> None:
    env = environment()
    stats = get_llm_stats(env)
    llm_request_hook(env.events).fire(result=make_result(), user=None, environment=env)

    env.events.reset_stats.fire()

    assert stats.entries == {}


def test_test_start_resets_and_rereads_percentiles() -> None:
    env = environment()
    stats = get_llm_stats(env)
    llm_request_hook(env.events).fire(result=make_result(), user=None, environment=env)
    env.parsed_options.llm_percentiles = "99"

    env.events.test_start.fire(environment=env)

    assert stats.entries == {}
    assert stats.percentiles == [0.99]


def test_invalid_percentiles_from_web_ui_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    env = environment()
    stats = get_llm_stats(env)
    env.parsed_options.llm_percentiles = "fifty"

    env.events.test_start.fire(environment=env)

    assert stats.percentiles == DEFAULT_PERCENTILES
    assert "Ignoring --llm-percentiles" in caplog.text


def test_reset_stats_option_resets_when_spawning_completes() -> None:
    env = environment()
    env.reset_stats = True
    stats = get_llm_stats(env)
    llm_request_hook(env.events).fire(result=make_result(), user=None, environment=env)

    env.events.spawning_complete.fire(user_count=1)

    assert stats.entries == {}


def test_worker_report_reaches_master_and_resets_worker() -> None:
    worker = environment()
    master = environment()
    worker_stats = get_llm_stats(worker)
    master_stats = get_llm_stats(master)
    for result in (make_result("a"), make_result("b"), connect_failure("b")):
        llm_request_hook(worker.events).fire(result=result, user=None, environment=worker)
    expected = worker_stats.rows()

    data: dict[str, Any] = {}
    worker.events.report_to_master.fire(client_id="worker-1", data=data)
    master.events.worker_report.fire(client_id="worker-1", data=data)

    assert _plugin.REPORT_KEY in data
    assert worker_stats.entries == {}
    assert master_stats.rows() == expected


def test_empty_worker_report_adds_nothing() -> None:
    worker = environment()
    get_llm_stats(worker)
    data: dict[str, Any] = {}

    worker.events.report_to_master.fire(client_id="worker-1", data=data)

    assert _plugin.REPORT_KEY not in data


def test_invalid_worker_report_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    master = environment()
    stats = get_llm_stats(master)

    master.events.worker_report.fire(client_id="worker-7", data={_plugin.REPORT_KEY: {"version": 1}})

    assert stats.entries == {}
    assert "Dropped an invalid LLM metrics report from worker worker-7" in caplog.text


def test_history_loop_appends_while_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_plugin, "HISTORY_INTERVAL_S", 0.01)
    env = environment()
    runner = env.create_local_runner()
    stats = get_llm_stats(env)
    try:
        gevent.sleep(0.05)
        assert stats.history == []

        runner.state = "running"
        gevent.sleep(0.1)
        assert len(stats.history) >= 2
        assert set(stats.history[0]) >= {"time", "requests_per_second", "ttft_ms_p50", "itl_ms_p95"}
    finally:
        runner.state = "stopped"
        runner.quit()


def test_csv_loop_writes_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_plugin, "CSV_INTERVAL_S", 0.01)
    prefix = str(tmp_path / "out" / "run")
    env = environment(csv_prefix=prefix, stats_history_enabled=True)
    runner = env.create_local_runner()
    stats = get_llm_stats(env)
    stats.record(make_result())
    try:
        runner.state = "running"
        gevent.sleep(0.1)
    finally:
        runner.state = "stopped"
        runner.quit()

    with open(prefix + "_llm_stats.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    with open(prefix + "_llm_stats_history.csv", newline="") as file:
        history = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["chat", "Aggregated"]
    assert rows[0]["output_tokens_total"] == "3"
    assert len(history) >= 2
    assert list(history[0])[:2] == ["timestamp", "name"]


def test_quitting_writes_csv_and_json(tmp_path: Path) -> None:
    prefix = str(tmp_path / "run")
    json_path = str(tmp_path / "json" / "llm.json")
    env = environment(csv_prefix=prefix, llm_json=json_path)
    get_llm_stats(env).record(make_result())

    _plugin._on_quitting(environment=env)

    assert os.path.exists(prefix + "_llm_stats.csv")
    with open(json_path) as file:
        data = json.load(file)
    assert data["aggregated"]["requests_completed"] == 1


def test_quit_prints_summary(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    env = environment()
    get_llm_stats(env).record(make_result())
    monkeypatch.setattr(_plugin, "_main_environment", env)

    with caplog.at_level("INFO", logger="locust.stats_logger"):
        _plugin._on_quit(exit_code=0)

    assert "LLM summary" in caplog.text
    assert "P99 TTFT (ms):" in caplog.text


def test_quit_prints_nothing_with_json_option(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = environment(json=True)
    get_llm_stats(env).record(make_result())
    monkeypatch.setattr(_plugin, "_main_environment", env)

    with caplog.at_level("INFO", logger="locust.stats_logger"):
        _plugin._on_quit(exit_code=0)

    assert "LLM summary" not in caplog.text


# -- Output files --------------------------------------------------------------------------


def filled_stats() -> LLMStats:
    stats = LLMStats(percentiles=[0.5, 0.999])
    stats.record(make_result("b", finish_reason="length"))
    stats.record(make_result("a", gaps_s=()))
    stats.record(connect_failure("a"))
    return stats


def test_stats_csv_has_columns_and_missing_values(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "x_llm_stats.csv")
    stats = filled_stats()

    write_stats_csv(stats, path)

    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == stats.columns()
    assert [row["name"] for row in rows] == ["a", "b", "Aggregated"]
    assert rows[0]["itl_ms_p99_9"] == MISSING_CSV_VALUE
    assert rows[0]["connect_failures"] == "1"
    assert rows[1]["finish_reasons"] == "length=1"
    assert rows[1]["ttft_ms_p50"] == "100.000"
    assert os.listdir(tmp_path / "nested") == ["x_llm_stats.csv"]


def test_history_csv_appends_with_one_header(tmp_path: Path) -> None:
    path = str(tmp_path / "x_llm_stats_history.csv")
    stats = filled_stats()

    append_history_csv(stats, path, 100)
    append_history_csv(stats, path, 101)

    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["timestamp"] for row in rows] == ["100"] * 3 + ["101"] * 3


def test_json_output_has_percentiles_and_units(tmp_path: Path) -> None:
    path = str(tmp_path / "llm.json")
    stats = filled_stats()

    write_json(stats, path)

    with open(path) as file:
        data = json.load(file)
    assert data == json.loads(json.dumps(build_json(stats)))
    assert data["percentiles"] == [0.5, 0.999]
    assert data["histogram_relative_error"] == 0.01
    assert [row["name"] for row in data["per_name"]] == ["a", "b"]
    assert data["aggregated"]["name"] == "Aggregated"
    assert data["aggregated"]["finish_reasons"] == {"length": 1, "stop": 1}
    assert data["aggregated"]["ttft_ms_p99_9"] == pytest.approx(100.0, abs=1e-9)
    assert data["per_name"][0]["itl_ms_p50"] is None


def test_summary_lines_block_and_table() -> None:
    lines = summary_lines(filled_stats())
    text = "\n".join(lines)

    assert lines[0].strip("= ") == "LLM summary"
    assert "Successful requests:" in text
    assert "Mean TTFT (ms):" in text
    assert "P99.9 ITL (ms):" in text
    assert "P50 TPOT (ms):" in text
    assert "LLM statistics per request name" in text


def test_summary_lines_empty_without_requests() -> None:
    assert summary_lines(LLMStats()) == []


# -- Runners -------------------------------------------------------------------------------


def stub_runner(runner_class: type, env: Environment) -> Any:
    """A runner object of ``runner_class`` without network: only the attributes the plugin uses."""
    runner = runner_class.__new__(runner_class)
    runner.environment = env
    runner.custom_messages = {}
    runner.greenlet = gevent.pool.Group()
    runner.state = "ready"
    env.runner = runner
    return runner


def test_worker_sends_final_report_at_test_stop() -> None:
    env = environment()
    runner = stub_runner(WorkerRunner, env)
    sent: list[tuple[str, Any]] = []
    runner.send_message = lambda message_type, data=None, client_id=None: sent.append((message_type, data))
    stats = get_llm_stats(env)
    stats.record(make_result())

    env.events.test_stop.fire(environment=env)

    assert [message_type for message_type, _ in sent] == [_plugin.REPORT_KEY]
    assert sent[0][1]["entries"][0]["requests_completed"] == 1
    assert stats.entries == {}


def test_worker_keeps_counts_when_final_report_fails(caplog: pytest.LogCaptureFixture) -> None:
    env = environment()
    runner = stub_runner(WorkerRunner, env)

    def fail(message_type: str, data: Any = None, client_id: Any = None) -> None:
        raise RPCError("connection lost")

    runner.send_message = fail
    stats = get_llm_stats(env)
    stats.record(make_result())

    env.events.test_stop.fire(environment=env)

    assert stats.rows()[-1]["requests_completed"] == 1
    assert "Failed to send the final LLM metrics report" in caplog.text


def test_master_merges_final_report_message() -> None:
    env = environment()
    runner = stub_runner(MasterRunner, env)
    stats = get_llm_stats(env)
    worker = LLMStats()
    worker.record(make_result())
    try:
        listener, _concurrent = runner.custom_messages[_plugin.REPORT_KEY]
        listener(environment=env, msg=Message(_plugin.REPORT_KEY, worker.take_report(), "worker-1"))
    finally:
        runner.greenlet.kill(block=True)

    assert stats.rows()[-1]["requests_completed"] == 1
