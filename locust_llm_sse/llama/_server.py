"""Run ``python -m llama_cpp.server`` as a child process and wait until it serves requests."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from locust_llm_sse._subprocess import terminate_process
from locust_llm_sse.llama._model import check_requirements, ensure_bundled_model
from locust_llm_sse.llama._timings import LlamaTimings, parse_timings

logger = logging.getLogger(__name__)

_LISTENING_LINE = re.compile(r"Uvicorn running on https?://\S+?:(\d+)")
_LOG_TAIL_CHARS = 4000
_POLL_INTERVAL_S = 0.2
_PROBE_TIMEOUT_S = 2.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class LlamaServerError(RuntimeError):
    """The llama.cpp server exited, or did not respond, before it was ready."""


class LlamaServer:
    """A llama-cpp-python server in a child process, for tests, benchmarks and the command line.

    ::

        with LlamaServer(interrupt_requests=False) as server:
            requests.post(server.base_url + "/v1/chat/completions", json=...)

    Without ``model_path`` it serves the bundled Gemma 3 270M, assembled once into the
    cache directory. ``interrupt_requests`` is llama-cpp-python's option of that name: when
    True (its default), a request that arrives while another streams makes the server end
    the running stream early with ``[DONE]`` and no finish reason. When False, requests
    wait their turn. The server handles one completion at a time either way.

    The child's standard output and standard error go to one log file, which contains
    llama.cpp's per-request timings (see ``timings``). The child runs in its own session,
    so a Ctrl-C in the terminal reaches only this process, which then stops the server.
    On Linux the kernel kills the server when the thread that started it exits.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interrupt_requests: bool = False,
        chat_format: str | None = "gemma",
        model_alias: str | None = None,
        n_ctx: int = 2048,
        server_args: Sequence[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.host = host
        self.port = port
        self.interrupt_requests = interrupt_requests
        self.chat_format = chat_format
        self.model_alias = model_alias
        self.n_ctx = n_ctx
        self.server_args = tuple(server_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        self._delete_log = False
        self._process: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None
        self._log_text_after_stop = ""

    @property
    def base_url(self) -> str:
        """URL such as ``http://127.0.0.1:40123``, without a trailing slash or ``/v1``."""
        if self._base_url is None:
            raise RuntimeError("The llama.cpp server is not running. Call start() first.")
        return self._base_url

    @property
    def pid(self) -> int | None:
        """Process id of the server, or None before start()."""
        return self._process.pid if self._process is not None else None

    @property
    def served_model(self) -> str:
        """The model name that ``/v1/models`` lists and requests may send."""
        if self.model_alias:
            return self.model_alias
        if self.model_path is None:
            raise RuntimeError(
                "The served model name is unknown before start() assembles the bundled model. "
                "Pass model_alias to set it."
            )
        return self.model_path.name.removesuffix(".gguf")

    def command(self) -> list[str]:
        """Return the command line of the child process (the model path must be known)."""
        if self.model_path is None:
            raise RuntimeError(
                "The model path is unknown before start(). "
                "Pass model_path, or call start(), which assembles the bundled model."
            )
        command = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.served_model,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--interrupt_requests", str(self.interrupt_requests),
            "--verbose", "True",
        ]
        if self.chat_format:
            command += ["--chat_format", self.chat_format]
        return command + list(self.server_args)

    def start(self) -> str:
        """Start the server and wait until ``GET /v1/models`` responds. Returns the base URL.

        Raises LlamaSetupError when a dependency is missing, and LlamaServerError, with the
        end of the server log, when the child exits or does not respond within
        ``start_timeout_s``.
        """
        if self._process is not None:
            raise RuntimeError("This LlamaServer has already been started; create a new one.")
        check_requirements(bundled_model=self.model_path is None)
        if self.model_path is None:
            self.model_path = ensure_bundled_model()
        elif not self.model_path.is_file():
            raise LlamaServerError(f"Model file not found: {self.model_path}. Pass the path of a GGUF file.")

        if self.log_path is None:
            descriptor, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(descriptor)
            self.log_path = Path(name)
            self._delete_log = True
        environment = dict(os.environ if self.env is None else self.env)
        # llama_cpp.server lets the HOST and PORT variables override --host and --port,
        # so set them to the same values.
        environment["HOST"] = self.host
        environment["PORT"] = str(self.port)
        # Unbuffered Python output keeps the server's messages in order with llama.cpp's.
        environment["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
                preexec_fn=_exit_with_parent_function(),
            )
        logger.info(
            "Started llama.cpp server PID %d with model %s, log %s", self._process.pid, self.model_path, self.log_path
        )
        self._base_url = self._wait_until_ready()
        logger.info("llama.cpp server PID %d is ready at %s", self._process.pid, self._base_url)
        return self._base_url

    def _wait_until_ready(self) -> str:
        """Wait for uvicorn's "running on" line in our own log, then for ``GET /v1/models`` to respond.

        The line comes first because with a fixed port another server may already listen
        there, and that server would then respond to ``/v1/models``.
        """
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        base_url: str | None = None
        while True:
            status = self._process.poll()
            if status is not None:
                self._fail(f"exited with status {status} before it was ready")
            if base_url is None:
                match = _LISTENING_LINE.search(self.log_text())
                if match is not None:
                    base_url = f"http://{_url_host(self.host)}:{match.group(1)}"
            if base_url is not None and _lists_models(base_url):
                return base_url
            if time.monotonic() > deadline:
                self._fail(f"timed out: GET /v1/models did not respond within {self.start_timeout_s:g} s")
            time.sleep(_POLL_INTERVAL_S)

    def _fail(self, reason: str) -> None:
        """Stop the child and raise LlamaServerError with the reason and the end of its log."""
        command = " ".join(self.command())
        self.stop()
        tail = self.log_text()[-_LOG_TAIL_CHARS:].strip() or "(empty)"
        raise LlamaServerError(f"The llama.cpp server {reason}.\nCommand: {command}\nEnd of its log:\n{tail}")

    def poll(self) -> int | None:
        """Return the exit status of the server, or None while it runs (or before start())."""
        return self._process.poll() if self._process is not None else None

    def log_text(self) -> str:
        """Return what the server has written to its log so far."""
        if self._process is None or self.log_path is None:
            return self._log_text_after_stop
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return self._log_text_after_stop

    def timings(self) -> list[LlamaTimings]:
        """Return llama.cpp's timings of every completion finished so far, oldest first."""
        return parse_timings(self.log_text())

    def stop(self) -> int | None:
        """Terminate the server, kill it after ``stop_timeout_s``, and return its exit status.

        Returns None if it was never started. Calling stop() again is harmless. A log file
        that this object created is deleted, but ``log_text()`` still returns its content.
        """
        process = self._process
        if process is None:
            return None
        terminate_process(process, self.stop_timeout_s, "llama.cpp server")
        if self._delete_log and self.log_path is not None and self.log_path.exists():
            self._log_text_after_stop = self.log_path.read_text(encoding="utf-8", errors="replace")
            self.log_path.unlink()
        self._base_url = None
        return process.returncode

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _lists_models(base_url: str) -> bool:
    """Return True when ``GET /v1/models`` returns status 200 and a JSON model list."""
    # An empty ProxyHandler keeps http_proxy and similar variables away from a loopback server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base_url + "/v1/models", timeout=_PROBE_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):  # URLError and timeouts are OSErrors
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), list)


def _exit_with_parent_function() -> Callable[[], None] | None:
    """Return a function for ``preexec_fn`` that makes Linux kill the child when its parent dies.

    It runs in the child between fork and exec. The kernel sends SIGKILL when the thread
    that forked exits, and a child whose parent died before the call exits at once. Other
    systems get None, and there a server outlives a parent killed with SIGKILL.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent_pid = os.getpid()

    def exit_with_parent() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)

    return exit_with_parent
