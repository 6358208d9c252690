"""Command-line entry point: ``python -m locust_llm_sse.mock`` and ``locust-llm-mock``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from locust_llm_sse.mock._options import parse_args
from locust_llm_sse.mock._server import serve

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock server until SIGINT or SIGTERM. Returns the exit status."""
    config, args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(config, exit_with_parent=args.exit_with_parent))
    except OSError as error:
        logger.error(
            "Cannot listen on %s port %d: %s. Pass --port 0 to pick a free port, or another --host.",
            config.host, config.port, error,
        )
        return 1
    except RuntimeError as error:
        logger.error("The mock server failed to start: %s", error)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
