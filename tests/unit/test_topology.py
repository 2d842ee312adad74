"""The deployment's service definitions: rendered for compose, rewritten for loopback."""

from __future__ import annotations

from typing import Any

import yaml

from tools import topology


def loopback(doc: dict[str, Any]) -> tuple[dict[str, topology.Process], dict[tuple[str, int], int]]:
    """The document on loopback, with the ports handed out by (instance, container port)."""
    ports: dict[tuple[str, int], int] = {}

    def port(instance: str, container_port: int) -> int:
        return ports.setdefault((instance, container_port), 30000 + len(ports))

    return {p.instance: p for p in topology.on_loopback(doc, "/data", port)}, ports


def test_the_rendering_reads_back_as_the_document() -> None:
    doc = topology.compose(3, 2)
    assert yaml.safe_load(topology.render(doc)) == doc
    assert topology.render(doc).startswith("# etcdz")


def test_members_and_a_scaled_hub_service() -> None:
    doc = topology.compose(3, 2)
    assert list(doc["services"]) == ["etcdz-1", "etcdz-2", "etcdz-3", "watch-hub"]
    assert topology.instances(doc)[-2:] == [("watch-hub-1", "watch-hub"), ("watch-hub-2", "watch-hub")]
    env = doc["services"]["etcdz-2"]["environment"]
    assert env["ETCDZ_INITIAL_CLUSTER"] == topology.initial_cluster(["etcdz-1", "etcdz-2", "etcdz-3"])
    assert env["ETCDZ_WATCH_HUBS"] == "0" and "ETCDZ_LISTEN_WATCH_URLS" not in env
    alone = topology.compose(1, 0, member_hubs=1, metrics=False)["services"]
    assert list(alone) == ["etcdz-1"]
    assert alone["etcdz-1"]["environment"]["ETCDZ_LISTEN_WATCH_URLS"] == "tcp://0.0.0.0:2381"
    assert "ETCDZ_LISTEN_METRICS_URLS" not in alone["etcdz-1"]["environment"]


def test_on_loopback_every_host_is_127_0_0_1_and_every_service_port_its_own() -> None:
    runs, ports = loopback(topology.compose(2, 2))
    one, two = runs["etcdz-1"].env, runs["etcdz-2"].env
    assert one["ETCDZ_DATA_DIR"] == "/data/etcdz-1"
    peer1, peer2 = ports[("etcdz-1", 2380)], ports[("etcdz-2", 2380)]
    assert (
        one["ETCDZ_LISTEN_PEER_URLS"]
        == one["ETCDZ_INITIAL_ADVERTISE_PEER_URLS"]
        == f"tcp://127.0.0.1:{peer1}"
    )
    assert two["ETCDZ_INITIAL_CLUSTER"] == f"etcdz-1=tcp://127.0.0.1:{peer1},etcdz-2=tcp://127.0.0.1:{peer2}"
    hubs = [runs["watch-hub-1"], runs["watch-hub-2"]]
    assert [h.command for h in hubs] == [["watch-hub"], ["watch-hub"]]
    assert hubs[0].env["ETCDZ_LISTEN_WATCH_URLS"] != hubs[1].env["ETCDZ_LISTEN_WATCH_URLS"]
    assert (
        hubs[0].env["ETCDZ_ENDPOINTS"]
        == f"{one['ETCDZ_ADVERTISE_CLIENT_URLS']},{two['ETCDZ_ADVERTISE_CLIENT_URLS']}"
    )
    assert len(set(ports.values())) == len(ports)
