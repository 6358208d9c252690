"""LLM tab in Locust's web UI and LLM section in Locust's HTML report.

The tab uses the extension points of Locust's React web UI (Locust 2.x):

* ``template_args["extended_tabs"]`` adds a tab with a title and a key.
* ``template_args["extended_tables"]`` gives that key a table structure (a list
  of ``{"key", "title"}`` columns).
* The UI reads the table rows from the ``extended_stats`` field of the
  ``/stats/requests`` JSON, which it polls every 2 seconds while a test runs.
  This module adds that field in an ``after_request`` hook.
* ``template_args["extended_csv_files"]`` adds links to the "Download Data" tab.

A tab from ``template_args`` can only show a table, so the charts are drawn by
``static/llm-charts.js``. The ``/llm/`` page shows them on their own, and
``static/llm-tab.js``, added to the index page, draws them below the LLM tab's
table.

Locust's HTML report ignores the ``extended_*`` arguments (checked on Locust
2.47). So the LLM table and charts are inserted into the finished report HTML.
An ``after_request`` hook does it for the report download, and a ``quit``
event listener does it for the file that ``--html`` writes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flask import Blueprint, Response, jsonify, make_response, request
from locust.runners import WorkerRunner

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.web import WebUI

logger = logging.getLogger(__name__)

TAB_KEY = "llm"
"""Key of the LLM tab, its table and its rows in ``extended_stats``. The UI puts it in the URL as ``?tab=llm``."""

TAB_TITLE = "LLM"

URL_PREFIX = "/llm"
"""Path of the LLM routes, below Locust's ``--web-base-path``."""

MAX_TABLE_ROWS = 500
"""Row limit of the web UI table (the last row, "Aggregated", is always kept), as Locust's own tables have."""

REPORT_SECTION_ID = "locust-llm-sse-report"
"""HTML id of the section added to the report. A report that contains it gets no second section."""

STATIC_DIR = Path(__file__).with_name("static")
"""Folder of the JavaScript, CSS and HTML files that the routes serve and the report inlines."""

_CHARTS_SCRIPT = "llm-charts.js"
_TAB_SCRIPT = "llm-tab.js"
_CHARTS_PAGE = "llm.html"
_STYLESHEET = "llm.css"

# Endpoint names of Locust's own views, which Locust registers on its "locust" blueprint.
_LOCUST_INDEX = "locust.index"
_LOCUST_REQUEST_STATS = "locust.request_stats"
_LOCUST_STATS_REPORT = "locust.stats_report"

# Attributes set on the WebUI and the Environment so that a second call registers nothing twice.
_WEB_UI_MARK = "_locust_llm_sse_web_ui"
_REPORT_MARK = "_locust_llm_sse_html_report"

# "p99_9" is how the metrics columns spell the 99.9th percentile.
_PERCENTILE_SUFFIX = re.compile(r"_p(\d+)_(\d+)$")

_ACRONYMS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E", "rps": "RPS", "id": "ID"}


class _LLMStatsSource(Protocol):
    """The part of ``LLMStats`` that this module reads."""

    history: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]: ...


def _llm_stats(environment: Environment) -> _LLMStatsSource:
    # Imported at call time, so that the metrics package can import this module without an import cycle.
    from locust_llm_sse.metrics import get_llm_stats

    return get_llm_stats(environment)


# --- Values and column titles ------------------------------------------------


