"""Forecast assets on a user's source (the `sources` resource): store partitions registered from the
data, one ingest per run, and every refusal leaving the lake byte-identical."""

import hashlib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.home import LakehouseHome
from lakehouse.forecast import world as gen
from tests.integration.forecast_helpers import MASTER, materialize, store_keys, write_source

pytestmark = pytest.mark.integration
WORLD = gen.WorldConfig(stores=2, skus=4, seed=5, years=1.0)


@pytest.fixture
def source(tmp_path, lakehouse_home, monkeypatch) -> Path:
    """The tiny chain written as a user's files, and LAKEHOUSE_SOURCES naming them."""
    return write_source(tmp_path / "user", WORLD, monkeypatch)


def lake_snapshot(home: Path) -> dict[str, str]:
    lake = LakehouseHome(home).lake
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }


def test_master_tables_from_the_source_register_the_store_partitions(source, lakehouse_home):
    instance = dg.DagsterInstance.get()
    result = materialize(lakehouse_home, MASTER, instance=instance)
    assert result.success
    assert store_keys(instance) == sorted(gen.store_keys(WORLD))
    events = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert events["stores"]["dagster/row_count"].value == WORLD.stores
    assert events["promotions"]["in_source"].value is True


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ({"store_id": "../x"}, "path separator"),
        ({"store_id": "north-s001"}, "duplicated key"),
        ({"region": None}, "missing"),
    ],
)
def test_a_bad_stores_file_is_refused_and_changes_nothing(source, lakehouse_home, bad_row, reason):
    instance = dg.DagsterInstance.get()
    assert materialize(lakehouse_home, MASTER, instance=instance).success
    before, partitions = lake_snapshot(lakehouse_home), store_keys(instance)
    stores = pl.read_csv(source / "stores.csv")
    pl.concat([stores, pl.DataFrame([{**stores.row(0, named=True), **bad_row}], schema=stores.schema)]).write_csv(
        source / "stores.csv"
    )
    failed = materialize(lakehouse_home, MASTER, instance=instance)
    assert not failed.success
    assert reason in str(failed.all_events) or reason in _failure(failed)
    assert lake_snapshot(lakehouse_home) == before and store_keys(instance) == partitions


def _failure(result) -> str:
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def test_the_code_location_loads_whatever_the_stores_file_holds(source):
    (source / "stores.csv").write_text("store_id,region\r\n../x,north\r\nbroken")
    from demos.forecast import definitions

    defs = definitions()
    assert (
        defs.resolve_job_def("forecast_nightly") is not None
        and defs.resolve_schedule_def("forecast_nightly_schedule") is not None
    )


def test_a_misnamed_optional_file_is_refused_and_keeps_the_stored_promotions(source, lakehouse_home):
    assert materialize(lakehouse_home, MASTER).success
    before = lake_snapshot(lakehouse_home)
    (source / "promotions.csv").rename(source / "promotion.csv")
    failed = materialize(lakehouse_home, MASTER)
    assert not failed.success and "misnamed 'promotions'" in _failure(failed)
    assert lake_snapshot(lakehouse_home) == before


def test_an_absent_optional_table_keeps_what_is_stored(source, lakehouse_home):
    assert materialize(lakehouse_home, MASTER).success
    stored = lake_snapshot(lakehouse_home)["forecast/covariates/data.parquet"]
    (source / "covariates.csv").unlink()
    result = materialize(lakehouse_home, MASTER)
    assert result.success
    assert lake_snapshot(lakehouse_home)["forecast/covariates/data.parquet"] == stored


def test_one_run_ingests_the_sales_file_once_for_every_selected_store(source, lakehouse_home, monkeypatch):
    from lakehouse.forecast import pipeline

    instance = dg.DagsterInstance.get()
    assert materialize(lakehouse_home, MASTER, instance=instance).success
    calls = []
    original = pipeline.load_sales
    monkeypatch.setattr(pipeline, "load_sales", lambda *a, **k: calls.append(1) or original(*a, **k))
    keys = store_keys(instance)
    result = materialize(
        lakehouse_home,
        "key:forecast/sales",
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert result.success and len(calls) == 1
    lake = LakehouseHome(lakehouse_home).lake / "forecast" / "sales"
    assert sorted(p.name for p in lake.iterdir()) == [f"store={k}" for k in keys]


def test_sales_of_an_unknown_store_or_an_unselected_one_are_refused_with_counts(source, lakehouse_home):
    instance = dg.DagsterInstance.get()
    assert materialize(lakehouse_home, MASTER, instance=instance).success
    keys = store_keys(instance)
    assert (
        materialize(lakehouse_home, "key:forecast/sales", instance=instance, partition_key=keys[0]).success is False
    )  # the file has rows of the other store
    sales = pl.read_csv(source / "sales.csv")
    only_first = sales.filter(pl.col("store_id") == keys[0])
    only_first.write_csv(source / "sales.csv")
    assert materialize(lakehouse_home, "key:forecast/sales", instance=instance, partition_key=keys[0]).success
    before = lake_snapshot(lakehouse_home)
    pl.concat([only_first, only_first.head(3).with_columns(store_id=pl.lit("ghost"))]).write_csv(source / "sales.csv")
    failed = materialize(lakehouse_home, "key:forecast/sales", instance=instance, partition_key=keys[0])
    assert not failed.success and "3 row(s) reference value(s) missing from stores.store_id: 'ghost'" in _failure(
        failed
    )
    assert lake_snapshot(lakehouse_home) == before
