"""Histograms cheap enough for the hot path: one bisect and two additions per observation,
exported as a Prometheus histogram at scrape time (prometheus_client's own Histogram takes a
lock per observation)."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client.core import HistogramMetricFamily

# seconds: 50 µs to 10 s, roughly ×2.5 per bucket
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)


class Buckets:
    """Counts of observations per upper bound (the last slot: above every bound) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out


def histogram(name: str, documentation: str, series: dict[tuple[str, ...], Buckets],
              labels: tuple[str, ...] = ()) -> HistogramMetricFamily:
    """A histogram family with one series per label-values key of `series`."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, b in series.items():
        family.add_metric(list(values), b.cumulative(), b.sum)
    return family
