"""The decision spool: every answered decision is on local disk before the answer leaves, and a
publisher moves it to the event stream in the background (at least once: the consumers are
idempotent); what the stream cannot take yet waits on disk, up to a bound."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path

from lakehouse.common.event_stream import EventStream
from lakehouse.fraud.settings import ServingSettings

log = logging.getLogger(__name__)


class SpoolFull(RuntimeError):
    """The on-disk spool reached its bound: a decision that cannot be logged is not answered."""


class Spool:
    """Events not yet on the stream, as JSON lines in segment files that only this process
    holds (an exclusive flock, released by the kernel when the process dies however it dies).

    `append` writes a line before the caller answers; the publisher reads lines back in order
    and `commit`s them once the stream has them, and a segment fully committed is deleted.
    Segments of dead processes are claimed and published again (at least once: the consumers
    are idempotent). Bounds: `max_bytes` on disk (then `append` raises SpoolFull); memory
    holds one read batch.
    """

    def __init__(self, directory: Path, max_bytes: int, segment_events: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_events = segment_events
        self.segments: list[
            dict
        ] = []  # oldest first: path, fd, pos (next unread byte), size, events, committed, closed
        self.writer: dict | None = None
        self.dirty = False
        self.bytes = 0

    # ------------------------------------------------------------------ writing

    def _open(self, path: Path, create: bool) -> dict | None:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process holds it
            os.close(fd)
            return None
        size = os.fstat(fd).st_size
        events = os.pread(fd, size, 0).count(b"\n") if size else 0
        segment = {
            "path": path,
            "fd": fd,
            "pos": 0,
            "size": size,
            "events": events,
            "committed": 0,
            "closed": not create,
        }
        self.bytes += size
        return segment

    def append(self, event: dict) -> None:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        if self.bytes + len(line) > self.max_bytes:
            raise SpoolFull(
                f"decision spool full ({self.bytes:,} bytes in {self.directory}): "
                "the event stream has been away too long"
            )
        if self.writer is None or self.writer["events"] >= self.segment_events:
            self._rotate()
        written = os.write(self.writer["fd"], line)
        if written != len(line):  # a short write (disk full): do not answer on a torn line
            raise SpoolFull(f"decision spool: short write in {self.writer['path']}")
        self.writer["size"] += written
        self.writer["events"] += 1
        self.bytes += written
        self.dirty = True

    def _rotate(self) -> None:
        if self.writer is not None:
            os.fsync(self.writer["fd"])  # once per segment: its lines are on disk before it can be dropped
            self.writer["closed"] = True
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.writer = self._open(path, create=True)
        self.segments.append(self.writer)

    def sync(self) -> None:
        """fsync what was written since the last call (the group commit)."""
        writer = self.writer
        if self.dirty and writer is not None:
            self.dirty = False
            try:
                os.fsync(writer["fd"])
            except OSError:  # rotated and closed meanwhile: closed segments were synced when published
                pass

    def claim_orphans(self) -> int:
        """Take the segments no live process holds (a worker that died); returns how many events."""
        if not self.directory.exists():
            return 0
        mine = {s["path"] for s in self.segments}
        claimed = []
        for path in sorted(self.directory.glob("*.jsonl")):
            if path not in mine and (segment := self._open(path, create=False)) is not None:
                claimed.append(segment)
        self.segments[:0] = claimed
        return sum(s["events"] for s in claimed)

    # ------------------------------------------------------------------ reading back

    @property
    def waiting(self) -> int:
        return sum(s["events"] - s["committed"] for s in self.segments)

    def read(self, limit: int) -> tuple[list[bytes], tuple[dict, int, int] | None]:
        """Up to `limit` events (JSON lines, as written) of the oldest segment with unread lines, and the mark to
        commit them."""
        for segment in self.segments:
            if segment["pos"] < segment["size"]:
                data = os.pread(segment["fd"], min(segment["size"] - segment["pos"], 4 * 1024 * 1024), segment["pos"])
                lines = data.split(b"\n")[:-1][:limit]  # whole lines only
                if not lines:
                    continue
                end = segment["pos"] + sum(len(line) + 1 for line in lines)
                return lines, (segment, end, len(lines))
        return [], None

    def commit(self, mark: tuple[dict, int, int]) -> None:
        segment, end, count = mark
        segment["pos"], segment["committed"] = end, segment["committed"] + count
        self._drop_published()

    def _drop_published(self) -> None:
        for segment in [s for s in self.segments if s["closed"] and s["pos"] >= s["size"]]:
            segment["path"].unlink(missing_ok=True)
            os.close(segment["fd"])
            self.bytes -= segment["size"]
            self.segments.remove(segment)

    def close(self) -> None:
        """Release every segment (what is unpublished stays on disk for the next start)."""
        self.sync()
        if self.writer is not None:
            self.writer["closed"] = True
            self.writer = None
        self._drop_published()
        for segment in self.segments:
            os.close(segment["fd"])
        self.segments = []
        self.bytes = 0


class EventPublisher:
    """Moves spooled events to the stream in the background; keeps them on disk while it is away."""

    def __init__(self, stream: EventStream, spool: Spool, serving: ServingSettings):
        self.stream = stream
        self.spool = spool
        self.serving = serving
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.published = 0
        self.stopping = False
        self.failing = False

    def put(self, fields: dict[str, str]) -> None:
        """On disk before it returns (raises SpoolFull at the bound)."""
        self.spool.append(fields)
        self.wake.set()

    @property
    def waiting(self) -> int:
        return self.spool.waiting

    def start(self) -> None:
        self.spool.claim_orphans()
        self.tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._sync())]

    async def flush_once(self) -> int:
        events, mark = self.spool.read(self.serving.publish_batch)
        if not events:
            return 0
        await self.stream.append_encoded(events)
        self.spool.commit(mark)
        self.published += len(events)
        return len(events)

    async def _run(self) -> None:
        # Stopped by a flag, not by cancellation: a call cancelled midway can hang the client.
        last_claim = time.monotonic()
        while not self.stopping:
            if time.monotonic() - last_claim > 5.0:  # segments of a worker that died meanwhile
                self.spool.claim_orphans()
                last_claim = time.monotonic()
            self.wake.clear()
            try:
                published = await self.flush_once()
                self.failing = False
            except Exception as exc:  # stream away: the events stay spooled, retry
                self.failing = True
                log.debug("publish failed, %d events spooled: %r", self.spool.waiting, exc)
                await asyncio.sleep(0.1)
                continue
            if not published:
                try:
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                except TimeoutError:
                    pass

    async def _sync(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.serving.spool_fsync_s)
            if self.spool.dirty:
                await asyncio.to_thread(self.spool.sync)

    async def stop(self, timeout_s: float = 3.0) -> int:
        """Publish what can be published in `timeout_s`; the rest stays spooled. Returns how many stay."""
        self.stopping = True
        self.wake.set()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.spool.waiting and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    if not await self.flush_once():
                        break
            except Exception:
                break
        left = self.spool.waiting
        self.spool.close()
        return left
