"""Start a real LLM server, llama.cpp, on this machine, for load tests, benchmarks and CI.

``python -m locust_llm_sse.llama`` (or ``locust-llm-llama``) assembles the bundled Gemma
3 270M model once into the cache directory, starts ``python -m llama_cpp.server`` on
127.0.0.1, prints its base URL and runs until Ctrl-C. ``LlamaServer`` does the same as a
context manager. Both need the optional dependencies: ``pip install '.[llama]'``.

Nothing here imports llama_cpp or Locust; the server runs in a child process.
"""

from __future__ import annotations

from locust_llm_sse.llama._model import (
    INSTALL_HINT,
    LlamaSetupError,
    cache_dir,
    check_requirements,
    ensure_bundled_model,
    missing_modules,
)
from locust_llm_sse.llama._server import LlamaServer, LlamaServerError
from locust_llm_sse.llama._timings import LlamaTimings, parse_timings

__all__ = [
    "INSTALL_HINT",
    "LlamaServer",
    "LlamaServerError",
    "LlamaSetupError",
    "LlamaTimings",
    "cache_dir",
    "check_requirements",
    "ensure_bundled_model",
    "missing_modules",
    "parse_timings",
]
