"""Tests of LogHistogram: error bound, exact merges, serialisation and bounded size."""

from __future__ import annotations

import json
import math
import random

import pytest
from locust.rpc.protocol import Message

from locust_llm_sse.metrics._histogram import MAX_TRACKED_VALUE, MIN_TRACKED_VALUE, LogHistogram

RELATIVE_ERROR = 0.01
# Float rounding in log() can put a value on a bucket border into the next bucket.
TOLERANCE = RELATIVE_ERROR * (1 + 1e-9)
FRACTIONS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[rank - 1]


def lognormal_values(count: int, seed: int) -> list[float]:
    generator = random.Random(seed)
    return [generator.lognormvariate(2.0, 2.5) for _ in range(count)]


def filled(values: list[float]) -> LogHistogram:
    histogram = LogHistogram(RELATIVE_ERROR)
    for value in values:
        histogram.add(value)
    return histogram


def test_quantiles_within_relative_error() -> None:
    values = lognormal_values(20_000, seed=1)
    histogram = filled(values)

    for fraction, estimate in zip(FRACTIONS, histogram.quantiles(FRACTIONS)):
        exact = nearest_rank(values, fraction)
        assert estimate is not None
        assert abs(estimate - exact) <= TOLERANCE * exact, (fraction, estimate, exact)


def test_sub_millisecond_values_keep_resolution() -> None:
    values = [0.0123 + 0.0001 * i for i in range(100)]
    histogram = filled(values)

    for fraction in (0.5, 0.9, 0.99):
        exact = nearest_rank(values, fraction)
        estimate = histogram.quantile(fraction)
        assert estimate is not None
        assert abs(estimate - exact) <= TOLERANCE * exact


def test_weighted_quantiles_match_repeated_values() -> None:
    generator = random.Random(2)
    pairs = [(generator.uniform(0.5, 50.0), generator.randint(1, 50)) for _ in range(2_000)]
    weighted = LogHistogram(RELATIVE_ERROR)
    repeated = LogHistogram(RELATIVE_ERROR)
    for value, weight in pairs:
        weighted.add(value, weight)
    expanded = [value for value, weight in pairs for _ in range(weight)]
    for value in expanded:
        repeated.add(value)

    assert weighted.count == len(expanded)
    assert weighted == repeated
    assert weighted.quantiles(FRACTIONS) == repeated.quantiles(FRACTIONS)
    for fraction, estimate in zip(FRACTIONS, weighted.quantiles(FRACTIONS)):
        exact = nearest_rank(expanded, fraction)
        assert estimate is not None
        assert abs(estimate - exact) <= TOLERANCE * exact


def test_mean_min_max_are_exact() -> None:
    values = [0.25, 3.5, 1000.0, 42.0]
    histogram = filled(values)

    assert histogram.count == 4
    assert histogram.mean == pytest.approx(sum(values) / 4, rel=1e-15)
    assert histogram.min == 0.25
    assert histogram.max == 1000.0
    assert histogram.quantile(1.0) == 1000.0
    assert histogram.quantile(0.0) == 0.25


def test_single_value_is_reported_exactly() -> None:
    histogram = filled([7.3])

    assert histogram.quantiles([0.5, 0.99]) == [7.3, 7.3]


def test_empty_histogram_has_no_quantiles() -> None:
    histogram = LogHistogram()

    assert histogram.quantiles([0.5, 0.99]) == [None, None]
    assert histogram.mean is None


def test_whole_rank_is_not_moved_by_rounding() -> None:
    # 0.95 * 20 is 19 exactly; in floats it is 18.999999999999996 or 19.000000000000004.
    histogram = filled([float(i) for i in range(1, 21)])

    assert histogram.quantile(0.95) == pytest.approx(19.0, rel=RELATIVE_ERROR)
    assert histogram.quantile(0.95) < 19.5


def test_values_below_min_tracked_share_zero_bucket() -> None:
    histogram = filled([0.0, MIN_TRACKED_VALUE / 10, 5.0])

    assert histogram.zero_count == 2
    assert histogram.quantile(0.5) == 0.0
    assert histogram.quantile(1.0) == 5.0


def test_values_above_max_tracked_share_top_bucket() -> None:
    histogram = filled([MAX_TRACKED_VALUE * 10, MAX_TRACKED_VALUE * 100])

    assert histogram.bucket_count == 1
    assert histogram.max == MAX_TRACKED_VALUE * 100


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_add_rejects_invalid_value(value: float) -> None:
    with pytest.raises(ValueError, match="invalid histogram value"):
        LogHistogram().add(value)


