"""The test-side PromQL evaluator computes what Prometheus would, on hand-made scrapes."""

from __future__ import annotations

import math

import pytest

from promql_eval import Scrape, evaluate

EXPOSITION = """# TYPE jobs_total counter
jobs_total{{kind="a"}} {a}
jobs_total{{kind="b"}} {b}
# TYPE lag gauge
lag{{partition="0"}} {lag0}
lag{{partition="1"}} 2
# TYPE t_seconds histogram
t_seconds_bucket{{le="0.1"}} {fast}
t_seconds_bucket{{le="1.0"}} 10
t_seconds_bucket{{le="+Inf"}} 10
t_seconds_count 10
t_seconds_sum 3
"""


def scrape(at: float, a: float, b: float, lag0: float = 5, fast: float = 5) -> Scrape:
    return Scrape.parse(at, EXPOSITION.format(a=a, b=b, lag0=lag0, fast=fast))


SCRAPES = [scrape(0, 0, 10), scrape(10, 4, 12), scrape(20, 10, 2)]  # b was reset to 0 and counted 2 more


def test_selectors_and_aggregations() -> None:
    assert evaluate("sum(lag)", SCRAPES) == {frozenset(): 7.0}
    assert evaluate('lag{partition="1"}', SCRAPES) == {frozenset({("__name__", "lag"), ("partition", "1")}): 2.0}
    assert evaluate("max by (partition) (lag)", SCRAPES) == {
        frozenset({("partition", "0")}): 5.0,
        frozenset({("partition", "1")}): 2.0,
    }
    assert evaluate('count(lag{partition=~"0|1"})', SCRAPES) == {frozenset(): 2.0}
    assert evaluate('sum(lag{partition!="0"}) * 2', SCRAPES) == {frozenset(): 4.0}


def test_rate_and_increase_count_a_reset_from_zero() -> None:
    assert evaluate('increase(jobs_total{kind="a"}[1m])', SCRAPES) == {frozenset({("kind", "a")}): 10.0}
    assert evaluate('increase(jobs_total{kind="b"}[1m])', SCRAPES) == {frozenset({("kind", "b")}): 4.0}
    assert evaluate("sum(rate(jobs_total[1m]))", SCRAPES) == {frozenset(): pytest.approx(14 / 20)}
    assert evaluate('increase(jobs_total{kind="a"}[15s])', SCRAPES) == {frozenset({("kind", "a")}): 6.0}
    assert evaluate("rate(jobs_total[5s])", SCRAPES) == {}, "one sample in range has no rate"


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    changing = [scrape(0, 0, 0, fast=0), scrape(10, 0, 0, fast=5)]
    # 5 of 10 observations at most 0.1 s, the rest under 1 s: the median is at the first bucket's bound.
    (median,) = evaluate("histogram_quantile(0.5, sum by (le) (t_seconds_bucket))", changing).values()  # type: ignore[union-attr]
    assert median == pytest.approx(0.1)
    (p95,) = evaluate("histogram_quantile(0.95, sum by (le) (t_seconds_bucket))", changing).values()  # type: ignore[union-attr]
    assert p95 == pytest.approx(0.1 + 0.9 * 0.9)
    (empty,) = evaluate("histogram_quantile(0.5, sum by (le) (rate(t_seconds_bucket[1m])))", SCRAPES).values()  # type: ignore[union-attr]
    assert math.isnan(empty), "no observations in the range"


@pytest.mark.parametrize("query", ["irate(jobs_total[1m])", "lag > 1", "lag - on(partition) lag", "topk(1, lag)"])
def test_what_it_does_not_know_raises(query: str) -> None:
    with pytest.raises(AssertionError):
        evaluate(query, SCRAPES)
