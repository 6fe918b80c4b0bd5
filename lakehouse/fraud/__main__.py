"""Start the fraud decision service against the demo's models and a Redis, in one command:

    LAKEHOUSE_API_KEY=secret .venv/bin/python -m lakehouse.fraud [--port 8000]

Uses LAKEHOUSE_REDIS_URL when set, otherwise starts a private redis-server for the service's
lifetime; publishes the layer-1 lists and warms the feature store from the lake under
$LAKEHOUSE_HOME (default .lakehouse, where `make demo` wrote them), then serves the shared
app with only the fraud case (uvloop, httptools), stream consumers inline.
"""

import argparse
import os
from pathlib import Path

import polars as pl
import redis

from lakehouse.common.home import LakehouseHome
from lakehouse.common.lake import Lake
from lakehouse.common.local_servers import RedisServer
from lakehouse.fraud.config import CASE, SETTINGS
from lakehouse.fraud.online import publish_lists, warm_store
from lakehouse.fraud.rules import RuleLists
from lakehouse.fraud.tables import read_days
from lakehouse.serving.__main__ import serve


def prepare_store(redis_url: str, home: LakehouseHome) -> int:
    lake = Lake(str(home.lake))
    client = redis.Redis.from_url(redis_url)
    try:
        publish_lists(client, RuleLists.from_frame(pl.read_parquet(lake.file_url(CASE, "rule_lists"))))
        return warm_store(client, read_days(lake, "transactions"), SETTINGS)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not os.environ.get("LAKEHOUSE_API_KEY"):
        raise SystemExit("LAKEHOUSE_API_KEY is not set: the online endpoints refuse to start without an API key")
    home = LakehouseHome(Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve())
    server = None if os.environ.get("LAKEHOUSE_REDIS_URL") else RedisServer().start()
    try:
        url = server.url if server else os.environ["LAKEHOUSE_REDIS_URL"]
        print(f"redis {url}: warming the feature store from {home.lake} ...", flush=True)
        applied = prepare_store(url, home)
        print(f"{applied:,} transactions applied; serving on http://{args.host}:{args.port}/docs", flush=True)
        os.environ.update(LAKEHOUSE_REDIS_URL=url, LAKEHOUSE_SERVING_CASES=CASE, LAKEHOUSE_HOME=str(home.root))
        serve(args.host, args.port)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