def test_add_rejects_zero_weight() -> None:
    with pytest.raises(ValueError, match="invalid histogram weight"):
        LogHistogram().add(1.0, 0)


@pytest.mark.parametrize("relative_error", [0.0, 1.0, -0.1])
def test_constructor_rejects_invalid_relative_error(relative_error: float) -> None:
    with pytest.raises(ValueError, match="invalid relative_error"):
        LogHistogram(relative_error)


def test_merge_equals_single_histogram() -> None:
    values = lognormal_values(30_000, seed=3)
    single = filled(values)
    parts = [filled(values[start::3]) for start in range(3)]

    merged = LogHistogram(RELATIVE_ERROR)
    for part in parts:
        merged.merge(part)

    assert merged == single
    assert merged.count == single.count
    assert merged.quantiles(FRACTIONS) == single.quantiles(FRACTIONS)
    assert merged.mean == pytest.approx(single.mean, rel=1e-12)


def test_merge_order_does_not_matter() -> None:
    parts = [filled(lognormal_values(1_000, seed=seed)) for seed in (4, 5, 6)]
    forward = LogHistogram(RELATIVE_ERROR)
    backward = LogHistogram(RELATIVE_ERROR)
    for part in parts:
        forward.merge(part)
    for part in reversed(parts):
        backward.merge(part)

    assert forward == backward
    assert forward.quantiles(FRACTIONS) == backward.quantiles(FRACTIONS)


def test_merge_rejects_other_relative_error() -> None:
    with pytest.raises(ValueError, match="cannot merge histograms"):
        LogHistogram(0.01).merge(LogHistogram(0.02))


def test_copy_is_independent() -> None:
    original = filled([1.0, 2.0])
    duplicate = original.copy()
    duplicate.add(3.0)

    assert original.count == 2
    assert duplicate.count == 3


def test_dict_round_trip_through_json() -> None:
    original = filled(lognormal_values(5_000, seed=7) + [0.0])

    restored = LogHistogram.from_dict(json.loads(json.dumps(original.to_dict())))

    assert restored == original
    assert restored.count == original.count
    assert restored.sum == original.sum
    assert restored.quantiles(FRACTIONS) == original.quantiles(FRACTIONS)


def test_dict_round_trip_through_locust_message() -> None:
    original = filled(lognormal_values(5_000, seed=8))
    message = Message("stats", {"llm": original.to_dict()}, "worker-1")

    received = Message.unserialize(message.serialize())
    restored = LogHistogram.from_dict(received.data["llm"])

    assert restored == original
    assert restored.quantiles(FRACTIONS) == original.quantiles(FRACTIONS)


def test_dict_has_only_string_keys() -> None:
    data = filled([0.0, 1.0, 250.0]).to_dict()

    assert all(isinstance(key, str) for key in data)
    assert isinstance(data["indexes"], list)
    assert isinstance(data["counts"], list)


def test_from_dict_rejects_mismatched_lists() -> None:
    data = filled([1.0, 2.0]).to_dict()
    data["counts"] = data["counts"][:1]

    with pytest.raises(ValueError, match="2 indexes but 1 counts"):
        LogHistogram.from_dict(data)


def test_size_does_not_grow_with_sample_count() -> None:
    generator = random.Random(9)
    small = LogHistogram(RELATIVE_ERROR)
    large = LogHistogram(RELATIVE_ERROR)
    for _ in range(1_000):
        small.add(generator.uniform(1.0, 1000.0))
    for _ in range(200_000):
        large.add(generator.uniform(1.0, 1000.0))
    # Buckets needed for [1, 1000]: log(1000) / log(gamma), plus one for the border.
    gamma = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
    bound = math.ceil(math.log(1000.0) / math.log(gamma)) + 1

    assert small.bucket_count <= bound
    assert large.bucket_count <= bound
    assert len(json.dumps(large.to_dict())) < 10 * bound * 8


def test_bucket_count_never_exceeds_bound() -> None:
    histogram = LogHistogram(RELATIVE_ERROR)
    value = MIN_TRACKED_VALUE / 2
    while value < MAX_TRACKED_VALUE * 4:
        histogram.add(value)
        value *= 1.001

    assert histogram.bucket_count <= histogram.max_bucket_count()
    assert histogram.max_bucket_count() < 2_200


def test_p100_is_exact_maximum() -> None:
    histogram = LogHistogram()
    for value in (100.0, 100.49, 101.41):
        histogram.add(value)

    assert histogram.quantile(1.0) == 101.41
    assert histogram.quantile(0.99) == 101.41
