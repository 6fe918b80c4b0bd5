"""The sources file, its declarative column mapping, case settings from env and file, and safe loads."""

from datetime import date, datetime

import polars as pl
import pytest

from lakehouse.common.loads import split_partitions
from lakehouse.common.schema import Column, InputDataError, TableSchema
from lakehouse.common.settings import Calendar, CaseSettings, DateRange, EvaluationWindows, back, forward
from lakehouse.common.sources import SOURCES_ENV, SourcesError, load_sources, load_table, read_mapped

TODAY = date(2026, 11, 30)

PAYMENTS = TableSchema(
    "payments",
    "One row per payment.",
    (
        Column("tx_id", pl.String, "id"),
        Column("ts", pl.Datetime("us"), "when (UTC)"),
        Column("customer_id", pl.String, "who", identifier=True),
        Column("channel", pl.String, "how"),
        Column("amount", pl.Float64, "how much", min_value=0),
        Column("is_fraud", pl.Boolean, "label"),
        Column("device_id", pl.String, "optional", nullable=True),
    ),
    ("tx_id",),
)


class ExampleSettings(CaseSettings):
    case = "fraud"
    calendar: Calendar = Calendar(start=date(2023, 1, 1))
    min_recall: float = 0.75
    currency: str = "EUR"


def write_sources(tmp_path, text: str):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def their_file(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pl.DataFrame(
        {
            "transaction_id": ["a", "b", "c"],
            "local_time": ["01/02/2024 10:00", "01/02/2024 23:30", "03/02/2024 08:15"],
            "ssn": ["c1", "c2", "c1"],
            "amount_cents": [1250, 99, 40000],
            "fraud": [0, 1, 0],
            "split": ["train", "train", "test"],
        }
    ).write_csv(folder / "tx.csv")
    return folder


MAPPING = """
fraud:
  folder: data
  tables:
    payments:
      file: tx.csv
      columns:
        tx_id: transaction_id
        ts: {from: local_time, format: "%d/%m/%Y %H:%M", timezone: America/New_York}
        customer_id: ssn
        channel: {value: online}
        amount: {from: amount_cents, scale: 0.01}
        is_fraud: {sql: "fraud = '1'"}
  settings:
    calendar: {start: 2024-01-01}
    min_recall: 0.5
"""


def test_a_mapping_renames_converts_and_fills_columns(tmp_path, their_file):
    source = load_sources(write_sources(tmp_path, MAPPING)).case("fraud")
    loaded = load_table(source, PAYMENTS, today=TODAY, optional=("device_id",))
    df = loaded.frame
    assert df.columns == ["tx_id", "ts", "customer_id", "channel", "amount", "is_fraud"]
    assert df["ts"].to_list()[0] == datetime(2024, 2, 1, 15, 0)  # 10:00 in New York is 15:00 UTC
    assert df["amount"].to_list() == [12.5, 0.99, 400.0]
    assert df["channel"].unique().to_list() == ["online"]
    assert df["is_fraud"].to_list() == [False, True, False]
    assert loaded.ignored == ["split"]


def test_an_unreadable_date_names_their_column_and_rows(tmp_path, their_file):
    source = load_sources(write_sources(tmp_path, MAPPING.replace("%d/%m/%Y %H:%M", "%Y-%m-%d"))).case("fraud")
    with pytest.raises(InputDataError) as err:
        load_table(source, PAYMENTS, today=TODAY, optional=("device_id",))
    assert err.value.column == "ts" and "local_time" in str(err.value) and "tx.csv" in err.value.file
    assert err.value.rows.height == 3


def test_a_mapping_naming_a_column_the_file_lacks_suggests_the_closest(tmp_path, their_file):
    source = load_sources(write_sources(tmp_path, MAPPING.replace("customer_id: ssn", "customer_id: sn"))).case("fraud")
    with pytest.raises(InputDataError, match="did you mean 'ssn'"):
        load_table(source, PAYMENTS, today=TODAY, optional=("device_id",))


def test_a_filter_keeps_only_the_rows_it_names(tmp_path, their_file):
    text = MAPPING.replace("      file: tx.csv", "      file: tx.csv\n      filter: \"split = 'train'\"")
    source = load_sources(write_sources(tmp_path, text)).case("fraud")
    assert load_table(source, PAYMENTS, today=TODAY, optional=("device_id",)).frame.height == 2


def test_a_table_can_be_a_query_over_the_folders_files(tmp_path, their_file):
    text = """
fraud:
  folder: data
  tables:
    payments:
      sql: >
        select transaction_id as tx_id, timestamp '2024-01-05 00:00:00' as ts, ssn as customer_id,
               'online' as channel, amount_cents / 100.0 as amount, fraud = 1 as is_fraud from tx
"""
    source = load_sources(write_sources(tmp_path, text)).case("fraud")
    assert load_table(source, PAYMENTS, today=TODAY, optional=("device_id",)).frame.height == 3


def test_a_misnamed_file_is_not_taken_for_an_absent_optional_table(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(folder / "promotion.parquet")
    source = load_sources(write_sources(tmp_path, "forecast:\n  folder: data\n")).case("forecast")
    with pytest.raises(InputDataError, match="misnamed 'promotions'"):
        source.check_no_misnamed_files(["stores", "promotions", "sales"])
    ignored = load_sources(write_sources(tmp_path, "forecast:\n  folder: data\n  ignore: [promotion.parquet]\n")).case(
        "forecast"
    )
    ignored.check_no_misnamed_files(["stores", "promotions", "sales"])
    assert read_mapped(ignored, "promotions") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("shop:\n  folder: data\n", "unknown case"),
        ("fraud:\n  tables: {}\n", "folder` is missing"),
        ("fraud:\n  folder: nowhere\n", "is not a folder"),
        (
            "fraud:\n  folder: data\n  tables:\n    payments:\n      columns:\n        tx_id: {from: a, value: 1}\n",
            "exactly one of",
        ),
        ("fraud:\n  folder: data\n  colums: {}\n", "colums"),
    ],
)
def test_a_wrong_sources_file_is_refused_with_the_key(tmp_path, their_file, text, message):
    with pytest.raises(SourcesError, match=message):
        load_sources(write_sources(tmp_path, text)).case("fraud")


