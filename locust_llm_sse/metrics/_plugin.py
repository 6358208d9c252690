"""Locust event listeners and command-line options that run the LLM metrics.

``register(locust.events)`` runs when ``locust_llm_sse.metrics`` is imported. It adds the
options, and on ``init`` it attaches an ``LLMStats`` to the environment and starts the
history and CSV greenlets on the master or the single process. The final CSV and JSON
files are written on ``quitting`` and the console summary is printed on ``quit``, after
Locust's own tables.

In a distributed run each worker adds everything counted since its last report to Locust's
periodic worker report (``report_to_master``) and then resets its counts, as Locust's
workers do with their own statistics. At ``test_stop`` a worker also sends what is left as an
``llm_metrics`` message, so the master has every finished request before the stop
completes. The master adds each report to its own ``LLMStats`` (counters add, histogram
buckets add), so its numbers are those one process would have counted.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Any

import gevent
from locust.env import Environment
from locust.event import Events
from locust.exception import RPCError
from locust.runners import STATE_INIT, STATE_STOPPED, WORKER_REPORT_INTERVAL, MasterRunner, Runner, WorkerRunner

from locust_llm_sse._events import llm_request_hook
from locust_llm_sse._result import StreamResult
from locust_llm_sse.metrics._output import (
    append_history_csv,
    history_csv_path,
    stats_csv_path,
    summary_lines,
    write_json,
    write_stats_csv,
)
from locust_llm_sse.metrics._stats import LLMStats, parse_percentiles

logger = logging.getLogger(__name__)

# Locust prints its console tables through this logger, which adds no timestamp prefix.
# The LLM summary goes the same way, so that it reads like Locust's and lands next to it.
_console = logging.getLogger("locust.stats_logger")

REPORT_KEY = "llm_metrics"
"""Key of the LLM data in a worker report, and type of the message a worker sends at test stop."""

HISTORY_INTERVAL_S = 1.0
CSV_INTERVAL_S = 1.0
"""How often the CSV files are rewritten, as often as Locust rewrites its own."""

MASTER_WINDOW_DELAY_S = math.ceil(WORKER_REPORT_INTERVAL)
"""Seconds a master leaves out of the current window, because workers report every 3 s."""

DEFAULT_PERCENTILES_TEXT = "50,90,95,99"
"""Default of ``--llm-percentiles``, which parses to ``DEFAULT_PERCENTILES``."""

_STATS_ATTRIBUTE = "_locust_llm_sse_stats"
_RUNNER_MARK = "_locust_llm_sse_runner"

_main_environment: Environment | None = None
"""The environment of Locust's ``init`` event, whose summary the ``quit`` listener prints."""


# -- Options ------------------------------------------------------------------------------


