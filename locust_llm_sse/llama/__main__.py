"""Command-line entry point: ``python -m locust_llm_sse.llama`` and ``locust-llm-llama``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from locust_llm_sse.llama._model import LlamaSetupError
from locust_llm_sse.llama._server import LlamaServer, LlamaServerError
from locust_llm_sse.llama._timings import LlamaTimings, parse_timings

logger = logging.getLogger(__name__)

_WAIT_INTERVAL_S = 0.5


class _StopRequested(Exception):
    """A SIGTERM or SIGHUP, which stops the server as Ctrl-C does."""


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected true or false")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m locust_llm_sse.llama",
        description="Start a llama.cpp server (llama-cpp-python) with the bundled Gemma 3 270M model on "
        "127.0.0.1, print its base URL and run until Ctrl-C. Arguments after -- go to llama_cpp.server "
        "unchanged, e.g. -- --n_threads 2.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on, or 0 for a free port (default: 0)")
    parser.add_argument(
        "--interrupt-requests",
        type=_parse_bool,
        default=False,
        metavar="{true,false}",
        help="true: a request that arrives while another streams ends the running stream early, with [DONE] "
        "and no finish reason (llama-cpp-python's default). false: requests wait their turn (default: false)",
    )
    parser.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="GGUF file to serve (default: the bundled Gemma 3 270M, assembled once into ~/.cache/locust-llm-sse)",
    )
    parser.add_argument(
        "--model-alias", default=None, help="Model name that /v1/models lists (default: the file name without .gguf)"
    )
    parser.add_argument(
        "--chat-format",
        default="gemma",
        help="Chat template of llama_cpp.server. The bundled model returns empty completions without gemma. "
        "Pass an empty string to use the template in the GGUF file (default: gemma)",
    )
    parser.add_argument("--n-ctx", type=int, default=2048, help="Context size in tokens (default: 2048)")
    parser.add_argument(
        "--start-timeout",
        type=_positive_float,
        default=120.0,
        help="Seconds to wait for the model to load and GET /v1/models to respond (default: 120)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="File for the server's output, kept after exit (default: a temporary file, deleted at exit)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until Ctrl-C, SIGTERM or SIGHUP. Returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    server_args: list[str] = []
    if "--" in arguments:
        cut = arguments.index("--")
        arguments, server_args = arguments[:cut], arguments[cut + 1 :]
    args = build_parser().parse_args(arguments)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = LlamaServer(
        args.model_path,
        host=args.host,
        port=args.port,
        interrupt_requests=args.interrupt_requests,
        chat_format=args.chat_format or None,
        model_alias=args.model_alias,
        n_ctx=args.n_ctx,
        server_args=server_args,
        log_path=args.log_file,
        start_timeout_s=args.start_timeout,
    )
    previous_handlers = {number: signal.signal(number, _request_stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        base_url = server.start()
        print(base_url, flush=True)
        logger.info(
            "Serving %s at %s (PID %d, interrupt_requests %s). Load-test it with: "
            "locust -f locustfiles/chat.py --host %s --headless -u 1 -r 1 -t 30s --max-tokens 32. "
            "Press Ctrl-C to stop.",
            server.served_model, base_url, server.pid, str(args.interrupt_requests).lower(), base_url,
        )
        return _wait(server)
    except (LlamaSetupError, LlamaServerError) as error:
        logger.error("%s", error)
        return 1
    except KeyboardInterrupt:
        logger.info("Ctrl-C: stopping the server")
        return 0
    except _StopRequested as stop:
        logger.info("%s: stopping the server", stop)
        return 0
    finally:
        server.stop()
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)


def _request_stop(number: int, _frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(number).name)


def _wait(server: LlamaServer) -> int:
    """Log llama.cpp's timings of each finished completion until the server exits or a signal arrives."""
    assert server.log_path is not None
    offset = 0
    while True:
        status = server.poll()
        timings, offset = _read_new_timings(server.log_path, offset)
        for timing in timings:
            _log_timings(timing)
        if status is not None:
            tail = server.log_text()[-4000:].strip() or "(empty)"
            logger.error("The llama.cpp server exited with status %d. End of its log:\n%s", status, tail)
            return 1
        time.sleep(_WAIT_INTERVAL_S)


def _read_new_timings(log_path: Path, offset: int) -> tuple[list[LlamaTimings], int]:
    """Parse the timing blocks completed after byte ``offset`` of the log.

    Returns them and the offset just after the last one.
    """
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            data = log.read()
    except FileNotFoundError:
        return [], offset
    last_block = data.rfind(b"total time")
    end = data.find(b"\n", last_block) if last_block >= 0 else -1
    if end < 0:
        return [], offset
    return parse_timings(data[: end + 1].decode("utf-8", errors="replace")), offset + end + 1


def _log_timings(timing: LlamaTimings) -> None:
    speed = timing.eval_tokens_per_second
    logger.info(
        "llama.cpp timings: prompt eval %.1f ms for %d tokens, eval %.1f ms for %d runs (%s tokens/s), total %.1f ms",
        timing.prompt_eval_ms,
        timing.prompt_eval_tokens,
        timing.eval_ms,
        timing.eval_runs,
        f"{speed:.1f}" if speed is not None else "n/a",
        timing.total_ms,
    )


if __name__ == "__main__":
    sys.exit(main())