def test_settings_come_from_env_over_the_sources_file_over_defaults(tmp_path, their_file, monkeypatch):
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    assert ExampleSettings().min_recall == 0.75
    monkeypatch.setenv(SOURCES_ENV, str(write_sources(tmp_path, MAPPING)))
    settings = ExampleSettings()
    assert settings.min_recall == 0.5 and settings.calendar.start == date(2024, 1, 1)
    monkeypatch.setenv("LAKEHOUSE_FRAUD_MIN_RECALL", "0.6")
    monkeypatch.setenv("LAKEHOUSE_FRAUD_CALENDAR__TIMEZONE", "Europe/Paris")
    settings = ExampleSettings()
    assert (
        settings.min_recall == 0.6
        and settings.calendar.timezone == "Europe/Paris"
        and settings.calendar.start == date(2024, 1, 1)
    )
    assert ExampleSettings(min_recall=0.9).min_recall == 0.9
    assert ExampleSettings.where("calendar.start").endswith("LAKEHOUSE_FRAUD_CALENDAR__START")


def test_a_typo_in_settings_is_an_error(monkeypatch):
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    with pytest.raises(ValueError, match="min_recal"):
        ExampleSettings(min_recal=0.5)


def test_durations_and_evaluation_windows():
    assert back(date(2024, 3, 31), "1mo") == date(2024, 2, 29)
    assert forward(date(2024, 1, 31), "1mo") == date(2024, 2, 29)
    assert back(date(2024, 3, 10), "2w") == date(2024, 2, 25)
    windows = EvaluationWindows(test="3d", validation="2d", warmup="1d").resolve(date(2026, 11, 14), date(2026, 11, 22))
    assert windows["test"] == DateRange(start=date(2026, 11, 20), end=date(2026, 11, 22))
    assert windows["validation"] == DateRange(start=date(2026, 11, 18), end=date(2026, 11, 19))
    assert windows["train"] == DateRange(start=date(2026, 11, 15), end=date(2026, 11, 17))
    gapped = EvaluationWindows(test="4mo", validation="2mo", gap="30d").resolve(date(2023, 1, 1), date(2024, 12, 31))
    assert gapped["validation"].end == date(2024, 8, 31) - __import__("datetime").timedelta(days=30)
    fixed = EvaluationWindows(test=DateRange(start=date(2024, 1, 1), end=date(2024, 12, 31)), validation="1mo").resolve(
        date(2020, 1, 1), date(2025, 6, 1)
    )
    assert fixed["validation"] == DateRange(start=date(2023, 12, 1), end=date(2023, 12, 31))
    with pytest.raises(ValueError, match="empty"):
        EvaluationWindows(test="5d", validation="5d").resolve(date(2026, 11, 14), date(2026, 11, 22))
    with pytest.raises(ValueError, match="duration"):
        EvaluationWindows(test="3 days", validation="2d")


DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
ROWS = pl.DataFrame({"day": ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-03"], "v": [1, 2, 3, 4]})


def split(selected, **kwargs):
    return split_partitions(
        ROWS,
        pl.col("day"),
        selected=selected,
        allowed=DAYS,
        label="tx.csv",
        table="payments",
        column="ts",
        calendar_hint="LAKEHOUSE_FRAUD_CALENDAR__START",
        **kwargs,
    )


def test_a_load_puts_rows_into_the_selected_partitions():
    load = split(DAYS)
    assert {k: v.height for k, v in load.frames.items()} == {"2024-01-01": 2, "2024-01-02": 1, "2024-01-03": 1}


def test_rows_of_unselected_partitions_are_refused_unless_the_mapping_says_skip():
    with pytest.raises(InputDataError, match="did not select .*2 partition"):
        split(["2024-01-01"])
    load = split(["2024-01-01"], rows_outside_selection="skip")
    assert load.skipped_rows == 2 and load.skipped_partitions == ["2024-01-02", "2024-01-03"]


def test_rows_outside_the_calendar_are_refused_with_the_setting():
    rows = ROWS.with_columns(pl.when(pl.col("v") == 4).then(pl.lit("2023-12-31")).otherwise(pl.col("day")).alias("day"))
    with pytest.raises(InputDataError, match="outside the data calendar.*LAKEHOUSE_FRAUD_CALENDAR__START"):
        split_partitions(
            rows,
            pl.col("day"),
            selected=DAYS,
            allowed=DAYS,
            label="f",
            table="t",
            column="ts",
            calendar_hint="LAKEHOUSE_FRAUD_CALENDAR__START",
        )


def test_a_selected_partition_without_rows_is_refused_unless_replaced_on_purpose():
    rows = ROWS.filter(pl.col("day") != "2024-01-02")
    with pytest.raises(InputDataError, match="no row for selected partition.*2024-01-02"):
        split_partitions(
            rows, pl.col("day"), selected=DAYS, allowed=DAYS, label="f", table="t", column="ts", calendar_hint="x"
        )
    load = split_partitions(
        rows,
        pl.col("day"),
        selected=DAYS,
        allowed=DAYS,
        label="f",
        table="t",
        column="ts",
        calendar_hint="x",
        replace_with_empty=True,
    )
    assert load.frames["2024-01-02"].height == 0


COVARIATES = TableSchema(
    "covariates",
    "Numbers per day.",
    (
        Column("name", pl.String, "which", identifier=True),
        Column("date", pl.Date, "day"),
        Column("value", pl.Float64, "the value", nullable=True),
    ),
    (),
)


@pytest.mark.parametrize("table", ["file", "sql"])
def test_file_and_sql_tables_take_the_same_csv_read_options(tmp_path, table):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "econ.csv").write_text("Date;CPI\n2024-01-01;211.5\n2024-01-02;NA\n2024-01-03;212\n")
    if table == "sql":
        spec = "sql: \"select 'cpi' as name, Date as date, CPI as value from econ\""
    else:
        spec = "file: econ.csv\n      columns: {name: {value: cpi}, date: Date, value: CPI}"
    text = (
        f"forecast:\n  folder: data\n  tables:\n    covariates:\n      csv: {{delim: ';', nullstr: NA}}\n      {spec}\n"
    )
    source = load_sources(write_sources(tmp_path, text)).case("forecast")
    frame = load_table(source, COVARIATES, today=TODAY).frame
    assert frame["value"].to_list() == [211.5, None, 212.0]


def test_unknown_csv_options_are_refused_with_the_allowed_ones(tmp_path, their_file):
    text = "fraud:\n  folder: data\n  tables:\n    payments:\n      csv: {delimiter: ';', ignore_errors: true}\n"
    with pytest.raises(SourcesError, match="did you mean `delim`.*allowed: comment, dateformat"):
        load_sources(write_sources(tmp_path, text)).case("fraud")


@pytest.mark.parametrize("mapped", [False, True])
def test_a_file_that_is_no_table_is_refused_without_echoing_its_content(tmp_path, mapped):
    folder = tmp_path / "data"
    folder.mkdir()
    secret = "root:x:0:0:root:/root:/bin/bash"
    (tmp_path / "passwd").write_text(f"{secret}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    (folder / "payments.csv").symlink_to(tmp_path / "passwd")
    columns = "\n      columns: {tx_id: id}" if mapped else ""
    text = f"fraud:\n  folder: data\n  tables:\n    payments:\n      file: payments.csv{columns}\n"
    source = load_sources(write_sources(tmp_path, text)).case("fraud")
    with pytest.raises(InputDataError) as info:
        load_table(source, PAYMENTS, today=TODAY)
    message = str(info.value)
    assert "payments" in message and "x:0:0" not in message and "/bin/bash" not in message and "daemon" not in message
    assert "no column name" in message
