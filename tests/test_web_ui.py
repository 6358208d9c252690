"""Tests of the LLM tab in Locust's web UI and of the LLM section in Locust's HTML report.

Three layers:

* Pure functions of ``locust_llm_sse.metrics._web`` (titles, CSV, report HTML).
* The Flask routes and hooks, in process, against a small stand-in for ``LLMStats``.
* Real ``locust`` processes against the bundled mock server (the ``mock_url``
  fixture of conftest.py): the ``--html`` report, the data routes of a running web
  UI, and a headless Chromium that opens the LLM tab. The browser test is skipped
  when Debian's ``chromium`` and ``chromium-driver`` packages or the ``selenium``
  package are missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from locust import User, task
from locust.env import Environment

from locust_llm_sse.metrics import _web

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGUMENTS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1600",
)

LOCUSTFILE = '''
from locust import constant, task

import locust_llm_sse.metrics  # noqa: F401  (registers the LLM metrics, tab and report)
from locust_llm_sse import LLMUser


class ChatUser(LLMUser):
    wait_time = constant(0.1)

    @task
    def chat(self):
        self.client.chat("Say hello.", max_tokens=20, name="chat")
'''

# --- Pure functions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "title"),
    [
        ("name", "Name"),
        ("requests_completed", "Requests completed"),
        ("output_tokens_per_second", "Output tokens/s"),
        ("request_output_tokens_per_second_p50", "Request output tokens/s p50"),
        ("ttft_ms_p50", "TTFT p50 (ms)"),
        ("ttft_ms_p99_9", "TTFT p99.9 (ms)"),
        ("itl_ms_mean", "ITL mean (ms)"),
        ("tpot_ms_p95", "TPOT p95 (ms)"),
        ("e2e_latency_ms_p50", "E2E latency p50 (ms)"),
        ("time_to_first_visible_token_ms_p50", "Time to first visible token p50 (ms)"),
        ("ms", "ms"),
        ("", ""),
    ],
)
def test_column_title_cases(key: str, title: str) -> None:
    assert _web.column_title(key) == title


def test_table_structure_keeps_key_order() -> None:
    rows = [{"name": "a", "requests_completed": 1}, {"name": "Aggregated", "requests_completed": 1, "extra": 2}]

    structure = _web.table_structure(rows)

    assert [column["key"] for column in structure] == ["name", "requests_completed", "extra"]
    assert structure[1]["title"] == "Requests completed"


def test_history_since_filters_and_reports_start() -> None:
    history = [{"time": 100.0, "ttft_ms_p50": 1.0}, {"time": 101.0, "ttft_ms_p50": float("nan")}]

    everything = _web.history_since(history, None)
    newer = _web.history_since(history, 100.0)
    empty = _web.history_since([], 100.0)

    assert everything["start"] == 100.0
    assert len(everything["history"]) == 2
    assert newer["history"] == [{"time": 101.0, "ttft_ms_p50": None}]
    assert empty == {"start": None, "history": []}


def test_rows_csv_writes_header_and_blank_none() -> None:
    rows = [{"name": "chat", "ttft_ms_p50": None, "requests_completed": 3}]

    text = _web.rows_csv(rows)

    assert text == "name,ttft_ms_p50,requests_completed\nchat,,3\n"


def test_report_section_escapes_and_inserts_once() -> None:
    stats = FakeLLMStats(
        rows=[
            {"name": "<script>alert(1)</script>", "requests_completed": 2, "ttft_ms_p50": 12.345},
            {"name": "Aggregated", "requests_completed": 2, "ttft_ms_p50": None},
        ],
        history=[{"time": 1.0, "output_tokens_per_second": 5.0, "note": "</script>"}],
    )
    page = "<html><body><div id=root></div></body></html>"

    once = _web.add_report_section(page, stats)
    twice = _web.add_report_section(once, stats)

    assert twice == once
    assert once.count(_web.REPORT_SECTION_ID) == 2  # the section id and the chart selector
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in once
    assert "<script>alert(1)</script>" not in once
    assert "<\\/script>" in once
    assert once.endswith("</section></body></html>")
    table = parse_report_table(once)
    assert table[0]["TTFT p50 (ms)"] == "12.35"
    assert table[1]["TTFT p50 (ms)"] == ""


# --- Flask routes, in process -------------------------------------------------


class FakeLLMStats:
    """Stand-in for ``LLMStats`` with fixed rows and history."""

    def __init__(self, rows: list[dict[str, Any]], history: list[dict[str, Any]] | None = None) -> None:
        self._rows = rows
        self.history = history or []
        self.percentiles = [0.5, 0.95]

    def rows(self) -> list[dict[str, Any]]:
        return self._rows


FAKE_ROWS = [
    {"name": "chat", "requests_completed": 7, "requests_failed": 1, "output_tokens_per_second": 123.456, "ttft_ms_p50": None},
    {"name": "Aggregated", "requests_completed": 7, "requests_failed": 1, "output_tokens_per_second": 123.456, "ttft_ms_p50": 40.0},
]
FAKE_HISTORY = [
    {"time": 1000.0 + second, "output_tokens_per_second": 10.0 * second, "ttft_ms_p50": 40.0, "ttft_ms_p95": 50.0,
     "itl_ms_p50": 2.0, "itl_ms_p95": float("inf"), "requests_per_second": 1.0}
    for second in range(4)
]


class _IdleUser(User):
    @task
    def idle(self) -> None:
        pass


def make_web_ui(monkeypatch: pytest.MonkeyPatch, web_login: bool = False, web_base_path: str | None = None) -> Any:
    """Create an Environment with a web UI that is not serving, and register the LLM tab on it."""
    stats = FakeLLMStats(FAKE_ROWS, FAKE_HISTORY)
    monkeypatch.setattr(_web, "_llm_stats", lambda environment: stats)
    # Locust's web UI parses sys.argv for extra options, which here are pytest's.
    monkeypatch.setattr(sys, "argv", ["locust"])
    environment = Environment(user_classes=[_IdleUser])
    environment.create_local_runner()
    web_ui = environment.create_web_ui(
        "127.0.0.1", 0, web_login=web_login, web_base_path=web_base_path, delayed_start=True
    )
    if web_login:
        web_ui.app.secret_key = "test"
        web_ui.login_manager.user_loader(lambda user_id: None)
    _web.register_web_ui(environment)
    return web_ui


def test_index_has_tab_table_and_script(monkeypatch: pytest.MonkeyPatch) -> None:
    web_ui = make_web_ui(monkeypatch)

    response = web_ui.app.test_client().get("/")

    assert response.status_code == 200
    assert '<script src="./llm/static/llm-tab.js" defer></script>' in response.text
    args = web_ui.template_args
    assert {"key": "llm", "title": "LLM"} in args["extended_tabs"]
    table = next(table for table in args["extended_tables"] if table["key"] == "llm")
    assert table["structure"][0] == {"key": "name", "title": "Name"}
    assert {"key": "ttft_ms_p50", "title": "TTFT p50 (ms)"} in table["structure"]
    assert {"href": "./llm/stats.csv", "title": "Download LLM statistics CSV"} in args["extended_csv_files"]


def test_request_stats_include_llm_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    web_ui = make_web_ui(monkeypatch)

    body = web_ui.app.test_client().get("/stats/requests").get_json()

    assert body["state"] == "ready"  # Locust's own fields are kept
    extended = {entry["key"]: entry["data"] for entry in body["extended_stats"]}
    assert extended["llm"][0]["name"] == "chat"
    assert extended["llm"][0]["output_tokens_per_second"] == 123.46
    assert extended["llm"][0]["ttft_ms_p50"] is None
    assert extended["llm"][1]["name"] == "Aggregated"


def test_data_routes_return_rows_and_history(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_web_ui(monkeypatch).app.test_client()

    stats = client.get("/llm/stats.json").get_json()
    history = client.get("/llm/history.json").get_json()
    newer = client.get("/llm/history.json?since=1002").get_json()
    csv_response = client.get("/llm/stats.csv")

    assert stats["rows"] == FAKE_ROWS
    assert stats["percentiles"] == [0.5, 0.95]
    assert history["start"] == 1000.0
    assert len(history["history"]) == 4
    assert history["history"][0]["itl_ms_p95"] is None
    assert [entry["time"] for entry in newer["history"]] == [1003.0]
    assert csv_response.mimetype == "text/csv"
    assert "attachment" in csv_response.headers["Content-Disposition"]
    assert csv_response.text.splitlines()[2].startswith("Aggregated,7,1,123.456,40.0")


def test_charts_page_and_static_files(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_web_ui(monkeypatch).app.test_client()

    page = client.get("/llm/")
    redirect = client.get("/llm")
    script = client.get("/llm/static/llm-charts.js")

    assert page.status_code == 200
    assert 'src="static/llm-charts.js"' in page.text
    assert redirect.status_code in (301, 308)
    assert script.status_code == 200
    assert "LocustLlmCharts" in script.text


def test_report_download_has_llm_section(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_web_ui(monkeypatch).app.test_client()

    page = client.get("/stats/report?download=1").text

    table = parse_report_table(page)
    assert [row["Name"] for row in table] == ["chat", "Aggregated"]
    assert table[1]["Output tokens/s"] == "123.46"


def test_web_base_path_prefixes_llm_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_web_ui(monkeypatch, web_base_path="/load").app.test_client()

    index = client.get("/load/")
    stats = client.get("/load/stats/requests").get_json()

    assert index.status_code == 200
    assert '<script src="./llm/static/llm-tab.js" defer></script>' in index.text
    assert stats["extended_stats"][0]["key"] == "llm"
    assert client.get("/load/llm/stats.json").status_code == 200
    assert client.get("/load/llm/static/llm-tab.js").status_code == 200
    assert client.get("/llm/stats.json").status_code == 404


def test_register_web_ui_twice_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    web_ui = make_web_ui(monkeypatch)

    _web.register_web_ui(web_ui.environment)
    body = web_ui.app.test_client().get("/stats/requests").get_json()

    assert [entry["key"] for entry in body["extended_stats"]] == ["llm"]
    assert [tab["key"] for tab in web_ui.template_args["extended_tabs"]] == ["llm"]


def test_register_web_ui_without_web_ui_does_nothing() -> None:
    environment = Environment(user_classes=[_IdleUser])

    _web.register_web_ui(environment)

    assert environment.web_ui is None


def test_web_login_protects_llm_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_web_ui(monkeypatch, web_login=True).app.test_client()

    for path in ("/llm/", "/llm/stats.json", "/llm/history.json", "/llm/stats.csv"):
        response = client.get(path)
        assert response.status_code in (302, 401), path
        assert b"chat" not in response.data, path
    stats = client.get("/stats/requests")
    assert stats.status_code in (302, 401)
    assert b"extended_stats" not in stats.data


def make_report_environment(monkeypatch: pytest.MonkeyPatch, report: Path) -> Environment:
    monkeypatch.setattr(_web, "_llm_stats", lambda environment: FakeLLMStats(FAKE_ROWS, FAKE_HISTORY))
    environment = Environment(user_classes=[_IdleUser], parsed_options=argparse.Namespace(html_file=str(report)))
    environment.create_local_runner()
    _web.register_html_report(environment)
    return environment


def test_quit_adds_section_to_html_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    environment = make_report_environment(monkeypatch, report)
    report.write_text("<html><body><div id=root></div></body></html>", encoding="utf-8")

    environment.events.quit.fire(exit_code=0)

    assert [row["Name"] for row in parse_report_table(report.read_text(encoding="utf-8"))] == ["chat", "Aggregated"]


def test_quit_skips_html_file_older_than_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text("<html><body>old</body></html>", encoding="utf-8")
    os.utime(report, (time.time() - 3600, time.time() - 3600))
    environment = make_report_environment(monkeypatch, report)

    environment.events.quit.fire(exit_code=0)

    assert report.read_text(encoding="utf-8") == "<html><body>old</body></html>"


def test_quit_without_html_file_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = tmp_path / "missing" / "report.html"
    environment = make_report_environment(monkeypatch, report)

    environment.events.quit.fire(exit_code=0)

    assert not report.parent.exists()


# --- Real locust processes -----------------------------------------------------


class ReportTableParser(HTMLParser):
    """Collect the header and cell texts of the table in the LLM report section."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._in_section = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section" and ("id", _web.REPORT_SECTION_ID) in attrs:
            self._in_section = True
        elif self._in_section and tag == "tr":
            self.rows.append([])
        elif self._in_section and tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._in_section = False
        elif self._cell is not None and tag in ("th", "td"):
            text = "".join(self._cell)
            (self.headers if tag == "th" else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_report_table(page: str) -> list[dict[str, str]]:
    """Return the rows of the LLM report table as dicts from column title to cell text."""
    parser = ReportTableParser()
    parser.feed(page)
    return [dict(zip(parser.headers, row)) for row in parser.rows if row]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout_s: float, message: str, interval_s: float = 0.25) -> Any:
    """Call ``condition`` until it returns a true value, and return that value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s: {message}")
        time.sleep(interval_s)


@pytest.fixture
def locustfile(tmp_path: Path) -> Path:
    path = tmp_path / "llm_locustfile.py"
    path.write_text(LOCUSTFILE, encoding="utf-8")
    return path


class LocustProcess:
    """A ``locust`` child process whose output goes to a file. ``stop`` ends it by PID."""

    def __init__(self, arguments: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "locust", *arguments],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"locust did not exit within {timeout_s:g} s; output:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def web_locust(tmp_path: Path, mock_url: str, locustfile: Path) -> Iterator[tuple[str, LocustProcess]]:
    """Start locust with its web UI on a free port and a bounded, automatically started run."""
    port = free_port()
    process = LocustProcess(
        [
            "-f", str(locustfile), "--host", mock_url,
            "--web-host", "127.0.0.1", "--web-port", str(port),
            "-u", "2", "-r", "2", "--run-time", "20s", "--autostart", "--autoquit", "10",
        ],
        tmp_path / "locust.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _responds(url + "/", process), 20, "locust web UI did not answer")
        yield url, process
    finally:
        process.stop()


def _responds(url: str, process: LocustProcess) -> bool:
    if process.process.poll() is not None:
        pytest.fail(f"locust exited with {process.process.returncode}; output:\n{process.output()[-3000:]}")
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def aggregated_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    assert rows[-1]["name"] == "Aggregated"
    return rows[-1]


def test_html_report_has_llm_table(tmp_path: Path, mock_url: str, locustfile: Path) -> None:
    report = tmp_path / "report.html"
    process = LocustProcess(
        [
            "-f", str(locustfile), "--host", mock_url, "--headless",
            "-u", "2", "-r", "2", "--run-time", "4s", "--html", str(report),
        ],
        tmp_path / "locust.log",
    )

    code = process.wait(timeout_s=40)

    assert code == 0, process.output()[-3000:]
    page = report.read_text(encoding="utf-8")
    table = parse_report_table(page)
    assert [row["Name"] for row in table] == ["chat", "Aggregated"]
    assert int(table[-1]["Requests completed"]) > 0
    assert float(table[-1]["Output tokens/s"]) > 0
    assert 'class="llm-report-charts"' in page
    assert page.count(f'id="{_web.REPORT_SECTION_ID}"') == 1


def test_running_web_ui_serves_llm_rows(web_locust: tuple[str, LocustProcess]) -> None:
    url, _process = web_locust

    def llm_rows() -> list[dict[str, Any]] | None:
        body = requests.get(url + "/stats/requests", timeout=5).json()
        rows = {entry["key"]: entry["data"] for entry in body.get("extended_stats", [])}.get("llm")
        if rows and rows[-1]["requests_completed"]:
            return rows
        return None

    table_rows = wait_until(llm_rows, 20, "no completed LLM requests in /stats/requests")
    json_rows = requests.get(url + "/llm/stats.json", timeout=5).json()["rows"]
    history = wait_until(
        lambda: requests.get(url + "/llm/history.json", timeout=5).json()["history"], 10, "no LLM history entries"
    )
    report = requests.get(url + "/stats/report?download=1", timeout=10).text

    assert [row["name"] for row in table_rows] == ["chat", "Aggregated"]
    assert [row["name"] for row in json_rows] == ["chat", "Aggregated"]
    assert aggregated_row(json_rows)["requests_completed"] >= aggregated_row(table_rows)["requests_completed"]
    assert set(table_rows[0]) == set(json_rows[0])
    assert history[-1]["time"] > 0
    assert int(parse_report_table(report)[-1]["Requests completed"]) > 0


# --- Headless Chromium -----------------------------------------------------------


def chromium_skip_reason() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: install Debian's {package} package"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    reason = chromium_skip_reason()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="llm-web-ui-chromium-")
    options = webdriver.ChromeOptions()
    # With both paths given, Selenium runs neither Selenium Manager nor any download.
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def read_ui_table(driver: Any) -> list[dict[str, str]]:
    """Return the rows of the table shown in the current tab, as dicts from header to cell text."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        tables = driver.find_elements(By.TAG_NAME, "table")
        if not tables:
            return []
        headers = [cell.text.replace("\n", " ").strip() for cell in tables[0].find_elements(By.CSS_SELECTOR, "thead th")]
        return [
            dict(zip(headers, (cell.text.strip() for cell in row.find_elements(By.TAG_NAME, "td"))))
            for row in tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
    except StaleElementReferenceException:
        # React re-rendered the table between two look-ups; the caller polls again.
        return []


def click_button(driver: Any, selector: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    elements = [element for element in driver.find_elements(By.CSS_SELECTOR, selector) if element.text.strip().lower() == text.lower()]
    assert elements, f"no {selector} element with text {text!r}"
    elements[0].click()


def aggregated_ui_row(driver: Any) -> dict[str, str] | None:
    return next((row for row in read_ui_table(driver) if row.get("Name") == "Aggregated"), None)


def completed_ui_row(driver: Any) -> dict[str, str] | None:
    """Return the Aggregated row of the shown table once it counts a completed request."""
    row = aggregated_ui_row(driver)
    if row is None or float(row.get("Requests completed") or 0) == 0:
        return None
    return row


def output_chart_points(driver: Any) -> int:
    """Return the number of points in the output tokens chart below the LLM table, 0 while it is missing."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    selector = '#llm-tab-charts figure[data-chart="output-tokens-per-second"]'
    try:
        figures = driver.find_elements(By.CSS_SELECTOR, selector)
        return int(figures[0].get_attribute("data-points") or 0) if figures else 0
    except StaleElementReferenceException:
        return 0


def test_browser_shows_llm_tab(browser: Any, web_locust: tuple[str, LocustProcess]) -> None:
    from selenium.webdriver.common.by import By

    url, _process = web_locust
    browser.get(url + "/")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '[role="tab"]'), 20, "Locust's tabs did not appear")

    click_button(browser, '[role="tab"]', "LLM")
    live = wait_until(lambda: completed_ui_row(browser), 20, "the LLM tab shows no completed requests")
    assert float(live["Output tokens/s"]) > 0
    wait_until(lambda: output_chart_points(browser) > 0, 10, "the LLM tab shows no output tokens chart with points")

    click_button(browser, "button", "Stop")
    wait_until(lambda: requests.get(url + "/stats/requests", timeout=5).json()["state"] == "stopped", 15, "the run did not stop")
    browser.get(url + "/?tab=llm")
    final = wait_until(lambda: aggregated_ui_row(browser), 15, "the LLM table did not load after the run stopped")
    expected = aggregated_row(requests.get(url + "/llm/stats.json", timeout=5).json()["rows"])
    assert int(final["Requests completed"]) == expected["requests_completed"]
    assert int(final["Output tokens total"]) == expected["output_tokens_total"]
    assert float(final["Output tokens/s"]) == pytest.approx(expected["output_tokens_per_second"], abs=0.006)
    assert float(final["TTFT p50 (ms)"]) == pytest.approx(expected["ttft_ms_p50"], abs=0.006)

    click_button(browser, "button", "Reset")
    wait_until(
        lambda: aggregated_row(requests.get(url + "/llm/stats.json", timeout=5).json()["rows"])["requests_completed"] == 0,
        10,
        "Reset in the web UI did not reset the LLM statistics",
    )
    browser.get(url + "/?tab=llm")
    after_reset = wait_until(lambda: aggregated_ui_row(browser), 15, "the LLM table did not load after the reset")
    assert after_reset["Requests completed"] == "0"
