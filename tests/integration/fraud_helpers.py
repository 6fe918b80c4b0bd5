"""A tiny fraud world, a cascade trained on it and registered in a home, and the service app."""

from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import httpx
import polars as pl

from lakehouse.common.home import LakehouseHome
from lakehouse.common.lake import Lake
from lakehouse.common.registry import Registry
from lakehouse.fraud.pipeline import train_from_transactions
from lakehouse.fraud.settings import CASE, FraudSettings
from lakehouse.fraud.world import WorldConfig, generate_days
from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

TINY = WorldConfig(tx_per_day=2500, days=8, seed=5)
KEY = "test-key"
LIVE_DAY = datetime.fromisoformat(TINY.day_keys[-1])


def tiny_transactions() -> pl.DataFrame:
    return generate_days(TINY)


def train_and_register(home: Path, tx: pl.DataFrame, promote: bool = True) -> tuple[Registry, str]:
    """The cascade trained on `tx`, logged and (optionally) promoted; its rules written to the lake."""
    h = LakehouseHome(home)
    registry = Registry(h.mlflow_uri, h.mlflow_artifacts)
    result, lists = train_from_transactions(registry, tx, FraudSettings(), promote)
    Lake(str(h.lake)).write(lists.as_frame(), CASE, "rule_lists")
    return registry, result.version


def request_body(row: dict) -> dict:
    body = {k: v for k, v in row.items() if v is not None and k not in ("is_fraud", "fraud_pattern")}
    body["ts"] = row["ts"].isoformat()
    return body


def replay_settings(consumers: str = "inline", **serving) -> FraudSettings:
    """The service replaying the tiny world's last day: its clock starts there, and moves with
    the payments; each new service starts again at midnight, so a day ahead is tolerated."""
    return FraudSettings(
        consumers=consumers, serving={"replay_from": LIVE_DAY, "future_tolerance_s": 86_400, **serving}
    )


@asynccontextmanager
async def running_service(home: Path, redis_url: str, consumers: str = "inline", fraud: FraudSettings | None = None):
    """The shared app with only the fraud case, started; yields (http client, FraudService)."""
    from lakehouse.fraud.api import FraudService

    settings = ServingSettings(api_key=KEY, home=LakehouseHome(home), redis_url=redis_url, cases=("fraud",))
    fraud_service = FraudService(settings, fraud or replay_settings(consumers))
    app = create_app(settings, services=[fraud_service.case_service()])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://fraud", headers={API_KEY_HEADER: KEY}
        ) as client:
            yield client, fraud_service