def percentiles_option(text: str) -> str:
    """Validate the ``--llm-percentiles`` value and return it unchanged.

    The option keeps its text form so that the web UI shows it as typed.
    """
    try:
        parse_percentiles(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_arguments(parser: Any) -> None:
    """Add the LLM metrics options to Locust's argument parser."""
    parser.add_argument(
        "--llm-percentiles",
        dest="llm_percentiles",
        metavar="<list>",
        type=percentiles_option,
        default=DEFAULT_PERCENTILES_TEXT,
        env_var="LOCUST_LLM_PERCENTILES",
        help=(
            "Comma-separated percentiles of the LLM metrics (TTFT, ITL, TPOT, end-to-end latency), "
            f"each above 0 and at most 100. Default: {DEFAULT_PERCENTILES_TEXT}"
        ),
    )
    parser.add_argument(
        "--llm-json",
        dest="llm_json",
        metavar="<filename>",
        default=None,
        env_var="LOCUST_LLM_JSON",
        include_in_web_ui=False,
        help="Write the final LLM metrics as JSON to this file when Locust exits (master or single process only)",
    )


def _configured_percentiles(environment: Environment) -> list[float] | None:
    """Return the percentiles set by ``--llm-percentiles``, or None when there is no such option.

    The web UI can replace the option with unchecked text, so an invalid value is logged
    and None is returned.
    """
    text = getattr(environment.parsed_options, "llm_percentiles", None)
    if text is None:
        return None
    try:
        return parse_percentiles(str(text))
    except ValueError as error:
        logger.error("Ignoring --llm-percentiles: %s", error)
        return None


# -- Statistics of an environment ---------------------------------------------------------


def get_llm_stats(environment: Environment) -> LLMStats:
    """Return the ``LLMStats`` of ``environment``, creating it on first use.

    Creating it also adds the listeners that feed it: ``llm_request`` records each
    finished request, Locust's ``reset_stats`` and ``test_start`` clear it (``test_start``
    also re-reads ``--llm-percentiles``), ``--reset-stats`` clears it when spawning
    completes, and the worker report events carry it to the master. An environment
    created without Locust's ``main`` (tests, library use) must call this before its
    requests finish, or they are not counted.
    """
    stats = getattr(environment, _STATS_ATTRIBUTE, None)
    if stats is None:
        stats = LLMStats(percentiles=_configured_percentiles(environment))
        setattr(environment, _STATS_ATTRIBUTE, stats)
        _add_listeners(environment, stats)
    if environment.runner is not None:
        _connect_runner(environment, environment.runner, stats)
    return stats


def _add_listeners(environment: Environment, stats: LLMStats) -> None:
    events = environment.events

    def on_llm_request(result: StreamResult, **_kwargs: Any) -> None:
        stats.record(result)

    def on_reset_stats(**_kwargs: Any) -> None:
        stats.reset()

    def on_test_start(**_kwargs: Any) -> None:
        stats.reset()
        percentiles = _configured_percentiles(environment)
        if percentiles is not None:
            stats.percentiles = percentiles

    def on_spawning_complete(**_kwargs: Any) -> None:
        # Locust's --reset-stats clears its own statistics at this moment, on every node.
        if environment.reset_stats:
            stats.reset()

    def on_report_to_master(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        report = stats.take_report()
        if report is not None:
            data[REPORT_KEY] = report

    def on_worker_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        report = data.get(REPORT_KEY)
        if report is not None:
            _merge_worker_report(stats, report, client_id)

    def on_test_stop(**_kwargs: Any) -> None:
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            _send_final_report(runner, stats)
        elif runner is not None:
            _write_csv_files(environment, stats, append_history=False)

    llm_request_hook(events).add_listener(on_llm_request)
    events.reset_stats.add_listener(on_reset_stats)
    events.test_start.add_listener(on_test_start)
    events.spawning_complete.add_listener(on_spawning_complete)
    events.report_to_master.add_listener(on_report_to_master)
    events.worker_report.add_listener(on_worker_report)
    events.test_stop.add_listener(on_test_stop)


def _merge_worker_report(stats: LLMStats, report: Any, client_id: str) -> None:
    try:
        stats.merge_report(report)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        logger.error("Dropped an invalid LLM metrics report from worker %s: %s", client_id, error)


def _send_final_report(runner: WorkerRunner, stats: LLMStats) -> None:
    report = stats.take_report()
    if report is None:
        return
    try:
        runner.send_message(REPORT_KEY, report)
    except RPCError as error:
        # Put the counts back, so that the next periodic report carries them.
        stats.merge_report(report)
        logger.error("Failed to send the final LLM metrics report to the master, will retry with the next report: %s", error)


def _connect_runner(environment: Environment, runner: Runner, stats: LLMStats) -> None:
    """Register the master's message handler and start the greenlets of a master or single process."""
    if getattr(runner, _RUNNER_MARK, False):
        return
    setattr(runner, _RUNNER_MARK, True)
    if isinstance(runner, WorkerRunner):
        return

    if isinstance(runner, MasterRunner) and REPORT_KEY not in runner.custom_messages:

        def on_final_report(environment: Environment, msg: Any, **_kwargs: Any) -> None:
            _merge_worker_report(stats, msg.data, msg.node_id)

        runner.register_message(REPORT_KEY, on_final_report)

    delay_s = MASTER_WINDOW_DELAY_S if isinstance(runner, MasterRunner) else 0
    _spawn(runner, _history_loop, environment, stats, delay_s)
    if getattr(environment.parsed_options, "csv_prefix", None):
        _spawn(runner, _csv_loop, environment, stats)


def _spawn(runner: Runner, function: Any, *args: Any) -> None:
    # In the runner's greenlet group, so that the loop ends when the runner quits.
    greenlet = runner.greenlet.spawn(function, *args)
    greenlet.link_exception(
        lambda failed: logger.error("LLM metrics loop %s failed: %r", function.__name__, failed.exception)
    )


def _test_is_running(environment: Environment) -> bool:
    runner = environment.runner
    return runner is not None and runner.state not in (STATE_INIT, STATE_STOPPED)


def _history_loop(environment: Environment, stats: LLMStats, delay_s: int) -> None:
    while True:
        gevent.sleep(HISTORY_INTERVAL_S)
        if _test_is_running(environment):
            stats.append_history(delay_s=delay_s)


def _csv_loop(environment: Environment, stats: LLMStats) -> None:
    while True:
        gevent.sleep(CSV_INTERVAL_S)
        _write_csv_files(environment, stats, append_history=_test_is_running(environment))


_last_csv_error: str | None = None


def _write_csv_files(environment: Environment, stats: LLMStats, append_history: bool) -> None:
    """Rewrite ``PREFIX_llm_stats.csv`` and, with ``--csv-full-history``, append to the history CSV.

    A write error is logged once until a write succeeds again, so a full disk does not
    log every second.
    """
    global _last_csv_error
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None)
    if not prefix:
        return
    try:
        write_stats_csv(stats, stats_csv_path(prefix))
        if append_history and getattr(options, "stats_history_enabled", False):
            append_history_csv(stats, history_csv_path(prefix), int(time.time()))
    except OSError as error:
        if str(error) != _last_csv_error:
            logger.error("Failed to write the LLM statistics CSV files for --csv %s: %s", prefix, error)
        _last_csv_error = str(error)
    else:
        _last_csv_error = None


# -- Listeners on locust.events -----------------------------------------------------------


def _on_init_command_line_parser(parser: Any, **_kwargs: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Environment, runner: Runner | None = None, **_kwargs: Any) -> None:
    global _main_environment
    _main_environment = environment
    get_llm_stats(environment)
    if not isinstance(environment.runner, WorkerRunner):
        _register_web_ui(environment)


def _register_web_ui(environment: Environment) -> None:
    try:
        from locust_llm_sse.metrics._web import register_html_report, register_web_ui
    except ImportError as error:
        logger.warning("The LLM tab of the web UI is not available: %s", error)
        return
    register_web_ui(environment)
    register_html_report(environment)


def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    # Registered at import, before Locust creates the runner, so it runs after the master's
    # own quitting listener, which waits for the workers' final reports.
    if isinstance(environment.runner, WorkerRunner):
        return
    stats = getattr(environment, _STATS_ATTRIBUTE, None)
    if stats is None:
        return
    _write_csv_files(environment, stats, append_history=False)
    path = getattr(environment.parsed_options, "llm_json", None)
    if path:
        try:
            write_json(stats, path)
        except OSError as error:
            logger.error("Failed to write the LLM metrics JSON file %s: %s", path, error)
        else:
            logger.debug("Wrote the LLM metrics JSON file %s", path)


def _on_quit(**_kwargs: Any) -> None:
    environment = _main_environment
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return
    if getattr(environment.parsed_options, "json", False):
        # --json keeps stdout for Locust's JSON.
        return
    stats = getattr(environment, _STATS_ATTRIBUTE, None)
    if stats is None:
        return
    for line in summary_lines(stats):
        _console.info(line)


def register(events: Events) -> None:
    """Add the listeners that run the LLM metrics to ``events`` (``locust.events`` at import)."""
    events.init_command_line_parser.add_listener(_on_init_command_line_parser)
    events.init.add_listener(_on_init)
    events.quitting.add_listener(_on_quitting)
    events.quit.add_listener(_on_quit)
