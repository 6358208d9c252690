"""Join a base URL (``--host``) and an API path without doubling a shared prefix."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit


def validate_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash, or raise ValueError that names the fix."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or not _has_valid_port(parts):
        raise ValueError(
            f"invalid host {base_url!r}: expected a base URL such as http://127.0.0.1:8000 "
            "or https://api.openai.com/v1 (scheme http or https, then the host name)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"invalid host {base_url!r}: remove the query string or fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - urllib raises ValueError for a port that is not a number
    except ValueError:
        return False
    return True


def join_url(base_url: str, path: str) -> str:
    """Append ``path`` to ``base_url``, dropping the part of ``path`` that the base already ends with.

    ``https://api.openai.com/v1`` and ``/v1/chat/completions`` give
    ``https://api.openai.com/v1/chat/completions``, as do ``https://api.openai.com`` and the
    same path. A ``path`` that is a full URL is returned unchanged.
    """
    if "://" in path:
        return path
    parts = urlsplit(base_url)
    base_segments = [segment for segment in parts.path.split("/") if segment]
    path_segments = [segment for segment in path.split("/") if segment]
    overlap = 0
    for size in range(min(len(base_segments), len(path_segments)), 0, -1):
        if base_segments[-size:] == path_segments[:size]:
            overlap = size
            break
    joined = "/" + "/".join(base_segments + path_segments[overlap:])
    return urlunsplit((parts.scheme, parts.netloc, joined, "", ""))
