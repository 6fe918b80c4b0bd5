"""Run the stream consumers in their own process: `python -m lakehouse.fraud.consumer`.

The `features` group keeps the Redis feature store current; the `decision-log` group writes
decisions and labels to the lake (LAKEHOUSE_LAKE_URL, default $LAKEHOUSE_HOME/lake). Use it
with LAKEHOUSE_FRAUD_CONSUMERS=off on the service. Redis: LAKEHOUSE_REDIS_URL (default
redis://127.0.0.1:6379/0); the events come from its stream, or from Kafka when
LAKEHOUSE_FRAUD_KAFKA_BOOTSTRAP is set. Feature definitions follow the settings.
"""

import argparse
import asyncio
import os
import signal
from pathlib import Path

# One Polars thread: a decision-log part is at most a few thousand rows, and one thread
# writes a 200-event part with ~35 % less CPU than the default pool (set before the import).
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import uvloop

from lakehouse.common.lake import Lake
from lakehouse.common.settings import configured_sources_path
from lakehouse.fraud.api import async_client
from lakehouse.fraud.features_registry import registry_for
from lakehouse.fraud.online import DecisionLogConsumer, FeatureConsumer, event_stream
from lakehouse.fraud.settings import FraudSettings


async def run(redis_url: str, lake: Lake, name: str) -> None:
    """Until SIGINT or SIGTERM; each consumer finishes its current batch first."""
    settings = FraudSettings.load(configured_sources_path())
    client = async_client(redis_url, 2.0)
    stream = event_stream(client, settings)
    consumers = [
        FeatureConsumer(stream, client, registry_for(settings), settings, name),
        DecisionLogConsumer(stream, lake, settings, name),
    ]

    def stop() -> None:
        for consumer in consumers:
            consumer.stopping = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(c.run() for c in consumers))
    finally:
        await stream.aclose()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("LAKEHOUSE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--name",
        default="c1",
        help="consumer name inside each group (a restart with the same name resumes its pending events)",
    )
    args = parser.parse_args()
    home = Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve()
    uvloop.run(run(args.redis_url, Lake(os.environ.get("LAKEHOUSE_LAKE_URL") or str(home / "lake")), args.name))


if __name__ == "__main__":
    main()
