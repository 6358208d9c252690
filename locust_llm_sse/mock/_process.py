"""Run the mock server as a child process, for locustfiles, tests and benchmarks."""

from __future__ import annotations

import logging
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO

from locust_llm_sse._subprocess import terminate_process

logger = logging.getLogger(__name__)

_READY_LINE = re.compile(r"listening on (http://\S+)")
_STDERR_TAIL_BYTES = 4000


class MockServerError(RuntimeError):
    """The mock server process exited or timed out before it printed its URL."""


class MockServerProcess:
    """A mock server in a child process, which also exits when this process dies.

    Extra positional arguments are passed to the server's command line, after
    ``--host``, ``--port`` and ``--exit-with-parent``, so they take precedence::

        with MockServerProcess("--ttft-ms", "50", "--itl-ms", "5") as mock:
            requests.post(mock.base_url + "/v1/chat/completions", json=...)

    The child's standard input is a pipe that this process never writes. When this
    process exits, however it exits, the kernel closes the pipe and the server stops
    (``--exit-with-parent``). Its standard error goes to a temporary file, so a server
    that logs a lot cannot block on a full pipe.
    """

    def __init__(
        self,
        *args: str,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 5.0,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = tuple(args)
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None
        self._stderr_after_stop = ""

    @property
    def command(self) -> list[str]:
        """Command line of the child process."""
        return [
            self.python, "-m", "locust_llm_sse.mock",
            "--host", self.host, "--port", str(self.port), "--exit-with-parent", *self.args,
        ]

    @property
    def base_url(self) -> str:
        """URL such as ``http://127.0.0.1:40123``, without a trailing slash or ``/v1``."""
        if self._base_url is None:
            raise RuntimeError("The mock server is not running; call start() first.")
        return self._base_url

    def base_url_or_none(self) -> str | None:
        """Return the base URL while the server runs (until stop()), else None."""
        return self._base_url

    def exit_status(self) -> int | None:
        """Exit status of the server if it has exited, else None (also before start())."""
        return self._process.poll() if self._process is not None else None

    @property
    def pid(self) -> int | None:
        """Process id of the server, or None before start()."""
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start the server and wait until it listens. Returns the base URL.

        Raises MockServerError, with the end of the child's standard error, if the child
        exits or does not print its ``listening on`` line within ``start_timeout_s``.
        """
        if self._process is not None:
            raise RuntimeError("This MockServerProcess has already been started; create a new one.")

        self._stderr = tempfile.TemporaryFile()
        # A session of its own keeps a terminal's Ctrl-C away from the server: Locust first
        # stops its users, then its quitting listener stops the server.
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            start_new_session=True,
        )
        line = self._read_ready_line()
        match = _READY_LINE.fullmatch(line)
        if match is None:
            self._fail(f"printed {line[:200]!r} instead of 'listening on http://HOST:PORT'")
        self._base_url = match.group(1)
        logger.info("Mock server PID %d is listening on %s", self._process.pid, self._base_url)
        return self._base_url

    def _read_ready_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + self.start_timeout_s
        received = b""
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not print its 'listening on' line within {self.start_timeout_s:g} s")
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.1))
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                status = self._process.wait(timeout=self.stop_timeout_s)
                self._fail(f"exited with status {status} before it was ready")
            received += chunk
        return received.split(b"\n", 1)[0].decode(errors="replace").strip()

    def _fail(self, reason: str) -> None:
        """Stop the child and raise MockServerError with the reason and the child's stderr."""
        self.stop()
        stderr = self.stderr_text()[-_STDERR_TAIL_BYTES:].strip() or "(empty)"
        raise MockServerError(f"The mock server {reason}.\nCommand: {' '.join(self.command)}\nStandard error:\n{stderr}")

    def stderr_text(self) -> str:
        """Return what the server has written to standard error so far."""
        if self._stderr is None or self._stderr.closed:
            return self._stderr_after_stop
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> int | None:
        """Terminate the server, kill it after ``stop_timeout_s``, and return its exit status.

        Returns None if it was never started. Calling stop() again is harmless.
        """
        process = self._process
        if process is None:
            return None
        terminate_process(process, self.stop_timeout_s, "Mock server")
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        if self._stderr is not None and not self._stderr.closed:
            self._stderr_after_stop = self.stderr_text()
            self._stderr.close()
        self._base_url = None
        return process.returncode

    def __enter__(self) -> MockServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
