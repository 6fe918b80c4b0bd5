"""Start the fraud decision service against the demo's models and a Redis, in one command:

    LAKEHOUSE_API_KEY=secret .venv/bin/python -m lakehouse.fraud [--port 8000]

Uses LAKEHOUSE_REDIS_URL when set, otherwise starts a private redis-server for the service's
lifetime; publishes the champion's layer-1 rules and warms the feature store from the lake under
$LAKEHOUSE_HOME (default .lakehouse, where `make demo` wrote them), then serves the shared
app with only the fraud case (uvloop, httptools), stream consumers inline.
"""

import argparse
import os
from pathlib import Path

import redis

from lakehouse.common.home import LakehouseHome
from lakehouse.common.lake import Lake
from lakehouse.common.local_servers import RedisServer
from lakehouse.common.registry import Registry
from lakehouse.common.settings import configured_sources_path
from lakehouse.fraud.pipeline import publish_champion_rules, warm_online_store
from lakehouse.fraud.settings import CASE, FraudSettings
from lakehouse.serving.__main__ import serve


def prepare_store(redis_url: str, lake: Lake, home: Path) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        h = LakehouseHome(home)
        settings = FraudSettings.load(configured_sources_path())
        publish_champion_rules(Registry(h.mlflow_uri, h.mlflow_artifacts), settings, client)
        return warm_online_store(lake, client, settings)["applied"]
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not os.environ.get("LAKEHOUSE_API_KEY"):
        raise SystemExit("LAKEHOUSE_API_KEY is not set: the online endpoints refuse to start without an API key")
    home = Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve()
    lake = Lake(os.environ.get("LAKEHOUSE_LAKE_URL") or str(home / "lake"))
    server = None if os.environ.get("LAKEHOUSE_REDIS_URL") else RedisServer().start()
    try:
        url = server.url if server else os.environ["LAKEHOUSE_REDIS_URL"]
        print(f"redis {url}: warming the feature store from {lake.root} ...", flush=True)
        applied = prepare_store(url, lake, home)
        print(f"{applied:,} transactions applied; serving on http://{args.host}:{args.port}/docs", flush=True)
        os.environ.update(LAKEHOUSE_REDIS_URL=url, LAKEHOUSE_SERVING_CASES=CASE, LAKEHOUSE_HOME=str(home))
        serve(args.host, args.port)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
