"""Load-test an OpenAI-compatible chat endpoint with streaming responses.

    locust -f locustfiles/chat.py                                  # bundled mock server
    locust -f locustfiles/chat.py --host http://127.0.0.1:8000/v1  # vLLM, llama.cpp, TGI, ...
    OPENAI_API_KEY=... locust -f locustfiles/chat.py --host https://api.openai.com --model gpt-4o-mini

Without ``--host`` the bundled mock LLM server starts as a child process on 127.0.0.1 and
stops with Locust. Every option below also works as an environment variable (shown in
``locust --help``), in ``locust.conf`` and in the web UI's start form.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import shlex
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from locust import events, task
from locust.exception import StopTest
from locust.runners import WorkerRunner

from locust_llm_sse import LLMUser
from locust_llm_sse._url import join_url, validate_base_url
from locust_llm_sse.mock._process import MockServerProcess

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "Write a short poem about load testing."


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    # Locust's own add_argument (not an argument group's) understands is_secret.
    group = parser
    group.add_argument("--model", env_var="LOCUST_MODEL", default="", help="Model name sent in each request")
    group.add_argument("--prompt", env_var="LOCUST_PROMPT", default=DEFAULT_PROMPT, help="User prompt of each request")
    group.add_argument(
        "--prompts-file",
        env_var="LOCUST_PROMPTS_FILE",
        default="",
        help="File of prompts used in turn instead of --prompt: one prompt per line, or JSON Lines "
        'where each line is a string, {"prompt": ...} or {"messages": [...]}',
    )
    group.add_argument(
        "--max-tokens", env_var="LOCUST_MAX_TOKENS", type=int, default=128, help="max_tokens of each request"
    )
    group.add_argument(
        "--extra-body",
        env_var="LOCUST_EXTRA_BODY",
        default="",
        help='JSON object merged into each request body, e.g. \'{"temperature": 0}\'',
    )
    group.add_argument(
        "--endpoint",
        env_var="LOCUST_ENDPOINT",
        choices=["chat", "completions"],
        default="chat",
        help="chat: /v1/chat/completions with messages; completions: /v1/completions with a prompt",
    )
    group.add_argument(
        "--api-key",
        env_var="OPENAI_API_KEY",
        default="",
        is_secret=True,
        help="Bearer token for the Authorization header (default: the OPENAI_API_KEY environment variable)",
    )
    group.add_argument(
        "--no-api-key",
        env_var="LOCUST_NO_API_KEY",
        action="store_true",
        default=False,
        help="Send no Authorization header, also to a remote host (servers without authentication)",
    )
    group.add_argument(
        "--no-usage",
        env_var="LOCUST_NO_USAGE",
        action="store_true",
        default=False,
        help='Do not send stream_options {"include_usage": true}; token counts are then estimated',
    )
    group.add_argument(
        "--allow-missing-finish-reason",
        env_var="LOCUST_ALLOW_MISSING_FINISH_REASON",
        action="store_true",
        default=False,
        help="Count a stream that ends without a finish reason as a success",
    )
    group.add_argument(
        "--connect-timeout", env_var="LOCUST_CONNECT_TIMEOUT", type=float, default=10.0, help="Seconds to connect"
    )
    group.add_argument(
        "--first-token-timeout",
        env_var="LOCUST_FIRST_TOKEN_TIMEOUT",
        type=float,
        default=60.0,
        help="Seconds from sending a request to its first output token",
    )
    group.add_argument(
        "--inter-token-timeout",
        env_var="LOCUST_INTER_TOKEN_TIMEOUT",
        type=float,
        default=30.0,
        help="Seconds a stream may stay silent once output has started",
    )
    group.add_argument(
        "--mock-options",
        env_var="LOCUST_MOCK_OPTIONS",
        default="",
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
    mock_arguments = shlex.split(options.mock_options) if options is not None and options.mock_options else []
    _mock_server = MockServerProcess(*mock_arguments)
    environment.host = _mock_server.start() + "/v1"
    logger.info("No --host given: started the bundled mock LLM server at %s (PID %d)", environment.host, _mock_server.pid)


@events.init.add_listener
def validate_settings_when_headless(environment, **_kwargs) -> None:
    """Check the options before a headless run starts, and exit with status 1 and the fix if one is bad.

    With the web UI the check waits for the start of a test, because the start form can
    still change the options; a bad one then stops that test with the same message.
    """
    options = environment.parsed_options
    if options is None or not options.headless or isinstance(environment.runner, WorkerRunner):
        return
    try:
        ChatUser.load_settings(environment)
    except StopTest as error:
        logger.error("%s", error)
        raise SystemExit(1) from None


@events.quitting.add_listener
def stop_mock(**_kwargs) -> None:
    if _mock_server is not None:
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

    @task
    def chat(self) -> None:
        prompt = next(ChatUser._prompts)  # type: ignore[arg-type]
        if self.endpoint == "completions":
            text = prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)
            self.client.completion(text, max_tokens=self.max_tokens)
        else:
            self.client.chat(prompt, max_tokens=self.max_tokens)

    @classmethod
    def load_settings(cls, environment) -> dict[str, Any]:
        """Validate the options once per process; raise StopTest with the fix on a bad value."""
        with cls._settings_lock:
            if cls._settings is None or cls._settings["host"] != environment.host:
                cls._settings = _read_settings(environment)
                cls._prompts = itertools.cycle(cls._settings["prompts"])
            return cls._settings


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
        if value is None or value <= 0:
            flag = "--" + option.replace("_", "-")
            raise StopTest(f"invalid {flag} {value!r}: expected a number greater than 0")
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
    }


def _is_loopback(host: str) -> bool:
    hostname = urlsplit(host).hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


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
        raise StopTest(f"No model set and {url} answered HTTP {response.status_code}: pass --model")
    try:
        models = [entry["id"] for entry in response.json()["data"] if isinstance(entry, dict) and "id" in entry]
    except (ValueError, KeyError, TypeError):
        raise StopTest(f"No model set and {url} returned no model list: pass --model") from None
    if len(models) == 1:
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
        except ValueError:
            prompts.append(line)
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
