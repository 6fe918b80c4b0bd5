"""Users bring their own transactions file: without the optional columns it still lands and
features are computed from what is there; a bad file is refused with one clear error and the
lake keeps its previous content."""

import hashlib
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.fraud import ASSETS, CHECKS
from lakehouse.common.schema import InputDataError
from lakehouse.fraud.config import WorldConfig
from lakehouse.fraud.world import generate_days
from resources import LakehouseResource, default_resources
from tests.conftest import make_home

pytestmark = pytest.mark.integration
WORLD = WorldConfig(tx_per_day=800, days=2)


def _lake_digest(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((home / "lake").rglob("*.parquet"))}


def _load(home: Path, source: Path, selection: str = "key:fraud/transactions"):
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
    config = {"ops": {"fraud__transactions": {"config": {"source_dir": str(source)}}}}
    days = WORLD.day_keys
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    return dg.materialize([*ASSETS, *CHECKS], selection=selection, instance=instance, resources=resources, run_config=config, tags=tags, raise_on_error=False)


def test_a_file_without_optional_columns_loads_and_gets_the_features_it_allows(lakehouse_home, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    generate_days(WORLD).drop("device_id", "ip", "lat", "lon", "fraud_pattern").write_csv(src / "transactions.csv")
    assert _load(lakehouse_home, src).success
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    assert dg.materialize([*ASSETS, *CHECKS], selection="key:fraud/transaction_features", instance=instance, resources=resources).success
    features = pl.read_parquet(lakehouse_home / "lake" / "fraud" / "transaction_features" / f"day={WORLD.day_keys[0]}" / "data.parquet")
    assert "customer_count_1m" in features.columns and "iban_count_1d" in features.columns and "new_country" in features.columns
    assert "new_device" not in features.columns and "ip_count_1h" not in features.columns and "dist_prev_km" not in features.columns


CASES = {
    "missing column": (lambda df: df.drop("amount_eur"), "amount_eur"),
    "extra column": (lambda df: df.with_columns(browser=pl.lit("firefox")), "browser"),
    "wrong type": (lambda df: df.with_columns(pl.col("amount_eur").cast(pl.String)).with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("lots")).otherwise(pl.col("amount_eur")).alias("amount_eur")), "amount_eur"),
    "duplicate key": (lambda df: pl.concat([df, df.head(1)]), "tx_id"),
    "negative amount": (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-12.5).otherwise(pl.col("amount_eur")).alias("amount_eur")), "amount_eur"),
    "unknown channel": (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("cash")).otherwise(pl.col("channel")).alias("channel")), "channel"),
    "future timestamp": (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(date.today() + timedelta(days=3)).cast(pl.Datetime("ms"))).otherwise(pl.col("ts")).alias("ts")), "ts"),
    "latitude without longitude": (lambda df: df.drop("lon"), "lon"),
    "empty file": (lambda df: df.head(0), None),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A home whose lake holds a good load, and the transactions of that load."""
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("fraud-byod") / "home", mp)
        good = tmp_path_factory.mktemp("good")
        tx = generate_days(WORLD)
        tx.write_parquet(good / "transactions.parquet")
        assert _load(home, good).success
        yield home, tx


@pytest.mark.parametrize("case", CASES)
def test_a_bad_file_is_refused_and_the_lake_is_unchanged(loaded, tmp_path, case):
    home, tx = loaded
    before = _lake_digest(home)
    change, column = CASES[case]
    change(tx).write_parquet(tmp_path / "transactions.parquet")
    result = _load(home, tmp_path)
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
    text = str(error.cause or error)
    assert "transactions.parquet" in text and InputDataError.__name__ in (error.cause.cls_name if error.cause else error.cls_name)
    if column:
        assert f"column '{column}'" in text
    assert _lake_digest(home) == before
