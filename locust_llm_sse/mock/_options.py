"""Command-line options of the mock server and their validation."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from locust_llm_sse.mock._config import MockConfig

_RATE_OPTIONS = ("rate_429", "rate_500", "rate_error_event", "rate_cut", "rate_stall")


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a number of milliseconds >= 0, such as 20")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a probability from 0 to 1, such as 0.05")
    return value


def _integer(minimum: int, maximum: int | None = None) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give an integer {bounds}")
        return value

    return parse  # type: ignore[return-value]


def parse_tokens_per_event(text: str) -> tuple[int, ...]:
    """Parse a comma-separated pattern of event sizes such as ``1,1,3``."""
    try:
        pattern = tuple(int(item) for item in text.split(","))
    except ValueError:
        pattern = ()
    if not pattern or min(pattern) < 1:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: give comma-separated token counts >= 1, such as 1 or 1,1,3"
        )
    return pattern


def _model_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("invalid value '': give a non-empty model name, such as mock-llm")
    return text


def build_parser() -> argparse.ArgumentParser:
    defaults = MockConfig()
    parser = argparse.ArgumentParser(
        prog="locust-llm-mock",
        description=(
            "Serve a mock OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) "
            "that streams deterministic tokens with configurable timing and injected faults. "
            "Prints 'listening on http://HOST:PORT' on standard output once ready."
        ),
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=defaults.host, help="Address to listen on (default: %(default)s).")
    server.add_argument(
        "--port", type=_integer(0, 65535), default=defaults.port,
        help="TCP port; 0 picks a free port (default: %(default)s).",
    )
    server.add_argument(
        "--model", type=_model_name, default=defaults.model,
        help="Model name listed by /v1/models and returned in responses (default: %(default)s).",
    )
    server.add_argument(
        "--exit-with-parent", action="store_true",
        help="Exit when standard input reaches end of file or the parent process exits. "
        "MockServerProcess passes it with a pipe on standard input.",
    )
    server.add_argument(
        "--timer", choices=("auto", "timerfd", "asyncio"), default=defaults.timer,
        help="Timer behind event deadlines: a Linux timerfd (about 0.1 ms late), asyncio's timers "
        "(up to about 1 ms late, any OS), or auto, which takes the timerfd where it works (default: %(default)s).",
    )
    server.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info",
        help="Level of the log on standard error (default: %(default)s).",
    )

    output = parser.add_argument_group("output and timing")
    output.add_argument(
        "--ttft-ms", type=_milliseconds, default=defaults.ttft_ms,
        help="Time from reading the request to the first content event, in ms (default: %(default)s).",
    )
    output.add_argument(
        "--itl-ms", type=_milliseconds, default=defaults.itl_ms,
        help="Gap between content events, in ms (default: %(default)s).",
    )
    output.add_argument(
        "--jitter-ms", type=_milliseconds, default=defaults.jitter_ms,
        help="Maximum uniform random offset added to the TTFT and to every gap, in ms (default: %(default)s).",
    )
    output.add_argument(
        "--seed", type=int, default=defaults.seed,
        help="Seed of the random draws for jitter and faults (default: %(default)s).",
    )
    output.add_argument(
        "--output-tokens", type=_integer(1), default=defaults.output_tokens,
        help="Completion tokens per response, capped by the request's max_tokens (default: %(default)s).",
    )
    output.add_argument(
        "--tokens-per-event", type=parse_tokens_per_event, default=defaults.tokens_per_event,
        help="Tokens per content event as a comma-separated pattern that repeats, such as 1,1,3 (default: 1).",
    )
    output.add_argument(
        "--reasoning-tokens", type=_integer(0), default=defaults.reasoning_tokens,
        help="Leading completion tokens sent as delta.reasoning_content, chat only (default: %(default)s).",
    )
    output.add_argument(
        "--gzip", action="store_true",
        help="Compress response bodies with gzip, flushing after every event.",
    )
    output.add_argument(
        "--no-chunked", dest="chunked", action="store_false",
        help="Send close-delimited bodies (no Content-Length, Connection: close) instead of chunked ones.",
    )

    faults = parser.add_argument_group("fault injection (probability per request, drawn from --seed)")
    faults.add_argument(
        "--rate-429", type=_probability, default=0.0,
        help="Respond with 429 and Retry-After before streaming.",
    )
    faults.add_argument("--rate-500", type=_probability, default=0.0, help="Respond with 500 before streaming.")
    faults.add_argument(
        "--rate-error-event", type=_probability, default=0.0,
        help="Send some tokens, then an error event and [DONE], with status 200.",
    )
    faults.add_argument(
        "--rate-cut", type=_probability, default=0.0,
        help="Close the connection mid-stream without the last chunk.",
    )
    faults.add_argument(
        "--rate-stall", type=_probability, default=0.0,
        help="Stop sending mid-stream for --stall-ms, then close the connection.",
    )
    faults.add_argument(
        "--stall-ms", type=_milliseconds, default=defaults.stall_ms,
        help="Length of a stall before the connection is closed, in ms (default: %(default)s).",
    )
    faults.add_argument(
        "--retry-after-s", type=_integer(0), default=defaults.retry_after_s,
        help="Retry-After value sent with 429 replies, in seconds (default: %(default)s).",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[MockConfig, argparse.Namespace]:
    """Parse and validate the command line. Exits with status 2 and a message on an invalid value."""
    parser = build_parser()
    args = parser.parse_args(argv)

    total = sum(getattr(args, name) for name in _RATE_OPTIONS)
    if total > 1 + 1e-9:
        options = ", ".join("--" + name.replace("_", "-") for name in _RATE_OPTIONS)
        parser.error(f"the fault rates add up to {total:g}, but a request gets at most one fault: make {options} sum to at most 1")

    config = MockConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        output_tokens=args.output_tokens,
        tokens_per_event=args.tokens_per_event,
        reasoning_tokens=args.reasoning_tokens,
        jitter_ms=args.jitter_ms,
        seed=args.seed,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_error_event=args.rate_error_event,
        rate_cut=args.rate_cut,
        rate_stall=args.rate_stall,
        stall_ms=args.stall_ms,
        retry_after_s=args.retry_after_s,
        gzip=args.gzip,
        chunked=args.chunked,
        timer=args.timer,
    )
    return config, args
