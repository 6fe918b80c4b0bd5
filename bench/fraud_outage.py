"""Fraud decisions through a Redis outage: `python -m bench.fraud_outage`.

The same stack and open-loop generator as bench/fraud_latency.py, 60 s at 200 tx/s, with the
redis-server stopped 20 s after the start and started again 20 s later (same port). Redis
runs here with an append-only file fsynced on every write, as a production stream would, so
a restart keeps the stream and the feature store. Reported: errors (goal 0), latency during
the outage, degraded decisions, and decisions in the lake's decision log vs requests sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import header, markdown_table, publish, wait_for_quiet
from bench.fraud_latency import (
    CONSUMER_NICE,
    prepare_home,
    run_load,
    start_stack,
    stop_stack,
    summarize,
    warm_redis,
)

NAME = "fraud_outage"
RATE, DURATION, OUTAGE = 200, 60.0, (20.0, 40.0)


def durable_redis():
    """The private redis-server with an append-only file fsynced on every write, as a production stream's."""
    from lakehouse.common.local_servers import RedisServer

    return RedisServer(options=("--appendonly", "yes", "--appendfsync", "always"))


def logged_decisions(home: Path, port: int, redis_url: str, tag: str, timeout_s: float = 120.0) -> tuple[int, float]:
    """Decisions of this run in the decision log once the stream is drained; and the wait."""
    import asyncio

    import polars as pl
    import redis.asyncio as aioredis

    from lakehouse.common.lake import Lake
    from lakehouse.fraud.online import CONSUMER_GROUPS, DECISION_LOG_PARTS, event_stream, read_decision_log
    from lakehouse.fraud.settings import CASE, FraudSettings

    started = time.monotonic()

    async def drained() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await event_stream(client, FraudSettings()).caught_up(CONSUMER_GROUPS)
        finally:
            await client.aclose()

    while time.monotonic() - started < timeout_s:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            waiting = json.loads(r.read())["cases"]["fraud"]["events_waiting"]
        if waiting == 0 and asyncio.run(drained()):
            break
        time.sleep(0.5)
    waited = time.monotonic() - started
    lake = Lake(str(home / "lake"))
    days = lake.partitions(CASE, DECISION_LOG_PARTS, "day")
    ids = pl.concat([read_decision_log(lake, d).select("tx_id") for d in days]) if days else pl.DataFrame({"tx_id": []})
    return int(ids.filter(pl.col("tx_id").str.contains(f"-{tag}-", literal=True)).height), waited


def render(p: dict) -> str:
    o, d, n = p["overall"], p["during_outage"], p["normal"]
    rows = [
        ["whole run", o["requests"], o["errors"], o["degraded"], o["p50_ms"], o["p99_ms"], o["max_ms"]],
        [
            f"outage ({OUTAGE[0]:.0f}-{OUTAGE[1]:.0f} s)",
            d["requests"],
            d["errors"],
            d["degraded"],
            d["p50_ms"],
            d["p99_ms"],
            d["max_ms"],
        ],
        ["Redis up", n["requests"], n["errors"], n["degraded"], n["p50_ms"], n["p99_ms"], n["max_ms"]],
    ]
    table = markdown_table(["window", "requests", "errors", "degraded", "P50 ms", "P99 ms", "max ms"], rows)
    logged = (
        f"Decisions in the decision log: {p['logged']:,} of {p['sent']:,} sent "
        f"(waited {p['drain_wait_s']:.1f} s for the stream to drain)."
    )
    return f"{table}\n\n{logged}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    payload = header(NAME, runs=1)
    payload["quiet"] = wait_for_quiet(max_wait_s=30)
    with durable_redis() as server, tempfile.TemporaryDirectory(prefix="fraud-outage-") as tmp:
        home = Path(tmp) / "home"
        history, lists, bodies, live_day = prepare_home(home)
        warm_redis(server.url, history, lists)
        bodies_file = Path(tmp) / "bodies.jsonl"
        bodies_file.write_text("\n".join(json.dumps(b) for b in bodies))
        from lakehouse.common.local_servers import free_port

        port = free_port()
        stack = start_stack(home, server.url, port, live_day, CONSUMER_NICE)
        try:
            run_load(port, bodies_file, 100, 3, "warmup")

            def outage() -> None:
                threading.Timer(OUTAGE[0], server.stop).start()
                threading.Timer(OUTAGE[1], server.start).start()

            raw = run_load(port, bodies_file, RATE, DURATION, "outage", on_start=outage)
            logged, waited = logged_decisions(home, port, server.url, "outage")
        finally:
            stop_stack(stack)
    payload.update(
        rate=RATE,
        duration_s=DURATION,
        outage_s=list(OUTAGE),
        overall=summarize(raw),
        during_outage=summarize(raw, OUTAGE),
        normal=summarize(
            {**raw, "sched": [s if not (OUTAGE[0] <= s < OUTAGE[1]) else -1 for s in raw["sched"]]}, (0, DURATION + 1)
        ),
        sent=len(raw["sched"]),
        logged=logged,
        drain_wait_s=waited,
        redis=(
            "private redis-server, appendonly yes, appendfsync always; stopped (SIGTERM) and started on the same port"
        ),
    )
    return publish(NAME, payload, render)


if __name__ == "__main__":
    sys.exit(main())
