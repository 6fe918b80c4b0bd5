"""Users bring their own transactions through the sources file: a schedule tick and a multi-day
backfill land them with no run config; without the optional columns the features they allow
are built; every bad file or selection is refused with one clear error and the lake keeps its
previous content, byte for byte; a listed source never falls back to the generator."""

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import definitions
from assets.common import PartitionOutOfRange
from lakehouse.common.schema import InputDataError
from lakehouse.fraud.world import WorldConfig, generate_days
from tests.conftest import make_home
from tests.integration.probes import ID_PROBES, set_value, spoil_id

pytestmark = pytest.mark.integration
WORLD = WorldConfig(tx_per_day=800, days=3)
DAYS = WORLD.day_keys


def _digest(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((home / "lake").rglob("*"))
        if p.is_file()
    }


def _write_sources(folder: Path, mapping: str = "") -> Path:
    path = folder.parent / "sources.yaml"
    path.write_text(f"fraud:\n  folder: {folder.name}\n{mapping}")
    return path


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """A fresh home and a user folder; returns (home, folder, set_sources)."""
    home = make_home(tmp_path / "home", monkeypatch)
    folder = tmp_path / "data"
    folder.mkdir()

    def set_sources(mapping: str = "") -> None:
        monkeypatch.setenv("LAKEHOUSE_SOURCES", str(_write_sources(folder, mapping)))

    return home, folder, set_sources


def _run(
    job: str, *, partition: str | None = None, days: list[str] | None = None, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """A job of the code location as the daemon runs it: default resources, no run config unless given."""
    defs = definitions.defs()
    tags = (
        {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
        if days
        else None
    )
    return defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=partition,
        tags=tags,
        run_config=run_config,
        raise_on_error=False,
    )


def _error(result: dg.ExecuteInProcessResult) -> str:
    error = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
    error = error.cause or error
    return f"{error.cls_name}: {error.message}"


def test_a_schedule_tick_and_a_backfill_land_user_files_without_run_config(user_home):
    home, folder, set_sources = user_home
    generate_days(WORLD).write_parquet(folder / "transactions.parquet")
    set_sources("  tables:\n    transactions: {rows_outside_selection: skip}\n")
    defs = definitions.defs()
    schedule = defs.resolve_schedule_def("fraud_daily_ingest_schedule")
    tick = datetime.combine(date.fromisoformat(DAYS[1]) + timedelta(days=1), time(0, 30), tzinfo=UTC)
    with dg.build_schedule_context(
        instance=dg.DagsterInstance.get(), scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    ) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == DAYS[1] and not request.run_config
    ticked = _run("fraud_daily_ingest", partition=request.partition_key)
    assert ticked.success, _error(ticked)
    meta = ticked.asset_materializations_for_node("fraud__transactions")[0].metadata
    assert meta["rows_of_other_days_skipped"].value > 0 and "transactions.parquet" in meta["source"].value
    assert sorted(p.name for p in (home / "lake" / "fraud" / "transactions").iterdir()) == [f"day={DAYS[1]}"]
    backfill = _run("fraud_daily_ingest", days=DAYS)  # one run for the whole range (single-run backfill policy)
    assert backfill.success, _error(backfill)
    stored = pl.read_parquet(home / "lake" / "fraud" / "transactions" / "*" / "data.parquet", hive_partitioning=False)
    assert stored.height == generate_days(WORLD).height
    assert (home / "lake" / "fraud" / "transaction_features" / f"day={DAYS[-1]}" / "data.parquet").exists()


def test_a_file_without_optional_columns_loads_and_gets_the_features_it_allows(user_home):
    home, folder, set_sources = user_home
    generate_days(WORLD).drop(
        "device_id", "ip", "lat", "lon", "customer_lat", "customer_lon", "category", "fraud_pattern"
    ).write_csv(folder / "transactions.csv")
    set_sources()
    result = _run("fraud_daily_ingest", days=DAYS)
    assert result.success, _error(result)
    features = pl.read_parquet(home / "lake" / "fraud" / "transaction_features" / f"day={DAYS[0]}" / "data.parquet")
    assert {"customer_count_1m", "iban_count_1d", "new_country", "merchant_hist_fraud_rate_30d"} <= set(
        features.columns
    )
    assert not {"new_device", "ip_count_1h", "dist_prev_km", "category_hist_fraud_rate_30d", "home_dist_km"} & set(
        features.columns
    )


def _set(column: str, row: int, value) -> callable:
    return lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


BAD = {
    "missing column": (lambda df: df.drop("amount"), "amount"),
    "extra column": (lambda df: df.with_columns(browser=pl.lit("firefox")), "browser"),
    "wrong type": (
        lambda df: df.with_columns(pl.col("amount").cast(pl.String)).pipe(_set("amount", 3, "lots")),
        "amount",
    ),
    "duplicate key": (lambda df: pl.concat([df, df.head(1)]), "tx_id"),
    "negative amount": (_set("amount", 5, -12.5), "amount"),
    "infinite amount": (_set("amount", 5, float("inf")), "amount"),
    "implausible amount": (_set("amount", 5, 1e308), "amount"),
    "unknown channel": (_set("channel", 0, "cash"), "channel"),
    "future timestamp": (
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 1)
            .then(pl.lit(datetime.now() + timedelta(days=3)))
            .otherwise(pl.col("ts"))
            .cast(pl.Datetime("ms"))
            .alias("ts")
        ),
        "ts",
    ),
    "latitude without longitude column": (lambda df: df.drop("lon"), "lon"),
    "latitude without longitude in a row": (_set("lon", 2, None), "lat"),
    "control character in an id": (_set("customer_id", 4, "C1\x1fC2"), "customer_id"),
    "path separator in an id": (_set("merchant_id", 4, "../M1"), "merchant_id"),
    "ids that differ only by whitespace": (_set("card_id", 4, "K 0000001"), "card_id"),
    "empty file": (lambda df: df.head(0), None),
    **{f"id: {p}": (lambda df, p=p: spoil_id(df, "customer_id", p), "customer_id") for p in ID_PROBES},
    "merchant id with a right-to-left override": (
        lambda df: spoil_id(df, "merchant_id", "right-to-left override"),
        "merchant_id",
    ),
    "amount of 1e14": (lambda df: set_value(df, "amount", 1e14, 5), "amount"),
    "a payment in 1800": (lambda df: set_value(df, "ts", datetime(1800, 1, 1), 5), "ts"),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A home whose lake holds a good load of the first two days, its data folder and sources file."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("fraud-byod")
        home = make_home(root / "home", mp)
        folder = root / "data"
        folder.mkdir()
        tx = generate_days(WORLD)
        tx.filter(pl.col("ts").dt.date().cast(pl.String).is_in(DAYS[:2])).write_parquet(folder / "transactions.parquet")
        mp.setenv("LAKEHOUSE_SOURCES", str(_write_sources(folder)))
        assert _run("fraud_daily_ingest", days=DAYS[:2]).success
        yield home, folder, tx


