"""The decision spool: on disk before an answer, read back in order, dropped once published,
bounded, and claimed from a process that died (its lock released)."""

import json
import os

import pytest

from lakehouse.fraud.spool import Spool, SpoolFull


def _events(n: int, start: int = 0) -> list[dict]:
    return [{"tx_id": f"T{i}", "features": "x" * 50} for i in range(start, start + n)]


def test_events_are_read_back_in_order_and_dropped_once_published(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6, segment_events=4)
    for event in _events(10):
        spool.append(event)
    assert spool.waiting == 10 and len(list(tmp_path.glob("*.jsonl"))) == 3
    seen = []
    while True:
        events, mark = spool.read(3)
        if not events:
            break
        seen += [json.loads(e)["tx_id"] for e in events]
        spool.commit(mark)
    assert seen == [f"T{i}" for i in range(10)] and spool.waiting == 0
    assert len(list(tmp_path.glob("*.jsonl"))) == 1  # the segment still being written
    spool.close()
    assert not list(tmp_path.glob("*.jsonl"))


def test_the_spool_is_bounded(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000, segment_events=100)
    with pytest.raises(SpoolFull, match="spool full"):
        for event in _events(100):
            spool.append(event)
    assert spool.bytes <= 1_000
    events, mark = spool.read(100)
    spool.commit(mark)
    spool.close()


def test_a_dead_processs_segments_are_claimed_once_its_lock_is_gone(tmp_path):
    dead = Spool(tmp_path, max_bytes=10**6, segment_events=100)
    for event in _events(5):
        dead.append(event)
    alive = Spool(tmp_path, max_bytes=10**6, segment_events=100)
    assert alive.claim_orphans() == 0  # still held
    for segment in dead.segments:  # the process dies: the kernel closes its files and drops the lock
        os.close(segment["fd"])
    assert alive.claim_orphans() == 5
    events, mark = alive.read(10)
    assert [json.loads(e)["tx_id"] for e in events] == [f"T{i}" for i in range(5)]
    alive.commit(mark)
    assert not list(tmp_path.glob("*.jsonl"))
    alive.close()


def test_a_torn_last_line_is_not_read(tmp_path):
    (tmp_path / "0-1-a.jsonl").write_bytes(json.dumps({"tx_id": "T0"}).encode() + b"\n" + b'{"tx_id": "T1"')
    spool = Spool(tmp_path, max_bytes=10**6, segment_events=100)
    spool.claim_orphans()
    events, mark = spool.read(10)
    assert [json.loads(e)["tx_id"] for e in events] == ["T0"]
    spool.commit(mark)
    assert spool.read(10) == ([], None)
    spool.close()
