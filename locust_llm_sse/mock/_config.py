"""Server-wide settings of the mock server, one field per command-line option."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_KINDS = ("429", "500", "error_event", "cut", "stall")
"""Fault names accepted by the ``mock.fault`` request override, in the order used when
the per-request fault is drawn from the ``rate_*`` probabilities."""


@dataclass(frozen=True)
class MockConfig:
    """Settings of the mock server. Times are in milliseconds and rates are probabilities.

    The command line validates values before it builds this object, so the server
    trusts them.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "mock-llm"
    ttft_ms: float = 100.0
    itl_ms: float = 10.0
    output_tokens: int = 64
    tokens_per_event: tuple[int, ...] = (1,)
    reasoning_tokens: int = 0
    jitter_ms: float = 0.0
    seed: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_error_event: float = 0.0
    rate_cut: float = 0.0
    rate_stall: float = 0.0
    stall_ms: float = 10_000.0
    retry_after_s: int = 1
    gzip: bool = False
    chunked: bool = True
    timer: str = "auto"
    """``"timerfd"``, ``"asyncio"`` or ``"auto"``, as taken by ``create_scheduler``."""

    @property
    def fault_rates(self) -> tuple[tuple[str, float], ...]:
        """Probability of each fault kind, in ``FAULT_KINDS`` order."""
        return (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("error_event", self.rate_error_event),
            ("cut", self.rate_cut),
            ("stall", self.rate_stall),
        )
