"""Crash at any byte: replay returns a prefix of what was appended that holds everything synced.

A crash is injected into the WAL's single write path (``Wal._pwrite``): the write that crosses
the byte budget reaches the file only in part, optionally followed by garbage (a torn sector),
and the process "dies" (the Wal is dropped without syncing). Segments are small, so crashes land
in segment cuts too. Each example then reopens the directory, checks the replay against a model
of the appended records, and checks that appending after the repair works.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import event, given, settings
from hypothesis import strategies as st

from actors.wal.files import Wal
from proto_schemas.raft import Entry, HardState

MEMBER, CLUSTER = 7, 9


class Crash(Exception):
    pass


class Quiet:
    """A logger that drops everything (segment cuts are logged at info)."""

    def info(self, *args: object, **kw: object) -> None:
        pass

    warning = info


class CrashingWal(Wal):
    budget: int | None = None  # bytes that may still be written; None: no limit
    garbage: bytes = b""
    written = 0

    def _pwrite(self, fd: int, data: bytes | bytearray, offset: int) -> None:
        if self.budget is not None and len(data) > self.budget:
            super()._pwrite(fd, bytes(data[: self.budget]), offset)
            if self.garbage:
                os.pwrite(fd, self.garbage, offset + self.budget)
            raise Crash
        if self.budget is not None:
            self.budget -= len(data)
        self.written += len(data)
        super()._pwrite(fd, data, offset)


def run(
    d: str,
    ops: list[tuple],
    segment_bytes: int,
    budget: int | None,
    garbage: bytes,
    in_hypothesis: bool = True,
) -> tuple[list[object], int, int, int]:
    """Apply ``ops`` to a new WAL in ``d`` until done or crashed; the process then dies.
    Returns the records appended, how many were synced, the last term, the bytes written."""
    wal, _ = CrashingWal.open(
        d, member_id=MEMBER, cluster_id=CLUSTER, segment_bytes=segment_bytes, logger=Quiet()
    )
    wal.budget, wal.garbage = budget, garbage
    records: list[object] = []
    synced = 0  # records known durable
    last, term, commit = 0, 1, 0
    try:
        for o in ops:
            if o[0] == "sync":
                wal.sync()
                synced = len(records)
                continue
            _, sizes, back, with_hs = o
            first = max(last - back, 0) + 1
            if first <= last:
                term += 1  # only a newer leader overwrites
            new = [Entry(term=term, index=first + k, data=b"d" * n) for k, n in enumerate(sizes)]
            if new:
                last = new[-1].index
            commit = min(commit + 1, last)
            hs = HardState(term=term, vote=1, commit=commit) if with_hs else None
            wal.append(new, hs)
            records.extend(new)
            if hs is not None:
                records.append(hs)
    except Crash:
        if in_hypothesis:
            event("crashed mid-write")
    wal._close_fds()  # the process died: nothing more is written
    return records, synced, term, wal.written


def model(records: list[object]) -> tuple[list[Entry], HardState]:
    """What replaying ``records`` must give: raft's overwrite rule, the last hard state."""
    entries: list[Entry] = []
    hs = HardState()
    for r in records:
        if isinstance(r, Entry):
            if entries and r.index <= entries[-1].index:
                del entries[max(r.index - entries[0].index, 0) :]
            entries.append(r)
        else:
            assert isinstance(r, HardState)
            hs = r
    return entries, hs


op = st.one_of(
    st.tuples(
        st.just("append"),
        st.lists(st.integers(0, 150), max_size=6),  # entry data sizes
        st.integers(0, 3),  # how far back the first entry overwrites
        st.booleans(),  # with a hard state
    ),
    st.tuples(st.just("sync")),
)


# WAL_CRASH_EXAMPLES=5000 runs a longer campaign.
@settings(max_examples=int(os.environ.get("WAL_CRASH_EXAMPLES", "250")), deadline=None)
@given(
    ops=st.lists(op, min_size=1, max_size=30),
    crash_at=st.floats(0, 1),  # where in the stream of written bytes the crash lands
    garbage=st.sampled_from([b"", b"\xff" * 3, bytes(range(1, 200))]),
    segment_bytes=st.sampled_from([200, 600, 1 << 16]),
)
def test_replay_after_crash_is_a_prefix_holding_everything_synced(
    ops: list[tuple], crash_at: float, garbage: bytes, segment_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as dry, tempfile.TemporaryDirectory() as d:
        *_, total = run(dry, ops, segment_bytes, None, b"")
        records, synced, term, _ = run(d, ops, segment_bytes, int(crash_at * total), garbage)

        wal2, contents = Wal.open(
            d, member_id=MEMBER, cluster_id=CLUSTER, segment_bytes=segment_bytes, logger=Quiet()
        )
        got = (contents.entries, contents.hard_state)
        event(f"torn tail repaired: {contents.torn_tail}")
        event(f"segments: {min(len(wal2.segments), 3)}+")
        event(f"lost unsynced records: {len(records) - synced > 0}")
        candidates = [model(records[:k]) for k in range(synced, len(records) + 1)]
        assert got in candidates, f"replay is not a prefix holding the {synced} synced records"
        assert wal2.last_index == (contents.entries[-1].index if contents.entries else 0)

        # The repaired WAL takes new appends.
        nxt = Entry(term=term + 1, index=wal2.last_index + 1, data=b"after")
        wal2.append([nxt], HardState(term=term + 1))
        wal2.close()
        wal3, again = Wal.open(
            d, member_id=MEMBER, cluster_id=CLUSTER, segment_bytes=segment_bytes, logger=Quiet()
        )
        wal3.close()
        assert again.entries == contents.entries + [nxt]
        assert not again.torn_tail


def test_crash_sweep_across_segment_cuts() -> None:
    """A fixed workload with many cuts, crashed at byte after byte of its written stream."""
    ops: list[tuple] = []
    for i in range(40):
        ops.append(("append", [40] * (1 + i % 3), 2 if i % 11 == 10 else 0, i % 2 == 0))
        if i % 3 == 2:
            ops.append(("sync",))
    segment_bytes = 300
    with tempfile.TemporaryDirectory() as dry:
        *_, total = run(dry, ops, segment_bytes, None, b"", False)
    cuts_seen = 0
    for n, budget in enumerate(range(0, total + 1, 53)):
        for garbage in [(b"", b"\x01\x02\x03" * 7)[n % 2]]:
            with tempfile.TemporaryDirectory() as d:
                records, synced, _, _ = run(d, ops, segment_bytes, budget, garbage, False)
                wal, contents = Wal.open(
                    d,
                    member_id=MEMBER,
                    cluster_id=CLUSTER,
                    segment_bytes=segment_bytes,
                    logger=Quiet(),
                )
                cuts_seen = max(cuts_seen, len(wal.segments))
                got = (contents.entries, contents.hard_state)
                assert got in [model(records[:k]) for k in range(synced, len(records) + 1)], budget
                wal.close()
    assert cuts_seen > 5