def column_title(key: str) -> str:
    """Turn a column key such as ``ttft_ms_p99_9`` into a header such as "TTFT p99.9 (ms)".

    Known acronyms are upper-cased, ``per_second`` becomes "/s", a percentile
    suffix ``p99_9`` becomes "p99.9" and a ``ms`` word becomes a "(ms)" suffix.
    Other words are kept in order.
    """
    words = [word for word in _PERCENTILE_SUFFIX.sub(r"_p\1.\2", key).split("_") if word]
    if not words:
        return key

    in_ms = "ms" in words
    titled: list[str] = []
    for word in words:
        if word == "ms":
            continue
        if word == "second" and titled and titled[-1] == "per":
            titled.pop()
            if titled:
                titled[-1] += "/s"
            else:
                titled.append("per second")
            continue
        titled.append(_ACRONYMS.get(word, word))
    if not titled:
        return key
    if titled[0] == titled[0].lower():
        titled[0] = titled[0].capitalize()

    title = " ".join(titled)
    if in_ms:
        title += " (ms)"
    return title


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or Infinity, and the browser's JSON.parse rejects them.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _display_value(value: Any) -> Any:
    """Round a float to 2 decimals for the web UI table; None stays None (an empty cell)."""
    value = _json_safe(value)
    if isinstance(value, float):
        return round(value, 2)
    return value


def _format_cell(value: Any) -> str:
    value = _json_safe(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _json_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: _json_safe(value) for key, value in row.items()} for row in rows]


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the rows for the web UI table: limited to MAX_TABLE_ROWS and rounded."""
    if len(rows) > MAX_TABLE_ROWS:
        rows = rows[: MAX_TABLE_ROWS - 1] + rows[-1:]
    return [{key: _display_value(value) for key, value in row.items()} for row in rows]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Return the column keys in first-seen order, so that ``name`` stays first."""
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, None)
    return list(columns)


