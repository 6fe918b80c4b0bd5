"""Users load their own churn tables from files; a bad file is refused with one clear
error naming file, column and rows, and the lake keeps its previous content."""

import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.schema import InputDataError
from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import load_raw, tiny_world, with_source, write_source
from tests.integration.probes import ID_PROBES, assert_names_file_column_rows, lake_digest, set_value, spoil_id

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


@pytest.fixture(scope="module")
def good_home(tmp_path_factory, world) -> Path:
    """A home holding a good load of the world, built once per module; each test works on a copy of it."""
    from tests.conftest import make_home

    with pytest.MonkeyPatch.context() as mp:  # the environment a test's `lakehouse_home` gives, for the load only
        home = make_home(tmp_path_factory.mktemp("good") / "home", mp)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
        assert load_raw(instance, resources, write_source(world, home.parent / "good"), staging=False).success
        instance.dispose()
    return home


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_refused_and_the_lake_is_unchanged(lakehouse_home, tmp_path, world, good_home, case):
    import shutil

    table, corrupt, column = CASES[case]
    shutil.copytree(good_home, lakehouse_home, dirs_exist_ok=True)  # the good load, in this test's own home
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    before = _lake_digest(lakehouse_home)
    assert before  # the good load is there

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


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, world):
    """A home holding a good load, and a function that loads a spoilt copy of the files into it."""
    import shutil

    from tests.conftest import ROOT

    home = tmp_path_factory.mktemp("home")
    (home / "dagster").mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
    assert load_raw(instance, resources, write_source(world, tmp_path_factory.mktemp("good")), staging=False).success

    def load_spoilt(tables: dict[str, pl.DataFrame]) -> tuple[dg.ExecuteInProcessResult, bool]:
        before = lake_digest(home)
        result = load_raw(instance, resources, write_source(tables, tmp_path_factory.mktemp("bad")), False, False)
        return result, lake_digest(home) == before

    return load_spoilt


def _before_signup(world, table: str, column: str) -> pl.DataFrame:
    first = world[table].row(0, named=True)
    signup = world["customers"].filter(pl.col("customer_id") == first["customer_id"])["signup_date"][0]
    early = signup - timedelta(days=3)
    value = datetime.combine(early, datetime.min.time()) if isinstance(first[column], datetime) else early
    return set_value(world[table], column, value)


def _customer_with_few_seats(world) -> tuple[str, int]:
    few = world["customers"].sort("employees").row(0, named=True)
    return few["customer_id"], few["employees"]


def _usage_of(world, customer: str, column: str, value) -> pl.DataFrame:
    usage = world["usage_daily"]
    row = usage.with_row_index("i").filter(pl.col("customer_id") == customer)["i"][0]
    return set_value(usage, column, value, row)


PROBES = {
    **{
        f"id: {p}": ("customers", "customer_id", lambda w, p=p: spoil_id(w["customers"], "customer_id", p))
        for p in ID_PROBES
    },
    "invoice of 1e14": ("invoices", "amount", lambda w: set_value(w["invoices"], "amount", 1e14)),
    "mrr of 1e14": ("customers", "mrr", lambda w: set_value(w["customers"], "mrr", 1e14)),
    "a usage day in 1800": (
        "usage_daily",
        "activity_date",
        lambda w: set_value(w["usage_daily"], "activity_date", date(1800, 1, 1)),
    ),
    "a ticket in 1800": (
        "support_tickets",
        "opened_at",
        lambda w: set_value(w["support_tickets"], "opened_at", datetime(1800, 1, 1)),
    ),
    "100,000 session minutes in a day": (
        "usage_daily",
        "session_minutes",
        lambda w: _usage_of(w, _customer_with_few_seats(w)[0], "session_minutes", 100_000.0),
    ),
    "1e9 logins in a day": ("usage_daily", "logins", lambda w: set_value(w["usage_daily"], "logins", 1_000_000_000)),
    "usage before signup": (
        "usage_daily",
        "activity_date",
        lambda w: _before_signup(w, "usage_daily", "activity_date"),
    ),
    "ticket before signup": (
        "support_tickets",
        "opened_at",
        lambda w: _before_signup(w, "support_tickets", "opened_at"),
    ),
    "invoice before signup": ("invoices", "issue_date", lambda w: _before_signup(w, "invoices", "issue_date")),
    "paid before issued": (
        "invoices",
        "paid_date",
        lambda w: set_value(w["invoices"], "paid_date", w["invoices"]["issue_date"][0] - timedelta(days=2)),
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_each_probe_is_refused_with_file_column_rows_and_the_lake_unchanged(loaded, world, probe):
    table, column, spoil = PROBES[probe]
    result, unchanged = loaded({**world, table: spoil(world)})
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert (error.cause or error).cls_name == "InputDataError"
    assert_names_file_column_rows((error.cause or error).message, f"{table}.parquet", column)
    assert unchanged
