"""A WAL corrupted in the middle: the node refuses to start, says why, and does not retry."""

from __future__ import annotations

import glob
import os

from tools.cluster import LocalCluster


def test_mid_log_corruption_refuses_to_start(node: LocalCluster) -> None:
    member = node.members[0]
    with node.client() as c:
        for i in range(200):
            c.put(f"/wal/{i}", "v" * 100)
    node.stop(member)
    (segment,) = glob.glob(os.path.join(member.data_dir, "member", "wal", "*.wal"))
    with open(segment, "r+b") as f:
        f.seek(4000)  # inside the first records, with valid records after it
        byte = f.read(1)
        f.seek(4000)
        f.write(bytes([byte[0] ^ 0xFF]))
    node.start(member)
    assert member.proc is not None
    assert member.proc.wait(20) == 1  # not restarted over and over: the member stops
    with open(member.log_path, encoding="utf-8") as f:
        log = f.read()
    assert '"error_type": "WalCorruptError"' in log and '"fatal": true' in log
    assert "member cannot start: an actor failed in a way a restart cannot cure" in log
