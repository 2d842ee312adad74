"""Shared fixtures: real etcdz members on 127.0.0.1 with free ports, stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.cluster import LocalCluster, running


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
