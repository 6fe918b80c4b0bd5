"""Users load their own churn tables from files; a bad file is refused with one clear
error naming file, column and rows, and the lake keeps its previous content."""

import hashlib
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.schema import InputDataError
from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import load_raw, tiny_world, with_source, write_source

pytestmark = pytest.mark.integration


def _lake_digest(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((home / "lake").rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def world():
    return tiny_world()


CASES = {
    "missing column": ("customers", lambda df: df.drop("tier"), "tier"),
    "extra column": ("usage_daily", lambda df: df.with_columns(browser=pl.lit("firefox")), "browser"),
    "wrong type": (
        "usage_daily",
        lambda df: df.with_columns(pl.col("logins").cast(pl.String)).with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("many")).otherwise(pl.col("logins")).alias("logins")
        ),
        "logins",
    ),
    "duplicate key": ("support_tickets", lambda df: pl.concat([df, df.head(1)]), "ticket_id"),
    "null key": (
        "invoices",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("invoice_id")).alias("invoice_id")
        ),
        "invoice_id",
    ),
    "negative duration": (
        "usage_daily",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 5)
            .then(-12.5)
            .otherwise(pl.col("session_minutes"))
            .alias("session_minutes")
        ),
        "session_minutes",
    ),
    "date in the future": (
        "renewals",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 1)
            .then(date.today() + timedelta(days=30))
            .otherwise(pl.col("renewal_date"))
            .alias("renewal_date")
        ),
        "renewal_date",
    ),
    "empty file": ("support_tickets", lambda df: df.head(0), None),
    "unknown outcome": (
        "renewals",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("paused")).otherwise(pl.col("outcome")).alias("outcome")
        ),
        "outcome",
    ),
    "closed before opened": (
        "support_tickets",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 2)
            .then(pl.col("opened_at") - pl.duration(days=3))
            .otherwise(pl.col("closed_at"))
            .alias("closed_at")
        ),
        "closed_at",
    ),
    "infinite amount": (
        "customers",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 1).then(float("inf")).otherwise(pl.col("mrr")).alias("mrr")
        ),
        "mrr",
    ),
    "id with a control character": (
        "customers",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("C1\x07"))
            .otherwise(pl.col("customer_id"))
            .alias("customer_id")
        ),
        "customer_id",
    ),
    "ids differing by whitespace": (
        "customers",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("customer_id").shift(-1).str.replace(r"^C", "C "))
            .otherwise(pl.col("customer_id"))
            .alias("customer_id")
        ),
        "customer_id",
    ),
    "csat out of range": (
        "support_tickets",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 4).then(9).otherwise(pl.col("csat")).alias("csat")
        ),
        "csat",
    ),
    "unknown customer": (
        "renewals",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("C9999999"))
            .otherwise(pl.col("customer_id"))
            .alias("customer_id")
        ),
        "customer_id",
    ),
}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_valid_files_load_like_the_generator(lakehouse_home, tmp_path, world, fmt):
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    result = load_raw(instance, resources, write_source(world, tmp_path / "src", fmt), staging=False)
    assert result.success
    lake = resources["lakehouse"].lake
    for name, df in world.items():
        assert lake.read("churn", name).equals(df), name


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_refused_and_the_lake_is_unchanged(lakehouse_home, tmp_path, world, case):
    table, corrupt, column = CASES[case]
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    assert load_raw(instance, resources, write_source(world, tmp_path / "good"), staging=False).success
    before = _lake_digest(lakehouse_home)

    bad = write_source(
        {**world, table: corrupt(world[table])}, tmp_path / "bad", "csv" if case == "wrong type" else "parquet"
    )
    if case == "empty file":
        (bad / f"{table}.parquet").unlink()
        (bad / f"{table}.csv").write_text("")
    result = load_raw(instance, resources, bad, raise_on_error=False, staging=False)

    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    message = error.cause.message if error.cause else error.message
    assert "InputDataError" in (error.cause.cls_name if error.cause else error.cls_name)
    assert f"{table}." in message  # the file
    if column:
        assert column in message
    if case not in ("missing column", "extra column", "empty file"):
        assert "row" in message  # example offending rows
    assert _lake_digest(lakehouse_home) == before


def test_error_names_file_column_and_rows(tmp_path, world):
    from lakehouse.churn.schemas import load_raw_tables
    from lakehouse.common.sources import load_sources

    src = write_source({**world, "usage_daily": CASES["negative duration"][1](world["usage_daily"])}, tmp_path / "src")
    source = load_sources(with_source({}, src)["sources"].path).case("churn")
    with pytest.raises(InputDataError) as err:
        load_raw_tables(source, date.today())
    text = str(err.value)
    assert str(src / "usage_daily.parquet") in text and "session_minutes" in text and "row 5" in text


def test_an_absent_optional_table_keeps_what_the_lake_has_and_a_misnamed_one_is_refused(
    lakehouse_home, tmp_path, world
):
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    assert load_raw(instance, resources, write_source(world, tmp_path / "full"), staging=False).success
    lake = resources["lakehouse"].lake
    stored = lake.read("churn", "invoices")

    without = write_source({k: v for k, v in world.items() if k != "invoices"}, tmp_path / "without")
    assert load_raw(instance, resources, without, staging=False).success
    assert lake.read("churn", "invoices").equals(stored)

    before = _lake_digest(lakehouse_home)
    misnamed = write_source({k: v for k, v in world.items() if k != "invoices"}, tmp_path / "misnamed")
    world["invoices"].write_parquet(misnamed / "invoice.parquet")
    result = load_raw(instance, resources, misnamed, staging=False, raise_on_error=False)
    assert not result.success
    assert "misnamed 'invoices'" in str(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)
    assert _lake_digest(lakehouse_home) == before
