"""Load-test an OpenAI-compatible chat endpoint with streaming responses.

    locust -f locustfiles/chat.py                                  # bundled mock server
    locust -f locustfiles/chat.py --host http://127.0.0.1:8000/v1  # vLLM, llama.cpp, TGI, ...
    OPENAI_API_KEY=... locust -f locustfiles/chat.py --host https://api.openai.com --model gpt-4o-mini

Without ``--host`` the bundled mock LLM server starts as a child process on 127.0.0.1 and
stops with Locust. Every option below also works as the environment variable named in
``env_var`` and in ``locust.conf``, and all but the API key and the mock options show in
the web UI's start form.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import math
import shlex
import threading
from typing import Any
from urllib.parse import urlsplit

import gevent
import requests
from locust import events, task
from locust.exception import StopTest
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from locust_llm_sse import LLMUser
from locust_llm_sse._url import join_url, validate_base_url
from locust_llm_sse.mock._process import MockServerError, MockServerProcess

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "Write a short poem about load testing."
MAX_FAILURE_PAUSE_S = 60.0


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    # Locust's own add_argument, not an argument group's, takes include_in_web_ui.
    parser.add_argument("--model", env_var="LOCUST_MODEL", default="", help="Model name sent in each request")

    parser.add_argument("--prompt", env_var="LOCUST_PROMPT", default=DEFAULT_PROMPT, help="User prompt of each request")

    parser.add_argument(
        "--prompts-file",
        env_var="LOCUST_PROMPTS_FILE",
        default="",
        help="File of prompts used in turn instead of --prompt: one prompt per line, or JSON Lines "
        'where each line is a string, {"prompt": ...} or {"messages": [...]}',
    )

    parser.add_argument(
        "--max-tokens", env_var="LOCUST_MAX_TOKENS", type=int, default=128, help="max_tokens of each request"
    )

    parser.add_argument(
        "--extra-body",
        env_var="LOCUST_EXTRA_BODY",
        default="",
        help='JSON object merged into each request body, e.g. \'{"temperature": 0}\'',
    )

    parser.add_argument(
        "--endpoint",
        env_var="LOCUST_ENDPOINT",
        choices=["chat", "completions"],
        default="chat",
        help="chat: /v1/chat/completions with messages; completions: /v1/completions with a prompt",
    )

    parser.add_argument(
        "--api-key",
        env_var="OPENAI_API_KEY",
        default="",
        # Kept out of the web UI: its start form would carry the key in the page source.
        include_in_web_ui=False,
        help="Bearer token for the Authorization header (default: the OPENAI_API_KEY environment variable)",
    )

    parser.add_argument(
        "--no-api-key",
        env_var="LOCUST_NO_API_KEY",
        action="store_true",
        default=False,
        help="Send no Authorization header, also to a remote host (servers without authentication)",
    )

    parser.add_argument(
        "--no-usage",
        env_var="LOCUST_NO_USAGE",
        action="store_true",
        default=False,
        help='Do not send stream_options {"include_usage": true}; token counts are then estimated',
    )

    parser.add_argument(
        "--allow-missing-finish-reason",
        env_var="LOCUST_ALLOW_MISSING_FINISH_REASON",
        action="store_true",
        default=False,
        help="Count a stream that ends without a finish reason as a success",
    )

    parser.add_argument(
        "--connect-timeout", env_var="LOCUST_CONNECT_TIMEOUT", type=float, default=10.0, help="Seconds to connect"
    )

    parser.add_argument(
        "--first-token-timeout",
        env_var="LOCUST_FIRST_TOKEN_TIMEOUT",
        type=float,
        default=60.0,
        help="Seconds from sending a request to its first output token",
    )

    parser.add_argument(
        "--inter-token-timeout",
        env_var="LOCUST_INTER_TOKEN_TIMEOUT",
        type=float,
        default=30.0,
        help="Seconds a stream may stay silent once output has started",
    )

    parser.add_argument(
        "--failure-pause",
        env_var="LOCUST_FAILURE_PAUSE",
        type=float,
        default=1.0,
        help="Seconds a user waits after a request that failed before its first token (connection "
        "error, HTTP error, empty stream); a longer Retry-After header lengthens the wait "
        f"(to at most {MAX_FAILURE_PAUSE_S:g} s); 0 turns it off",
    )

    parser.add_argument(
        "--mock-options",
        env_var="LOCUST_MOCK_OPTIONS",
        default="",
        # The mock starts once, before the web UI, so the start form could not change these.
        include_in_web_ui=False,
        help="Options for the bundled mock server started when no --host is given, "
        'e.g. "--ttft-ms 200 --itl-ms 20" (see python -m locust_llm_sse.mock --help)',
    )


_mock_server: MockServerProcess | None = None


@events.init.add_listener
def start_mock_when_no_host(environment, **_kwargs) -> None:
    """Start the bundled mock server when no host is given (not on workers: the master sends its host)."""
    global _mock_server
    if environment.host or isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    mock_options = options.mock_options if options is not None else ""
    try:
        mock_arguments = shlex.split(mock_options)
    except ValueError as error:
        logger.error("invalid --mock-options %r: %s; quote it as a shell would", mock_options, error)
        raise SystemExit(1) from None
    _mock_server = MockServerProcess(*mock_arguments)
    try:
        environment.host = _mock_server.start() + "/v1"
    except MockServerError as error:
        logger.error("The bundled mock server did not start with --mock-options %r: %s", mock_options, error)
        raise SystemExit(1) from None
    logger.info("No --host given: started the bundled mock LLM server at %s (PID %d)", environment.host, _mock_server.pid)
    gevent.spawn(_watch_mock_server, environment, _mock_server)


def _watch_mock_server(environment, mock_server: MockServerProcess) -> None:
    """Stop the test when the bundled mock server exits on its own, since nothing can be measured then."""
    while True:
        gevent.sleep(1.0)
        if mock_server.base_url_or_none() is None:
            return  # stopped by the quitting listener
        status = mock_server.exit_status()
        if status is not None:
            logger.error("The bundled mock server (PID %d) exited with status %d; stopping the test", mock_server.pid, status)
            environment.process_exit_code = 1
            if environment.runner is not None:
                environment.runner.quit()
            return


@events.init.add_listener
def validate_settings_when_headless(environment, **_kwargs) -> None:
    """Check the options before a headless run starts, and exit with status 1 and the fix if one is bad.

    With the web UI the check waits for the start of a test, because the start form can
    still change the options. A bad option then stops that test with the same message.
    """
    options = environment.parsed_options
    if options is None or not options.headless or isinstance(environment.runner, WorkerRunner):
        return
    if isinstance(environment.runner, MasterRunner):
        return  # checked at test start, so that the master can stop its workers (see reload_settings)
    try:
        ChatUser.load_settings(environment)
    except StopTest as error:
        logger.error("%s", error)
        raise SystemExit(1) from None


@events.test_start.add_listener
def reload_settings(environment, **_kwargs) -> None:
    """Read the options again at each test start, because the web UI's start form may have changed them.

    A master checks them too: its workers would stop their users on a bad value, but
    the master would go on waiting for them. A headless master then quits with exit code
    1, which also ends its workers; with the web UI it stops the test.
    """
    ChatUser.forget_settings()
    if not isinstance(environment.runner, MasterRunner):
        return
    try:
        ChatUser.load_settings(environment)
    except StopTest as error:
        logger.error("%s", error)
        options = environment.parsed_options
        if options is not None and options.headless:
            environment.process_exit_code = 1
            gevent.spawn_later(0, environment.runner.quit)
        else:
            gevent.spawn_later(0, environment.runner.stop)


@events.quitting.add_listener
def stop_mock(environment, **_kwargs) -> None:
    """Stop the bundled mock server once the users have stopped.

    On Ctrl-C, Locust fires ``quitting`` while users are still streaming, so the users are
    stopped first: their cut streams then count as stopped, not as the server's failures.
    """
    if _mock_server is None:
        return
    runner = environment.runner
    if runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
        runner.stop()
    _mock_server.stop()


class ChatUser(LLMUser):
    """Streams one chat completion per task, with the settings of the command line above."""

    _settings: dict[str, Any] | None = None
    _settings_lock = threading.Lock()
    _prompts: itertools.cycle | None = None

    def __init__(self, environment) -> None:
        settings = self.load_settings(environment)
        self.model = settings["model"]
        self.api_key = settings["api_key"]
        self.extra_body = settings["extra_body"]
        self.include_usage = settings["include_usage"]
        self.require_finish_reason = settings["require_finish_reason"]
        self.connect_timeout = settings["connect_timeout"]
        self.first_token_timeout = settings["first_token_timeout"]
        self.inter_token_timeout = settings["inter_token_timeout"]
        super().__init__(environment)
        self.max_tokens = settings["max_tokens"]
        self.endpoint = settings["endpoint"]

        self.failure_pause = settings["failure_pause"]

    @task
    def chat(self) -> None:
        prompt = next(ChatUser._prompts)  # type: ignore[arg-type]
        if self.endpoint == "completions":
            text = prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)
            result = self.client.completion(text, max_tokens=self.max_tokens)
        else:
            result = self.client.chat(prompt, max_tokens=self.max_tokens)
        if not result.ok and result.first_token_at is None and not result.stopped:
            # Without a pause, a refused connection, a 429 or an empty stream would repeat
            # thousands of times a second.
            pause = max(result.retry_after_s or 0.0, self.failure_pause)
            gevent.sleep(min(pause, MAX_FAILURE_PAUSE_S))

    @classmethod
    def load_settings(cls, environment) -> dict[str, Any]:
        """Validate the options once per process; raise StopTest with the fix on a bad value."""
        with cls._settings_lock:
            if cls._settings is None or cls._settings["host"] != environment.host:
                cls._settings = _read_settings(environment)
                cls._prompts = itertools.cycle(cls._settings["prompts"])
            return cls._settings

    @classmethod
    def forget_settings(cls) -> None:
        with cls._settings_lock:
            cls._settings = None


def _read_settings(environment) -> dict[str, Any]:
    options = environment.parsed_options
    host = environment.host or ChatUser.host
    if not host:
        raise StopTest("No host set: pass --host with the server's base URL, e.g. http://127.0.0.1:8000/v1")
    try:
        validate_base_url(host)
    except ValueError as error:
        raise StopTest(str(error)) from None

    is_mock = _mock_server is not None and host.startswith(_mock_server.base_url)
    for option in ("max_tokens", "connect_timeout", "first_token_timeout", "inter_token_timeout"):
        value = getattr(options, option)
        if value is None or not 0 < value < math.inf:
            flag = "--" + option.replace("_", "-")
            raise StopTest(f"invalid {flag} {value!r}: expected a finite number greater than 0")
    if options.failure_pause is None or not 0 <= options.failure_pause < math.inf:
        raise StopTest(f"invalid --failure-pause {options.failure_pause!r}: expected a finite number of seconds, 0 or more")

    api_key = None if options.no_api_key else (options.api_key or None)
    if api_key is None and not options.no_api_key and not is_mock and not _is_loopback(host):
        raise StopTest(
            f"No API key for {host}: set OPENAI_API_KEY or pass --api-key; "
            "for a server without authentication pass --no-api-key"
        )

    model = options.model or None
    if model is None and not is_mock:
        model = _only_served_model(host, api_key)
    return {
        "host": environment.host,
        "model": model,
        "api_key": api_key,
        "extra_body": _parse_extra_body(options.extra_body),
        "prompts": _load_prompts(options.prompts_file) if options.prompts_file else [options.prompt],
        "max_tokens": options.max_tokens,
        "endpoint": options.endpoint,
        "include_usage": not options.no_usage,
        "require_finish_reason": not options.allow_missing_finish_reason,
        "connect_timeout": options.connect_timeout,
        "first_token_timeout": options.first_token_timeout,
        "inter_token_timeout": options.inter_token_timeout,
        "failure_pause": options.failure_pause,
    }


def _is_loopback(host: str) -> bool:
    hostname = urlsplit(host).hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


_models_logged: set[tuple[str, str]] = set()


def _only_served_model(host: str, api_key: str | None) -> str:
    """Return the model when the server lists exactly one; otherwise raise StopTest asking for --model."""
    url = join_url(host, "/v1/models")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = requests.get(url, headers=headers, timeout=10)
    except requests.ConnectionError:
        raise StopTest(f"Cannot connect to {url}: check --host (is the server running?), or pass --model") from None
    except requests.RequestException as error:
        raise StopTest(f"No model set and {url} failed ({type(error).__name__}): pass --model") from None
    if response.status_code != 200:
        raise StopTest(
            f"No model set and {url} returned HTTP {response.status_code}: pass --model, and check that "
            "--host is the API's base URL (e.g. http://127.0.0.1:8000/v1), not an endpoint"
        )
    try:
        models = [entry["id"] for entry in response.json()["data"] if isinstance(entry, dict) and "id" in entry]
    except (ValueError, KeyError, TypeError):
        raise StopTest(f"No model set and {url} returned no model list: pass --model") from None
    if len(models) == 1:
        if (url, models[0]) not in _models_logged:
            _models_logged.add((url, models[0]))
            logger.info("No --model given: using %s, the only model %s lists", models[0], url)
        return models[0]
    listed = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
    raise StopTest(f"No model set: pass --model with one of the models the server lists ({listed or 'none'})")


def _parse_extra_body(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise StopTest(f"invalid --extra-body {text!r}: not JSON ({error}); pass an object such as '{{\"temperature\": 0}}'") from None
    if not isinstance(value, dict):
        raise StopTest(f"invalid --extra-body {text!r}: expected a JSON object such as '{{\"temperature\": 0}}'")
    return value


def _load_prompts(path: str) -> list[str | list[dict[str, Any]]]:
    """Read prompts: JSON Lines when every line parses as JSON, else one plain prompt per line."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file if line.strip()]
    except OSError as error:
        raise StopTest(f"invalid --prompts-file {path!r}: {error.strerror}; pass a readable text file") from None
    if not lines:
        raise StopTest(f"invalid --prompts-file {path!r}: the file has no prompts")
    prompts: list[str | list[dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(("{", '"')):
            prompts.append(line)
            continue
        try:
            entry = json.loads(line)
        except ValueError as error:
            if line.startswith("{"):
                raise StopTest(f"invalid --prompts-file {path!r}, line {number}: not valid JSON ({error})") from None
            prompts.append(line)  # plain text that starts with a quotation mark
            continue
        if isinstance(entry, str):
            prompts.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("messages"), list):
            prompts.append(entry["messages"])
        elif isinstance(entry, dict) and isinstance(entry.get("prompt"), str):
            prompts.append(entry["prompt"])
        else:
            raise StopTest(
                f'invalid --prompts-file {path!r}, line {number}: expected a string, {{"prompt": ...}} or {{"messages": [...]}}'
            )
    return prompts
