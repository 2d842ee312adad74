"""The actors' families in Prometheus' text exposition format (version 0.0.4), written by
prometheus_client: its escaping, number formatting and counter rules, not ours. Imported by
the metrics process at its first scrape (the library costs ~100 ms to import)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from proto_schemas.internal import MetricFamily


class _Families(Collector):
    """The actors' families as prometheus_client's metrics. Families of the same name from
    several processes (the watch hubs of a member) are merged, equal series summed."""

    def __init__(self, families: Iterable[MetricFamily]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, tuple[MetricFamily, dict[tuple[str, tuple[str, ...]], float]]] = {}
        for family in self._families:
            _, series = merged.setdefault(family.name, (family, {}))
            for s in family.samples:
                key = (s.name, tuple(s.labels))
                series[key] = series.get(key, 0.0) + s.value
        for name in sorted(merged):
            family, series = merged[name]
            try:  # prometheus_client writes a counter's family name with its _total
                if family.kind == "counter" and name.endswith("_total"):
                    metric = Metric(name.removesuffix("_total"), family.help, "counter")
                else:
                    metric = Metric(name, family.help, family.kind if family.kind != "counter" else "unknown")
            except ValueError:
                continue  # a name or kind Prometheus has no words for: left out, not served broken
            for (sample, labels), value in series.items():
                metric.add_sample(sample, dict(zip(labels[::2], labels[1::2], strict=False)), value)
            yield metric


def render(families: Iterable[MetricFamily]) -> str:
    """Prometheus' text exposition format (version 0.0.4), by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()
