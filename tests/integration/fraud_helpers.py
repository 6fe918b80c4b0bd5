"""A tiny fraud world, a cascade trained on it and registered in a home, and the service app."""

from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import polars as pl

from lakehouse.common.home import LakehouseHome
from lakehouse.common.registry import Registry
from lakehouse.fraud.config import SETTINGS, WorldConfig
from lakehouse.fraud.model import train_from_transactions
from lakehouse.fraud.world import generate_days
from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

TINY = WorldConfig(tx_per_day=2500, days=8, seed=5)
KEY = "test-key"


def tiny_transactions() -> pl.DataFrame:
    return generate_days(TINY)


def train_and_register(home: Path, tx: pl.DataFrame, promote: bool = True) -> tuple[Registry, str]:
    """The cascade trained on `tx`, logged and (optionally) promoted; lists written to the lake."""
    h = LakehouseHome(home)
    registry = Registry(h.mlflow_uri, h.mlflow_artifacts)
    version, lists = train_from_transactions(registry, tx, TINY.day_keys, SETTINGS, promote)
    (h.lake / "fraud" / "rule_lists").mkdir(parents=True, exist_ok=True)
    lists.as_frame().write_parquet(h.lake / "fraud" / "rule_lists" / "data.parquet")
    return registry, version


def request_body(row: dict) -> dict:
    body = {k: v for k, v in row.items() if v is not None and k not in ("is_fraud", "fraud_pattern")}
    body["ts"] = row["ts"].isoformat()
    return body


@asynccontextmanager
async def running_service(home: Path, redis_url: str, consumers: str = "inline"):
    """The shared app with only the fraud case, started; yields (http client, FraudService)."""
    from lakehouse.fraud.api import FraudService

    settings = ServingSettings(api_key=KEY, home=LakehouseHome(home), redis_url=redis_url, cases=("fraud",))
    fraud = FraudService(settings, consumers=consumers)
    app = create_app(settings, services=[fraud.case_service()])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fraud", headers={API_KEY_HEADER: KEY}) as client:
            yield client, fraud
