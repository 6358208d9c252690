"""Stopping a child server process: SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import logging
import subprocess

logger = logging.getLogger(__name__)


def terminate_process(process: subprocess.Popen, timeout_s: float, label: str) -> int | None:
    """Terminate ``process`` if it still runs, kill it after ``timeout_s``, and return its exit status.

    ``label`` names the process in the log, e.g. "Mock server".
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s PID %d did not exit within %g s of SIGTERM, so it is killed", label, process.pid, timeout_s)
            process.kill()
            process.wait()
        logger.info("%s PID %d stopped with status %s", label, process.pid, process.returncode)
    return process.returncode
