"""A user's forecasting files through the probes of bad input: ids the lake cannot hold are refused at the stores
load and never registered as partitions, impossible values and dates are refused with file, column and rows, the
lake stays byte-identical; numeric store ids register in natural order, so a range `1...12` means twelve stores."""

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.sources import SOURCES_ENV
from lakehouse.forecast import world as gen
from tests.conftest import make_home
from tests.integration.forecast_helpers import MASTER, materialize, write_source
from tests.integration.probes import ID_PROBES, assert_names_file_column_rows, lake_digest, set_value, spoil_id

pytestmark = pytest.mark.integration
WORLD = gen.WorldConfig(stores=3, skus=3, seed=5, years=0.6)


def _registered(instance: dg.DagsterInstance) -> list[str]:
    from assets.forecast.partitions import STORES

    return instance.get_dynamic_partitions(STORES)  # in registration order: the order of a partition range


def _failure(result) -> str:
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    return (error.cause or error).message


def _rewrite(path, spoil) -> None:
    spoil(pl.read_csv(path, try_parse_dates=True)).write_csv(path)


def _every_store(instance: dg.DagsterInstance) -> dict[str, str]:
    keys = _registered(instance)
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def _template(root: Path, with_sales: bool) -> Path:
    """`root` holding what a test starts from, built once per module: a home (lake and Dagster instance) with the
    master tables loaded (and, `with_sales`, every store's sales), the user's files in `user` and their
    `sources.yaml`, laid out as a test's tmp_path is."""
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(root / "home", mp)
        write_source(root / "user", WORLD, mp)
        instance = dg.DagsterInstance.get()
        assert materialize(home, MASTER, instance=instance).success
        if with_sales:
            assert materialize(home, "key:forecast/sales", instance=instance, tags=_every_store(instance)).success
        instance.dispose()
    return root


def _copy_of(template: Path, tmp_path: Path, lakehouse_home: Path, monkeypatch) -> tuple[Path, dg.DagsterInstance]:
    """A private copy of `template` in the test's own home and tmp_path (the test spoils its files and reloads)."""
    shutil.copytree(template / "home", lakehouse_home, dirs_exist_ok=True)
    folder = shutil.copytree(template / "user", tmp_path / "user")
    shutil.copy(template / "sources.yaml", tmp_path / "sources.yaml")
    monkeypatch.setenv(SOURCES_ENV, str(tmp_path / "sources.yaml"))
    return folder, dg.DagsterInstance.get()


@pytest.fixture(scope="module")
def master_template(tmp_path_factory) -> Path:
    return _template(tmp_path_factory.mktemp("forecast-master"), with_sales=False)


@pytest.fixture(scope="module")
def sales_template(tmp_path_factory) -> Path:
    return _template(tmp_path_factory.mktemp("forecast-sales"), with_sales=True)


@pytest.fixture
def master_loaded(master_template, tmp_path, lakehouse_home, monkeypatch):
    """The chain's files, with the master tables loaded (the store partitions registered): a copy of the module's
    template, so each test spoils and reloads its own files, home and instance."""
    return _copy_of(master_template, tmp_path, lakehouse_home, monkeypatch)


@pytest.fixture
def loaded(sales_template, tmp_path, lakehouse_home, monkeypatch):
    """The chain's files, loaded (master tables and every store's sales): a private copy, as `master_loaded`."""
    folder, instance = _copy_of(sales_template, tmp_path, lakehouse_home, monkeypatch)
    return folder, instance, _every_store(instance)


@pytest.mark.parametrize("probe", list(ID_PROBES))
def test_a_store_id_the_lake_cannot_hold_is_refused_at_the_stores_load_and_never_registered(
    master_loaded, lakehouse_home, probe
):
    folder, instance = master_loaded
    before, partitions = lake_digest(lakehouse_home), _registered(instance)
    _rewrite(folder / "stores.csv", lambda df: spoil_id(df, "store_id", probe))
    failed = materialize(lakehouse_home, MASTER, instance=instance)
    assert not failed.success
    assert_names_file_column_rows(_failure(failed), "stores.csv", "store_id")
    assert lake_digest(lakehouse_home) == before and _registered(instance) == partitions


PROBES = {
    "units of 1e14": ("sales", "units", lambda df: set_value(df, "units", 1e14, 3)),
    "a sale in 1800": ("sales", "date", lambda df: set_value(df, "date", date(1800, 1, 1), 3)),
    "a unit price of 1e14": ("products", "unit_price", lambda df: set_value(df, "unit_price", 1e14)),
    "a promotion in 1800": ("promotions", "start_date", lambda df: set_value(df, "start_date", date(1800, 1, 1))),
    "an event in 1800": ("events", "date", lambda df: set_value(df, "date", date(1800, 1, 1))),
    "a product id with a zero-width space": (
        "products",
        "sku_id",
        lambda df: spoil_id(df, "sku_id", "zero-width space"),
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_impossible_values_are_refused_with_file_column_rows_and_the_lake_unchanged(request, lakehouse_home, probe):
    table, column, spoil = PROBES[probe]
    if table == "sales":  # a sales probe needs the stores' sales loaded; the others the master tables only
        folder, instance, tags = request.getfixturevalue("loaded")
    else:
        (folder, instance), tags = request.getfixturevalue("master_loaded"), None
    before, partitions = lake_digest(lakehouse_home), _registered(instance)
    _rewrite(folder / f"{table}.csv", spoil)
    failed = (
        materialize(lakehouse_home, "key:forecast/sales", instance=instance, tags=tags)
        if table == "sales"
        else materialize(lakehouse_home, MASTER, instance=instance)
    )
    assert not failed.success
    assert_names_file_column_rows(_failure(failed), f"{table}.csv", column)
    assert lake_digest(lakehouse_home) == before and _registered(instance) == partitions


def test_numeric_store_ids_register_in_natural_order_and_a_range_of_them_loads_every_store(
    tmp_path, lakehouse_home, monkeypatch
):
    world = gen.WorldConfig(stores=12, skus=2, seed=5, years=0.4)
    folder = write_source(tmp_path / "user", world, monkeypatch)
    numbers = {old: str(i) for i, old in enumerate(gen.store_keys(world), start=1)}
    for path in folder.glob("*.csv"):
        frame = pl.read_csv(path, try_parse_dates=True)
        if "store_id" in frame.columns:
            frame.with_columns(pl.col("store_id").cast(pl.String).replace(numbers)).write_csv(path)
    instance = dg.DagsterInstance.get()
    assert materialize(lakehouse_home, MASTER, instance=instance).success
    assert _registered(instance) == [str(i) for i in range(1, 13)]
    tags = {"dagster/asset_partition_range_start": "1", "dagster/asset_partition_range_end": "12"}
    result = materialize(lakehouse_home, "key:forecast/sales", instance=instance, tags=tags)
    assert result.success, _failure(result)
    stored = sorted(p.name for p in (lakehouse_home / "lake" / "forecast" / "sales").iterdir())
    assert stored == sorted(f"store={i}" for i in range(1, 13))
