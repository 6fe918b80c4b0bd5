"""Forecast lookup endpoint under an open-loop load of 500 requests per second.

    .venv/bin/python -m bench.forecast_lookup [--rate 500] [--seconds 20] [--runs 3] [--series 100000]

Starts a private redis-server and the online app (`python -m lakehouse.serving`, forecast
case only, uvicorn + uvloop + httptools), publishes `--series` store x SKU vectors through
the same atomic publication the nightly asset uses, then sends GET
/forecast/stores/{store}/skus/{sku} for random keys on a fixed schedule (open loop: a request
is sent at its scheduled time whether or not earlier ones have answered, over a pool of
keep-alive connections). Latency runs from the scheduled send time to the full response, so
queueing delay counts. Goal: P99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date

import numpy as np
import polars as pl

from bench.common import PYTHON, ROOT, header, markdown_table, publish

NAME = "forecast_lookup"
API_KEY = "bench-key"
CONNECTIONS = 32


def _vectors(n: int) -> pl.DataFrame:
    stores = max(1, n // 8_000)
    return pl.DataFrame(
        {
            "store_id": [f"north-s{i % stores + 1:03d}" for i in range(n)],
            "sku_id": [f"sku{i // stores + 1:05d}" for i in range(n)],
            "origin": [date(2026, 10, 11)] * n,
            "first_day": [date(2026, 10, 12)] * n,
            "forecast": [[round(random.random() * 100, 3) for _ in range(14)] for _ in range(n)],
        }
    )


async def _connection(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


async def _get(conn, path: str) -> int:
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return status


async def load(port: int, keys: list[tuple[str, str]], rate: float, seconds: float) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await _connection(port))
    latencies, statuses = [], []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    total = int(rate * seconds)

    async def one(i: int):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        store, sku = keys[i % len(keys)]
        conn = await pool.get()
        try:
            statuses.append(await _get(conn, f"/forecast/stores/{store}/skus/{sku}"))
        finally:
            pool.put_nowait(conn)
        latencies.append(loop.time() - scheduled)

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    lat = np.array(latencies) * 1000
    return {
        "requests": total,
        "achieved_rate": total / elapsed,
        "non_200": sum(s != 200 for s in statuses),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


def main(argv: list[str] | None = None) -> int:
    import redis

    from lakehouse.common.local_servers import RedisServer, free_port
    from lakehouse.forecast.publish import publish as publish_redis

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--series", type=int, default=100_000)
    args = p.parse_args(argv)
    runs = []
    with RedisServer() as server, tempfile.TemporaryDirectory() as home:
        client = redis.Redis.from_url(server.url)
        table = _vectors(args.series)
        publish_redis(client, table, "bench")
        client.close()
        port = free_port()
        env = {
            **os.environ,
            "LAKEHOUSE_API_KEY": API_KEY,
            "LAKEHOUSE_SERVING_CASES": "forecast",
            "LAKEHOUSE_REDIS_URL": server.url,
            "LAKEHOUSE_HOME": home,
        }
        app = subprocess.Popen([PYTHON, "-m", "lakehouse.serving", "--port", str(port)], cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            keys = list(zip(table["store_id"].to_list(), table["sku_id"].to_list(), strict=True))
            random.Random(7).shuffle(keys)
            asyncio.run(load(port, keys[:2_000], args.rate, 2))  # warm-up
            for run in range(args.runs):
                runs.append(asyncio.run(load(port, keys, args.rate, args.seconds)))
                print(f"run {run + 1}: {runs[-1]}", flush=True)
        finally:
            app.terminate()
            app.wait(timeout=10)
    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    payload = {
        **header(NAME, args.runs),
        "rate": args.rate,
        "seconds": args.seconds,
        "series": args.series,
        "connections": CONNECTIONS,
        "runs_detail": runs,
        "result": result,
        "goal_p99_ms": 5.0,
    }
    return publish(NAME, payload, render)


def render(payload: dict) -> str:
    r = payload["result"]
    rows = [
        [
            f"{payload['rate']:.0f} req/s open loop, {payload['series']:,} published series",
            f"{r['achieved_rate']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            int(r["non_200"]),
            "< 5 ms",
        ]
    ]
    return markdown_table(["load", "achieved req/s", "P50 ms", "P99 ms", "max ms", "non-200", "goal P99"], rows)


if __name__ == "__main__":
    sys.exit(main())
