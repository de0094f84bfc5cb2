"""A small PromQL evaluator over scrapes of the metrics endpoint, for testing dashboard panels without Prometheus.

Queries are parsed by ``promql-parser`` (the Rust parser Prometheus-compatible
databases use); this module computes what they mean over a list of scrapes, for
the functions and operators the dashboards use: selectors with every matcher,
``rate``/``increase`` (the change over the samples inside the range, no
extrapolation), ``histogram_quantile`` (linear within a bucket, as Prometheus),
the aggregations ``sum``/``max``/``min``/``avg``/``count`` with ``by``/``without``,
arithmetic between vectors with the same labels and with scalars. Anything else
raises, so a panel never passes on a query this does not understand.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import promql_parser as pq
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]


@dataclass(frozen=True)
class Scrape:
    at: float  # seconds
    samples: dict[Labels, float]  # labels include __name__

    @classmethod
    def parse(cls, at: float, text: str) -> Scrape:
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[frozenset({**s.labels, "__name__": s.name}.items())] = float(s.value)
        return cls(at, samples)


def evaluate(query: str, scrapes: list[Scrape]) -> Vector | float:
    """The query's value at the last scrape."""
    return _eval(pq.parse(query), scrapes)


def _matches(selector: pq.VectorSelector, labels: Labels) -> bool:
    have = dict(labels)
    if selector.name and have.get("__name__") != selector.name:
        return False
    assert not selector.matchers.or_matchers, "'or' matchers are not supported here"
    return all(_match(m, have.get(m.name, "")) for m in selector.matchers.matchers)


def _match(matcher: pq.Matcher, value: str) -> bool:
    if matcher.op == pq.MatchOp.Equal:
        return value == matcher.value
    if matcher.op == pq.MatchOp.NotEqual:
        return value != matcher.value
    matched = re.fullmatch(matcher.value, value) is not None
    return matched if matcher.op == pq.MatchOp.Re else not matched


def _series(
    selector: pq.VectorSelector, scrapes: list[Scrape], since: float
) -> dict[Labels, list[tuple[float, float]]]:
    found: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for scrape in scrapes:
        if scrape.at < since:
            continue
        for labels, value in scrape.samples.items():
            if _matches(selector, labels):
                found[labels].append((scrape.at, value))
    return found


def _drop_name(labels: Labels) -> Labels:
    return frozenset((k, v) for k, v in labels if k != "__name__")


def _change(points: list[tuple[float, float]]) -> float:
    """A counter's increase over the points, a reset (a value going down) counted from 0."""
    total = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total


def _range_function(name: str, matrix: pq.MatrixSelector, scrapes: list[Scrape]) -> Vector:
    since = scrapes[-1].at - matrix.range.total_seconds()
    out: Vector = {}
    for labels, points in _series(matrix.vector_selector, scrapes, since).items():
        if len(points) < 2:
            continue  # as in Prometheus: one sample has no rate
        change = _change(points)
        out[_drop_name(labels)] = change if name == "increase" else change / (points[-1][0] - points[0][0])
    return out


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return lower_bound


def _histogram_quantile(q: float, vector: Vector) -> Vector:
    groups: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, value in vector.items():
        rest = dict(labels)
        le = float(rest.pop("le"))
        groups[frozenset(rest.items())].append((le, value))
    return {labels: _quantile(q, buckets) for labels, buckets in groups.items()}


AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "max": max,
    "min": min,
    "avg": lambda vs: sum(vs) / len(vs),
    "count": len,
}
OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else math.nan,
}


def _aggregate(expr: pq.AggregateExpr, vector: Vector) -> Vector:
    op = str(expr.op)
    assert op in AGGREGATIONS, f"aggregation {op} is not supported here"
    groups: dict[Labels, list[float]] = defaultdict(list)
    modifier = expr.modifier
    for labels, value in vector.items():
        have = dict(_drop_name(labels))
        if modifier is None:
            key: Labels = frozenset()
        elif modifier.type == pq.AggModifierType.By:
            key = frozenset((k, have[k]) for k in modifier.labels if k in have)
        else:
            key = frozenset((k, v) for k, v in have.items() if k not in modifier.labels)
        groups[key].append(value)
    return {key: AGGREGATIONS[op](values) for key, values in groups.items()}


def _binary(op: str, lhs: Vector | float, rhs: Vector | float) -> Vector | float:
    assert op in OPERATORS, f"operator {op} is not supported here"
    f = OPERATORS[op]
    if isinstance(lhs, float) and isinstance(rhs, float):
        return f(lhs, rhs)
    if isinstance(rhs, float):
        return {k: f(v, rhs) for k, v in lhs.items()}  # type: ignore[union-attr]
    if isinstance(lhs, float):
        return {k: f(lhs, v) for k, v in rhs.items()}
    right = {_drop_name(k): v for k, v in rhs.items()}
    return {_drop_name(k): f(v, right[_drop_name(k)]) for k, v in lhs.items() if _drop_name(k) in right}


def _eval(expr: pq.Expr, scrapes: list[Scrape]) -> Vector | float:
    if isinstance(expr, pq.NumberLiteral):
        return float(expr.val)
    if isinstance(expr, pq.ParenExpr):
        return _eval(expr.expr, scrapes)
    if isinstance(expr, pq.UnaryExpr):
        return _binary("*", _eval(expr.expr, scrapes), -1.0)
    if isinstance(expr, pq.VectorSelector):
        return {labels: points[-1][1] for labels, points in _series(expr, scrapes[-1:], 0).items()}
    if isinstance(expr, pq.AggregateExpr):
        inner = _eval(expr.expr, scrapes)
        assert isinstance(inner, dict)
        return _aggregate(expr, inner)
    if isinstance(expr, pq.BinaryExpr):
        assert expr.modifier is None or not expr.modifier.matching, "vector matching modifiers are not supported here"
        return _binary(str(expr.op), _eval(expr.lhs, scrapes), _eval(expr.rhs, scrapes))
    if isinstance(expr, pq.Call):
        name = expr.func.name
        if name in ("rate", "increase"):
            (matrix,) = expr.args
            return _range_function(name, matrix, scrapes)
        if name == "histogram_quantile":
            q, inner = (_eval(a, scrapes) for a in expr.args)
            assert isinstance(q, float) and isinstance(inner, dict)
            return _histogram_quantile(q, inner)
        raise AssertionError(f"function {name} is not supported here")
    raise AssertionError(f"{type(expr).__name__} is not supported here: {expr}")