@pytest.fixture
def bad_load(loaded, monkeypatch):
    """Run a load of a changed file against the loaded home; returns (result, lake before, lake after)."""
    home, folder, tx = loaded
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(folder.parent / "sources.yaml"))
    good = (folder / "transactions.parquet").read_bytes()

    def load(frame: pl.DataFrame | None, days: list[str], filename: str = "transactions.parquet", **kwargs):
        before = _digest(home)
        (folder / "transactions.parquet").unlink()
        if frame is not None:
            frame.write_parquet(folder / filename)
        try:
            return _run("fraud_daily_ingest", days=days, **kwargs), before, _digest(home)
        finally:
            for path in folder.iterdir():
                path.unlink()
            (folder / "transactions.parquet").write_bytes(good)

    return load, tx.filter(pl.col("ts").dt.date().cast(pl.String).is_in(DAYS[:2])), home


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_refused_and_the_lake_is_unchanged(bad_load, case):
    load, good, _ = bad_load
    change, column = BAD[case]
    result, before, after = load(change(good), DAYS[:2])
    assert not result.success
    text = _error(result)
    assert InputDataError.__name__ in text and "transactions.parquet" in text, text
    if column:
        assert f"column '{column}" in text, text
    assert after == before


def test_rows_outside_the_selection_or_the_calendar_and_empty_days_are_refused(bad_load):
    load, good, home = bad_load
    result, before, after = load(good, DAYS[:1])  # the file also holds the second day
    assert not result.success and "belong to partitions this run did not select" in _error(result) and after == before
    early = good.with_columns(pl.col("ts") - pl.duration(days=60))  # before the calendar's first day
    result, before, after = load(early, DAYS[:2])
    assert (
        not result.success
        and "outside the data calendar" in _error(result)
        and "calendar.start" in _error(result)
        and after == before
    )
    first_day = good.filter(pl.col("ts").dt.date().cast(pl.String) == DAYS[0])
    result, before, after = load(first_day, DAYS[:2])
    assert not result.success and f"no row for selected partition(s) {DAYS[1]}" in _error(result) and after == before
    emptied, _, _ = load(
        first_day, DAYS[:2], run_config={"ops": {"fraud__transactions": {"config": {"replace_with_empty": True}}}}
    )
    assert emptied.success, _error(emptied)
    assert pl.read_parquet(home / "lake" / "fraud" / "transactions" / f"day={DAYS[1]}" / "data.parquet").height == 0


def test_a_misnamed_file_or_a_missing_one_never_falls_back_to_the_generator(bad_load):
    load, good, _ = bad_load
    result, before, after = load(good, DAYS[:2], filename="transaction.parquet")
    assert not result.success and "misnamed 'transactions'" in _error(result) and after == before
    result, before, after = load(None, DAYS[:2])
    assert not result.success and "no input file" in _error(result) and after == before


def test_a_day_outside_the_calendar_names_the_range_and_the_setting():
    from assets.common import require_partitions
    from assets.fraud.partitions import daily
    from lakehouse.fraud.settings import FraudSettings

    with pytest.raises(PartitionOutOfRange, match="LAKEHOUSE_FRAUD_CALENDAR__START"):
        require_partitions(daily, ["2019-01-01"], FraudSettings)


def test_zero_amounts_load_and_negative_ones_are_refused(tmp_path):
    """Authorisation checks of zero are real payments; a negative amount is not (the loader, before any write)."""
    from lakehouse.common.sources import load_sources
    from lakehouse.fraud.pipeline import load_source
    from lakehouse.fraud.settings import FraudSettings

    folder = tmp_path / "data"
    folder.mkdir()
    tx = generate_days(WORLD).filter(pl.col("ts").dt.date().cast(pl.String) == DAYS[0])
    settings = FraudSettings(calendar={"start": WORLD.start_date.isoformat()})
    source = lambda: load_sources(_write_sources(folder)).case("fraud")  # noqa: E731
    set_value(tx, "amount", 0.0, 3).write_parquet(folder / "transactions.parquet")
    load, _ = load_source(source(), settings, days=[DAYS[0]], allowed=DAYS, today=date.today())
    assert load.frames[DAYS[0]]["amount"].min() == 0.0
    set_value(tx, "amount", -0.01, 3).write_parquet(folder / "transactions.parquet")
    with pytest.raises(InputDataError, match="column 'amount'.*below the minimum 0"):
        load_source(source(), settings, days=[DAYS[0]], allowed=DAYS, today=date.today())
