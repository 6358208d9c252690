"""Token-level metrics of streamed LLM requests, exact across Locust's master and workers.

Per request name and aggregated: time to first token (TTFT), time to first visible token,
time per output token (TPOT), inter-token latency (ITL), end-to-end latency, token counts
and rates, finish reasons and failures per phase. Latencies are kept in log-bucketed
histograms with a 1 % relative error that merge exactly, so a master reports the same
percentiles as one process that had made every request.

Importing this package adds listeners to ``locust.events``: the ``--llm-percentiles`` and
``--llm-json`` options, ``PREFIX_llm_stats.csv`` (and ``PREFIX_llm_stats_history.csv``
with ``--csv-full-history``) next to Locust's ``--csv`` files, and a summary printed
after Locust's own at exit. ``get_llm_stats(environment)`` returns the statistics of an
environment.
"""

import locust

from locust_llm_sse.metrics._histogram import DEFAULT_RELATIVE_ERROR, LogHistogram
from locust_llm_sse.metrics._plugin import get_llm_stats, register
from locust_llm_sse.metrics._stats import (
    AGGREGATED_NAME,
    DEFAULT_PERCENTILES,
    LLMStats,
    LLMStatsEntry,
    column_names,
    parse_percentiles,
)

__all__ = [
    "AGGREGATED_NAME",
    "DEFAULT_PERCENTILES",
    "DEFAULT_RELATIVE_ERROR",
    "LLMStats",
    "LLMStatsEntry",
    "LogHistogram",
    "column_names",
    "get_llm_stats",
    "parse_percentiles",
]

register(locust.events)