def table_structure(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Build the ``extended_tables`` structure for the columns of ``rows``."""
    return [{"key": key, "title": column_title(key)} for key in _columns(rows)]


def history_since(history: list[dict[str, Any]], since: float | None) -> dict[str, Any]:
    """Return the history entries newer than ``since`` (epoch seconds), or all of them.

    ``start`` is the time of the oldest stored entry (None when there is none).
    A client that keeps points drops the ones older than ``start``, which covers
    both a reset and a trimmed history.
    """
    start = history[0].get("time") if history else None
    if since is None:
        entries = history
    else:
        entries = [entry for entry in history if (entry.get("time") or 0) > since]
    return {"start": start, "history": _json_rows(entries)}


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """Write the rows as CSV text with a header line of the column keys."""
    output = io.StringIO()
    writer = csv.DictWriter(output, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if _json_safe(value) is None else value for key, value in row.items()})
    return output.getvalue()


def _read_static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


# --- Web UI --------------------------------------------------------------------


def _merge_by_key(entries: list[dict[str, Any]] | None, new: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Return ``entries`` with ``new`` added, replacing an entry with the same ``key`` value."""
    kept = [entry for entry in entries or [] if entry.get(key) != new.get(key)]
    return [*kept, new]


def _update_template_args(web_ui: WebUI, environment: Environment) -> None:
    """Add or refresh the LLM tab, table structure and download links in the template arguments."""
    args = web_ui.template_args
    args["extended_tabs"] = _merge_by_key(args.get("extended_tabs"), {"key": TAB_KEY, "title": TAB_TITLE}, "key")
    structure = table_structure(_llm_stats(environment).rows())
    args["extended_tables"] = _merge_by_key(
        args.get("extended_tables"), {"key": TAB_KEY, "structure": structure}, "key"
    )
    # The hrefs are relative to the index page, as Locust's own download links are.
    links = args.get("extended_csv_files")
    links = _merge_by_key(links, {"href": f".{URL_PREFIX}/stats.csv", "title": "Download LLM statistics CSV"}, "href")
    links = _merge_by_key(links, {"href": f".{URL_PREFIX}/", "title": "Open LLM charts"}, "href")
    args["extended_csv_files"] = links


def _is_ok(response: Response, mimetype: str) -> bool:
    # Only a successful response of the expected type is changed, so a login
    # redirect or an error page from Locust's auth wrapper passes through untouched.
    return response.status_code == 200 and response.mimetype == mimetype and not response.direct_passthrough


def _add_extended_stats(response: Response, environment: Environment) -> Response:
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return response
    data = _table_rows(_llm_stats(environment).rows())
    extended = [entry for entry in body.get("extended_stats") or [] if entry.get("key") != TAB_KEY]
    body["extended_stats"] = [*extended, {"key": TAB_KEY, "data": data}]
    response.set_data(json.dumps(body))
    return response


def _add_tab_script(response: Response) -> Response:
    page = response.get_data(as_text=True)
    tag = f'<script src=".{URL_PREFIX}/static/{_TAB_SCRIPT}" defer></script>'
    response.set_data(_insert_before_body_end(page, tag))
    return response


def _make_blueprint(web_ui: WebUI, environment: Environment, url_prefix: str) -> Blueprint:
    blueprint = Blueprint(
        "locust_llm_sse",
        __name__,
        url_prefix=url_prefix,
        static_folder=STATIC_DIR,
        static_url_path="/static",
    )
    auth: Callable[[Callable[..., Any]], Callable[..., Any]] = web_ui.auth_required_if_enabled

    @blueprint.route("/")
    @auth
    def charts_page() -> Response:
        return make_response(_read_static(_CHARTS_PAGE), 200, {"Content-Type": "text/html; charset=utf-8"})

    @blueprint.route("/stats.json")
    @auth
    def stats_json() -> Response:
        llm_stats = _llm_stats(environment)
        body: dict[str, Any] = {"rows": _json_rows(llm_stats.rows())}
        percentiles = getattr(llm_stats, "percentiles", None)
        if percentiles is not None:
            body["percentiles"] = list(percentiles)
        return jsonify(body)

    @blueprint.route("/history.json")
    @auth
    def history_json() -> Response:
        since = request.args.get("since", type=float)
        return jsonify(history_since(_llm_stats(environment).history, since))

    @blueprint.route("/stats.csv")
    @auth
    def stats_csv() -> Response:
        response = make_response(rows_csv(_llm_stats(environment).rows()))
        response.headers["Content-Type"] = "text/csv; charset=utf-8"
        response.headers["Content-Disposition"] = f"attachment;filename=llm_stats_{int(time.time())}.csv"
        return response

    return blueprint


def _locust_base_path(web_ui: WebUI) -> str:
    """Return the URL prefix of Locust's own routes (``--web-base-path``), without a trailing slash."""
    assert web_ui.app is not None
    blueprint = web_ui.app.blueprints.get("locust")
    prefix = blueprint.url_prefix if blueprint is not None else None
    return (prefix or "").rstrip("/")


def register_web_ui(environment: Environment) -> None:
    """Add the LLM tab, its data routes and the report section to Locust's web UI.

    Call it from Locust's ``init`` event, before the web UI starts serving
    requests, because Flask rejects new routes after that. It does nothing when
    the environment has no web UI (headless runs and workers), and nothing on a
    second call. It also calls ``register_html_report``.

    Routes, below ``--web-base-path`` and behind ``--web-login`` when set:

    * ``/llm/``: page with the charts of ``LLMStats.history``.
    * ``/llm/stats.json``: ``{"rows": LLMStats.rows(), "percentiles": [...]}``.
    * ``/llm/history.json?since=EPOCH_S``: ``{"start", "history"}``, see ``history_since``.
    * ``/llm/stats.csv``: the rows as a CSV download.
    """
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        logger.debug("No web UI, so the LLM tab is not added")
        return
    if getattr(web_ui, _WEB_UI_MARK, False):
        return
    setattr(web_ui, _WEB_UI_MARK, True)

    base_path = _locust_base_path(web_ui)
    web_ui.app.register_blueprint(_make_blueprint(web_ui, environment, base_path + URL_PREFIX))
    _update_template_args(web_ui, environment)

    @web_ui.app.after_request
    def extend_locust_responses(response: Response) -> Response:
        endpoint = request.endpoint
        if endpoint == _LOCUST_REQUEST_STATS and _is_ok(response, "application/json"):
            return _add_extended_stats(response, environment)
        if endpoint == _LOCUST_INDEX and _is_ok(response, "text/html"):
            return _add_tab_script(response)
        if endpoint == _LOCUST_STATS_REPORT and _is_ok(response, "text/html"):
            response.set_data(add_report_section(response.get_data(as_text=True), _llm_stats(environment)))
        return response

    @web_ui.app.before_request
    def refresh_template_args() -> None:
        # The index view renders template_args, so the table columns must be current before it runs.
        if request.endpoint == _LOCUST_INDEX:
            _update_template_args(web_ui, environment)

    register_html_report(environment)
    logger.debug("Added the LLM tab to the web UI at %s%s/", base_path, URL_PREFIX)


# --- HTML report ---------------------------------------------------------------


def _insert_before_body_end(page: str, fragment: str) -> str:
    end = page.rfind("</body>")
    if end == -1:
        return page + fragment
    return page[:end] + fragment + page[end:]


def _script_json(value: Any) -> str:
    # "</" inside a script element would end it early, so escape the slash.
    return json.dumps(value, allow_nan=False).replace("</", "<\\/")


def report_section(llm_stats: _LLMStatsSource) -> str:
    """Render the LLM section for Locust's HTML report: a table of the rows and charts of the history.

    The table is plain HTML, so it reads without JavaScript. The stylesheet and
    ``llm-charts.js`` are inlined, because a saved report loads no other file.
    """
    rows = llm_stats.rows()
    columns = _columns(rows)
    head = "".join(f"<th>{html.escape(column_title(key))}</th>" for key in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format_cell(row.get(key)))}</td>" for key in columns) + "</tr>"
        for row in rows
    )
    history = _json_rows(llm_stats.history)
    return (
        f'<section id="{REPORT_SECTION_ID}" class="llm-report">'
        f"<style>{_read_static(_STYLESHEET)}</style>"
        "<h2>LLM Statistics</h2>"
        f'<div class="llm-table-wrapper"><table class="llm-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
        "<h2>LLM Charts</h2>"
        '<div class="llm-report-charts"></div>'
        f"<script>{_read_static(_CHARTS_SCRIPT)}</script>"
        "<script>LocustLlmCharts.render("
        f'document.querySelector("#{REPORT_SECTION_ID} .llm-report-charts"), {_script_json(history)});'
        "</script>"
        "</section>"
    )


