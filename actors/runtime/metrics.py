"""Metrics each actor keeps (counters, gauges, histograms), as the families it reports.

Every actor owns its metrics in a ``Registry`` (plain numbers, no I/O, no lock: cores may hold
them too); its loop sends the registry's families to the node's metrics process every second,
which serves all actors' latest families on ``--listen-metrics-urls`` (in Prometheus' text
format, written by prometheus_client: actors/metrics/core.py). Names follow etcd's where etcd
has the metric, so existing dashboards and alerts read them. A restarted actor starts its
counters from zero, which Prometheus' ``rate`` takes as a counter reset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from proto_schemas.internal import MetricFamily, MetricSample

# etcd's buckets for disk latencies: 1 ms doubling to about 8 s.
DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels[n]) for n in self.labels)

    def samples(self) -> list[MetricSample]:
        return [
            MetricSample(name=self.name, labels=_pairs(self.labels, key), value=v)
            for key, v in sorted(self.values.items())
        ]


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def clear(self) -> None:
        """Forget every labelled value (before setting the current ones)."""
        self.values = {} if self.labels else {(): 0.0}


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = DISK_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def samples(self) -> list[MetricSample]:
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append(MetricSample(name=f"{self.name}_bucket", labels=["le", _number(bound)], value=running))
        out.append(MetricSample(name=f"{self.name}_bucket", labels=["le", "+Inf"], value=self.count))
        out.append(MetricSample(name=f"{self.name}_sum", labels=[], value=self.sum))
        out.append(MetricSample(name=f"{self.name}_count", labels=[], value=self.count))
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        if not name.endswith("_total"):  # Prometheus' rule, which its clients write back
            raise ValueError(f"counter {name} must be named *_total")
        return self._add(Counter(name, help_text, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: Sequence[float] = DISK_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def families(self) -> list[MetricFamily]:
        return [
            MetricFamily(name=m.name, kind=m.kind, help=m.help, samples=m.samples())
            for m in self._metrics.values()
        ]


def _pairs(names: tuple[str, ...], values: tuple[str, ...]) -> list[str]:
    return [x for pair in zip(names, values, strict=True) for x in pair]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
