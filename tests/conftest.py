"""Shared fixtures: real etcdz members (and a real etcd to compare with) on 127.0.0.1 with free
ports, stopped by pid."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from etcdz import Client
from tools.cluster import LocalCluster, running
from tools.etcd_cluster import EtcdCluster

ETCD, ETCDCTL = shutil.which("etcd"), shutil.which("etcdctl")


def _running(root: str, members: int = 1) -> Iterator[LocalCluster]:
    with running(root, members) as cluster:
        yield cluster


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One fresh single-member node for a test."""
    yield from _running(str(tmp_path_factory.mktemp("node")))


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One node shared by the tests of a module that only read and write their own keys."""
    yield from _running(str(tmp_path_factory.mktemp("shared")))


def _secure(cluster: LocalCluster) -> Client:
    """root (password rootpw) and alice (apw: read /a/, readwrite [/b, /c), write /w), then
    auth enabled; returns a client logged in as root."""
    with cluster.client() as c:
        c.user_add("root", "rootpw")
        c.role_add("root")
        c.user_grant_role("root", "root")
        c.user_add("alice", "apw")
        c.role_add("reader")
        c.role_grant_permission("reader", "read", "/a/", prefix=True)
        c.role_grant_permission("reader", "readwrite", "/b", "/c")
        c.role_grant_permission("reader", "write", "/w")
        c.user_grant_role("alice", "reader")
        c.put("/a/x", "1")
        c.put("/secret", "s")
        c.auth_enable()
    return Client(cluster.endpoints, user="root", password="rootpw", **cluster.client_options)


@pytest.fixture
def secure() -> Callable[[LocalCluster], Client]:
    """Users and roles on a cluster, then auth enabled (see ``_secure``)."""
    return _secure


@pytest.fixture(scope="module")
def secured_shared_node(shared_node: LocalCluster) -> Iterator[tuple[LocalCluster, Client]]:
    """The module's shared node with ``_secure``'s users and roles and auth enabled, and a
    client logged in as root (for the tests of a module that keep to their own keys)."""
    root = _secure(shared_node)
    yield shared_node, root
    root.close()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-member etcd on 127.0.0.1 (its client URL), for comparisons; skipped where
    etcd and etcdctl are not installed."""
    if not (ETCD and ETCDCTL):
        pytest.skip("etcd/etcdctl not installed")
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd"))) as cluster:
        yield cluster.client_urls[0]