def add_report_section(page: str, llm_stats: _LLMStatsSource) -> str:
    """Insert the LLM section at the end of a Locust HTML report, unless the page already has it."""
    if f'id="{REPORT_SECTION_ID}"' in page:
        return page
    return _insert_before_body_end(page, report_section(llm_stats))


def _add_section_to_report_file(environment: Environment, path: str, started_at: float) -> None:
    try:
        modified_at = os.path.getmtime(path)
    except OSError:
        # Locust writes no report when it stops on SIGTERM.
        logger.debug("No HTML report at %s, so no LLM section was added", path)
        return
    if modified_at < started_at:
        logger.warning("HTML report %s is older than this run, so no LLM section was added", path)
        return
    try:
        with open(path, encoding="utf-8") as file:
            page = file.read()
        with open(path, "w", encoding="utf-8") as file:
            file.write(add_report_section(page, _llm_stats(environment)))
    except OSError as error:
        logger.error("Failed to add the LLM section to HTML report %s: %s", path, error)
        return
    logger.debug("Added the LLM section to HTML report %s", path)


def register_html_report(environment: Environment) -> None:
    """Add the LLM section to the report that ``--html`` writes, and to the web UI's report.

    Call it from Locust's ``init`` event on every process, headless or not. It
    does nothing on a worker and nothing on a second call. Locust 2.47 writes
    the ``--html`` file just before it fires ``quit``, so a ``quit`` listener
    rewrites the file then. The web UI's report download gets the section when
    ``register_web_ui`` has run.
    """
    if isinstance(environment.runner, WorkerRunner):
        return
    if getattr(environment, _REPORT_MARK, False):
        return
    setattr(environment, _REPORT_MARK, True)
    started_at = time.time()

    def add_to_report_file(**_kwargs: Any) -> None:
        path = getattr(environment.parsed_options, "html_file", None)
        if path:
            _add_section_to_report_file(environment, path, started_at)

    environment.events.quit.add_listener(add_to_report_file)
