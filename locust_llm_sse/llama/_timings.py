"""Parse the per-request timings that llama.cpp prints to the server log.

With ``--verbose True`` (the default of ``python -m llama_cpp.server``), llama-cpp-python
0.3.36 prints one block per finished completion on standard error, just before the
stream's last chunk (the one with the finish reason)::

    Llama.generate: 1 prefix-match hit, remaining 14 prompt tokens to eval
    llama_perf_context_print:        load time =       0.22 ms
    llama_perf_context_print: prompt eval time =     248.74 ms /    14 tokens (...)
    llama_perf_context_print:        eval time =     499.74 ms /    31 runs   (...)
    llama_perf_context_print:       total time =     920.27 ms /    45 tokens

llama.cpp counts a decode of several tokens as prompt evaluation and a decode of one
token as an eval run. So ``prompt eval time`` covers the prompt tokens not found in the KV
cache (from the previous request), and ``eval time`` one run per output token after the
first. When only one prompt token was left to evaluate, its decode is an eval run too.
``total time`` is the wall time from the start of the completion to the print, so it also
contains sampling, detokenizing and the time the server spent sending earlier chunks.
A stream that the server interrupted prints no block.

NOTE: The first completion after the server started reported 0.04 ms of prompt eval
time for 17 tokens (llama-cpp-python 0.3.36), so that number is not usable for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PREFIX_LINE = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_PROMPT_EVAL_LINE = re.compile(r"llama_perf_context_print:\s+prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL_LINE = re.compile(r"llama_perf_context_print:\s+eval time =\s*([\d.]+) ms /\s*(\d+) runs")
_TOTAL_LINE = re.compile(r"llama_perf_context_print:\s+total time =\s*([\d.]+) ms /\s*(\d+) tokens")


@dataclass(frozen=True)
class LlamaTimings:
    """llama.cpp's own timings of one completion, in milliseconds and tokens."""

    prompt_eval_ms: float
    prompt_eval_tokens: int
    """Prompt tokens evaluated, not counting those reused from the previous request's KV cache."""
    eval_ms: float
    eval_runs: int
    """Single-token decodes: one per output token after the first (details in the module docstring)."""
    total_ms: float
    total_tokens: int
    reused_prompt_tokens: int | None = None
    """Prompt tokens reused from the KV cache, from the last prefix-match line before the block.

    None when no such line was logged. After a stream that the server interrupted, the
    line may belong to that stream instead.
    """

    @property
    def eval_tokens_per_second(self) -> float | None:
        """Decode speed without prompt evaluation, sampling or HTTP: eval runs / eval time."""
        if self.eval_ms <= 0:
            return None
        return self.eval_runs * 1000.0 / self.eval_ms


def parse_timings(log_text: str) -> list[LlamaTimings]:
    """Return the timings of every completion in a llama-cpp-python server log, in log order.

    A block that lacks one of its three lines (a log cut in the middle of a block) is
    skipped.
    """
    timings: list[LlamaTimings] = []
    reused: int | None = None
    prompt_eval: tuple[float, int] | None = None
    evaluation: tuple[float, int] | None = None
    for line in log_text.splitlines():
        if match := _PREFIX_LINE.search(line):
            reused = int(match.group(1))
        elif match := _PROMPT_EVAL_LINE.search(line):
            prompt_eval = (float(match.group(1)), int(match.group(2)))
            evaluation = None
        elif match := _EVAL_LINE.search(line):
            evaluation = (float(match.group(1)), int(match.group(2)))
        elif match := _TOTAL_LINE.search(line):
            if prompt_eval is not None and evaluation is not None:
                timings.append(
                    LlamaTimings(
                        prompt_eval_ms=prompt_eval[0],
                        prompt_eval_tokens=prompt_eval[1],
                        eval_ms=evaluation[0],
                        eval_runs=evaluation[1],
                        total_ms=float(match.group(1)),
                        total_tokens=int(match.group(2)),
                        reused_prompt_tokens=reused,
                    )
                )
            reused = None
            prompt_eval = None
            evaluation = None
    return timings
