"""Timer callbacks at absolute deadlines, with sub-millisecond precision on Linux.

asyncio's own timers wait in epoll, whose timeout has millisecond resolution, so
``loop.call_at`` fires up to about 1 ms late. ``TimerfdScheduler`` arms one Linux
timerfd at the earliest deadline instead, and the kernel wakes the event loop at that
time. Both schedulers take deadlines on the ``loop.time()`` clock, which is
``time.monotonic()`` (CLOCK_MONOTONIC) for the default event loops.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs callbacks on the event loop at absolute ``loop.time()`` deadlines."""

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle: ...

    def close(self) -> None: ...


class LoopScheduler:
    """Scheduler on ``loop.call_at``: portable, with millisecond precision."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_at(deadline, callback)

    def close(self) -> None:
        pass


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerfdScheduler:
    """Scheduler on a Linux timerfd armed at the earliest pending deadline.

    Each wake-up runs only the callbacks that were due when it started. A callback
    scheduled during that pass for a deadline already past runs on the next pass, after
    the loop has handled I/O, as with ``loop.call_at``. Raises OSError if the timerfd
    cannot be created.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "timerfd_create"):
            raise OSError("this C library has no timerfd_create")
        self._timerfd_settime = libc.timerfd_settime
        self._timerfd_settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.POINTER(_Itimerspec),
        ]
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create failed: {os.strerror(errno)}")
        self._fd: int = fd
        self._spec = _Itimerspec()
        self._heap: list[tuple[float, int, _Timer]] = []
        self._sequence = itertools.count()
        self._armed_at: float | None = None
        self._running = False
        loop.add_reader(fd, self._on_expired)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _Timer(callback)
        heapq.heappush(self._heap, (deadline, next(self._sequence), timer))
        if not self._running and (self._armed_at is None or deadline < self._armed_at):
            self._arm(deadline)
        return timer

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._heap.clear()

    def _arm(self, deadline: float) -> None:
        # A deadline in the past expires at once. An all-zero value would disarm the
        # timer instead, but CLOCK_MONOTONIC deadlines are never 0.
        seconds = int(deadline)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = int((deadline - seconds) * 1e9)
        if self._timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime failed: {os.strerror(errno)}")
        self._armed_at = deadline

    def _on_expired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            pass
        now = time.monotonic()
        heap = self._heap
        due: list[_Timer] = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])

        self._running = True
        try:
            for timer in due:
                if timer.cancelled:
                    continue
                try:
                    timer.callback()
                except Exception:
                    logger.exception("Timer callback %r failed", timer.callback)
        finally:
            self._running = False

        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        self._armed_at = None
        if heap:
            self._arm(heap[0][0])


def create_scheduler(loop: asyncio.AbstractEventLoop, kind: str) -> Scheduler:
    """Create the scheduler for ``--timer``: ``"timerfd"``, ``"asyncio"`` or ``"auto"``.

    ``"auto"`` takes the timerfd on Linux and falls back to asyncio's timers elsewhere
    or when the timerfd cannot be created. ``"timerfd"`` raises RuntimeError in that case.
    """
    if kind == "asyncio":
        return LoopScheduler(loop)
    if kind == "timerfd" or sys.platform.startswith("linux"):
        try:
            return TimerfdScheduler(loop)
        except OSError as error:
            if kind == "timerfd":
                raise RuntimeError(f"--timer timerfd is not available ({error}); use --timer auto or asyncio") from error
            logger.warning("Cannot use a timerfd (%s); falling back to asyncio timers with 1 ms precision", error)
    return LoopScheduler(loop)
