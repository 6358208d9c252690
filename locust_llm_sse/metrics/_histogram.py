"""A log-bucketed histogram with a bounded relative error, mergeable by adding counts.

Bucket ``i`` contains the values ``v`` with ``gamma ** (i - 1) < v <= gamma ** i``, where
``gamma = (1 + a) / (1 - a)`` for the relative error ``a``. A quantile is reported as
``2 * gamma ** i / (gamma + 1)``, which lies within ``a`` (relative) of every value in the
bucket, so a quantile read from the histogram is within ``a`` of the sample that the
nearest-rank method picks from the raw values. This is the bucket scheme of DDSketch
(Masson, Rim, Lee and Garofalakis, "DDSketch: A Fast and Fully-Mergeable Quantile Sketch
with Relative-Error Guarantees", arXiv:1908.10693).

Values below ``MIN_TRACKED_VALUE`` share a zero bucket reported as 0 (absolute error below
``MIN_TRACKED_VALUE``), and values above ``MAX_TRACKED_VALUE`` share the top bucket, so a
histogram never has more than ``max_bucket_count()`` buckets, however many values it holds.

Weights are integers, so that merging (adding the counts of equal buckets) is exact and
does not depend on the order of the merges.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

DEFAULT_RELATIVE_ERROR = 0.01
"""Relative error of a quantile: 1 %."""

MIN_TRACKED_VALUE = 1e-6
"""Smallest value with its own bucket. In milliseconds this is 1 ns."""

MAX_TRACKED_VALUE = 1e12
"""Largest value with its own bucket. In milliseconds this is about 31 years."""


class LogHistogram:
    """Counts of non-negative values in log-spaced buckets, plus their exact count, sum, min and max.

    ``add`` costs one logarithm and one dict update. Memory depends on the range of the
    values, never on how many were added.
    """

    __slots__ = (
        "relative_error",
        "_gamma",
        "_inverse_log_gamma",
        "_max_index",
        "_counts",
        "zero_count",
        "count",
        "sum",
        "min",
        "max",
    )

    def __init__(self, relative_error: float = DEFAULT_RELATIVE_ERROR) -> None:
        if not 0.0 < relative_error < 1.0:
            raise ValueError(f"invalid relative_error {relative_error!r}: it must be between 0 and 1, e.g. 0.01")
        self.relative_error = relative_error
        self._gamma = (1.0 + relative_error) / (1.0 - relative_error)
        self._inverse_log_gamma = 1.0 / math.log(self._gamma)
        self._max_index = math.ceil(math.log(MAX_TRACKED_VALUE) * self._inverse_log_gamma)
        self._counts: dict[int, int] = {}
        self.zero_count = 0
        """Weight of the values below ``MIN_TRACKED_VALUE``."""
        self.count = 0
        """Total weight of all added values."""
        self.sum = 0.0
        """Sum of value times weight, exact up to float rounding."""
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value: float, weight: int = 1) -> None:
        """Add ``value`` with an integer ``weight`` (the number of times it occurred).

        Raises ValueError for a negative, NaN or infinite value and for a weight below 1.
        """
        if not 0.0 <= value < math.inf:
            raise ValueError(f"invalid histogram value {value!r}: it must be a finite number >= 0")
        if weight < 1:
            raise ValueError(f"invalid histogram weight {weight!r}: it must be an integer >= 1")

        if value < MIN_TRACKED_VALUE:
            self.zero_count += weight
        else:
            index = math.ceil(math.log(value) * self._inverse_log_gamma)
            if index > self._max_index:
                index = self._max_index
            counts = self._counts
            counts[index] = counts.get(index, 0) + weight

        self.count += weight
        self.sum += value * weight
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    @property
    def bucket_count(self) -> int:
        """Number of buckets in use, the zero bucket included."""
        return len(self._counts) + (1 if self.zero_count else 0)

    def max_bucket_count(self) -> int:
        """Upper bound of ``bucket_count`` for this relative error."""
        min_index = math.ceil(math.log(MIN_TRACKED_VALUE) * self._inverse_log_gamma)
        return self._max_index - min_index + 2

    @property
    def mean(self) -> float | None:
        """Weighted mean from the exact sum, or None when empty."""
        if not self.count:
            return None
        return self.sum / self.count

    def quantile(self, fraction: float) -> float | None:
        """Return the ``fraction`` quantile (0.95 for p95), or None when empty."""
        return self.quantiles([fraction])[0]

    def quantiles(self, fractions: list[float]) -> list[float | None]:
        """Return one quantile per fraction (each in [0, 1]) by the nearest-rank method.

        The quantile is the smallest bucket whose cumulative weight reaches
        ``fraction * count`` (at least 1), reported as that bucket's representative value
        and clamped to the exact min and max. The last rank (p100) is the exact max. The rank is computed with exact fractions
        (0.95 is taken as 95/100), so a rank that should be whole is not moved by rounding.
        """
        for fraction in fractions:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"invalid quantile {fraction!r}: it must be between 0 and 1, e.g. 0.95")
        if not self.count:
            return [None] * len(fractions)

        ranks = [max(1, math.ceil(Fraction(repr(float(fraction))) * self.count)) for fraction in fractions]
        order = sorted(range(len(fractions)), key=lambda position: ranks[position])
        results: list[float | None] = [None] * len(fractions)

        cumulative = self.zero_count
        buckets = iter(sorted(self._counts.items()))
        value = 0.0
        for position in order:
            if ranks[position] >= self.count:
                results[position] = self.max  # the last rank is the largest value, known exactly
                continue
            while cumulative < ranks[position]:
                index, weight = next(buckets)
                cumulative += weight
                value = 2.0 * self._gamma**index / (self._gamma + 1.0)
            results[position] = self._clamp(value)
        return results

    def _clamp(self, value: float) -> float:
        assert self.min is not None and self.max is not None
        return min(max(value, self.min), self.max)

    def merge(self, other: LogHistogram) -> None:
        """Add the counts of ``other`` into this histogram.

        Raises ValueError when the two histograms have different relative errors, because
        their buckets would not line up.
        """
        if other.relative_error != self.relative_error:
            raise ValueError(
                f"cannot merge histograms with relative errors {self.relative_error!r} and "
                f"{other.relative_error!r}: every process must use the same relative error"
            )
        counts = self._counts
        for index, weight in other._counts.items():
            counts[index] = counts.get(index, 0) + weight
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max

    def copy(self) -> LogHistogram:
        """Return an independent copy."""
        duplicate = LogHistogram(self.relative_error)
        duplicate.merge(self)
        return duplicate

    def to_dict(self) -> dict[str, Any]:
        """Return the histogram as plain lists and numbers, for JSON and Locust's msgpack messages.

        Bucket indexes and counts are two parallel lists, so no map has a non-string key.
        """
        indexes = sorted(self._counts)
        return {
            "relative_error": self.relative_error,
            "indexes": indexes,
            "counts": [self._counts[index] for index in indexes],
            "zero_count": self.zero_count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogHistogram:
        """Rebuild a histogram from ``to_dict`` output. Raises ValueError on inconsistent data."""
        histogram = cls(float(data["relative_error"]))
        indexes = data["indexes"]
        counts = data["counts"]
        if len(indexes) != len(counts):
            raise ValueError(f"invalid histogram data: {len(indexes)} indexes but {len(counts)} counts")
        histogram._counts = {int(index): int(weight) for index, weight in zip(indexes, counts)}
        histogram.zero_count = int(data["zero_count"])
        histogram.count = histogram.zero_count + sum(histogram._counts.values())
        histogram.sum = float(data["sum"])
        histogram.min = None if data["min"] is None else float(data["min"])
        histogram.max = None if data["max"] is None else float(data["max"])
        return histogram

    def __eq__(self, other: object) -> bool:
        # The float sum is left out: its rounding depends on the order of adds and merges.
        if not isinstance(other, LogHistogram):
            return NotImplemented
        return (
            self.relative_error == other.relative_error
            and self._counts == other._counts
            and self.zero_count == other.zero_count
            and self.min == other.min
            and self.max == other.max
        )

    def __repr__(self) -> str:
        return f"LogHistogram(count={self.count}, buckets={self.bucket_count}, relative_error={self.relative_error})"
