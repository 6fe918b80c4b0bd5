"""Validation of user-supplied raw tables against declared schemas."""

from __future__ import annotations

import pickle
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from lakehouse.common.schema import (
    Column,
    InputDataError,
    TableSchema,
    find_table_file,
    load_tables,
    read_table,
    validate_frame,
    validate_references,
)

TODAY = date(2024, 6, 30)

CUSTOMERS = TableSchema(
    name="customers",
    description="One row per customer.",
    columns=(
        Column("customer_id", pl.Utf8, "Customer identifier."),
        Column("plan", pl.String, "Subscription plan.", allowed=("basic", "pro")),
        Column("signup_date", pl.Date, "Signup day.", not_in_future=True),
        Column("monthly_fee", pl.Float64, "Fee | EUR.", min_value=0),
        Column("is_business", pl.Boolean, "Business account.", nullable=True),
    ),
    key=("customer_id",),
)

USAGE = TableSchema(
    name="usage",
    description="One row per customer and day.",
    columns=(
        Column("customer_id", pl.String, "Customer identifier."),
        Column("day", pl.Date, "Usage day.", not_in_future=True),
        Column("session_minutes", pl.Float64, "Minutes in sessions.", min_value=0, max_value=1440),
        Column("logins", pl.Int64, "Number of logins.", min_value=0),
        Column("last_seen", pl.Datetime, "Last event time.", nullable=True, not_in_future=True),
    ),
    key=("customer_id", "day"),
)

CUSTOMERS_CSV = """customer_id,plan,signup_date,monthly_fee,is_business
C1,basic,2024-01-05,9.5,true
C2,pro,2023-12-31,29,false
C3,pro,2024-02-01,29,
"""

USAGE_CSV = """customer_id,day,session_minutes,logins,last_seen
C1,2024-06-01,12.5,2,2024-06-01T10:15:00
C1,2024-06-02,0,0,
C2,2024-06-01,30,1,2024-06-01 08:00:00
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def customers_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "plan": ["basic", "pro", "pro"],
            "signup_date": [date(2024, 1, 5), date(2023, 12, 31), date(2024, 2, 1)],
            "monthly_fee": [9.5, 29.0, 29.0],
            "is_business": [True, False, None],
        }
    )


def csv_error(tmp_path: Path, text: str, schema: TableSchema = CUSTOMERS) -> InputDataError:
    path = write(tmp_path / f"{schema.name}.csv", text)
    with pytest.raises(InputDataError) as info:
        read_table(path, schema, today=TODAY)
    err = info.value
    assert err.file == str(path) and err.table == schema.name
    assert str(path) in str(err)
    return err


def error_rows(err: InputDataError) -> list[int]:
    assert err.rows is not None
    return err.rows.get_column("row").to_list()


# --------------------------------------------------------------------------- happy paths


def test_valid_csv_loads_with_declared_dtypes(tmp_path):
    df = read_table(write(tmp_path / "usage.csv", USAGE_CSV), USAGE, today=TODAY)
    assert df.schema == pl.Schema(USAGE.polars_schema())
    assert df.columns == ["customer_id", "day", "session_minutes", "logins", "last_seen"]
    assert df.get_column("day").to_list()[0] == date(2024, 6, 1)
    assert df.get_column("logins").to_list() == [2, 0, 1]
    assert df.get_column("last_seen").to_list() == [
        datetime(2024, 6, 1, 10, 15),
        None,
        datetime(2024, 6, 1, 8, 0),
    ]
    customers = read_table(write(tmp_path / "customers.csv", CUSTOMERS_CSV), CUSTOMERS, today=TODAY)
    assert customers.get_column("is_business").to_list() == [True, False, None]
    assert customers.schema == pl.Schema(CUSTOMERS.polars_schema())


def test_valid_parquet_loads_with_declared_dtypes_and_schema_order(tmp_path):
    frame = customers_frame()
    # Different column order and an integer fee column: both are fine.
    frame = frame.with_columns(pl.col("monthly_fee").cast(pl.Int32)).select(reversed(frame.columns))
    path = tmp_path / "customers.parquet"
    frame.write_parquet(path)
    df = read_table(path, CUSTOMERS, today=TODAY)
    assert df.columns == CUSTOMERS.column_names
    assert df.schema == pl.Schema(CUSTOMERS.polars_schema())
    assert df.get_column("monthly_fee").to_list() == [9.0, 29.0, 29.0]


def test_schema_helpers():
    assert CUSTOMERS.polars_schema()["customer_id"] == pl.String
    assert USAGE.polars_schema()["last_seen"] == pl.Datetime("us")
    empty = USAGE.empty()
    assert empty.height == 0 and empty.schema == pl.Schema(USAGE.polars_schema())
    md = CUSTOMERS.markdown()
    lines = md.strip().splitlines()
    assert lines[0] == "| column | type | nullable | rule | description |"
    assert len(lines) == 2 + len(CUSTOMERS.columns)
    assert "`basic`" in md and ">= 0" in md and "not in the future" in md and "key" in lines[2]
    assert "Fee \\| EUR." in md  # pipes in descriptions are escaped
    with pytest.raises(ValueError):
        Column("x", pl.Int64, "bad bound", allowed=("a",))
    with pytest.raises(ValueError):
        TableSchema("t", "", (Column("a", pl.Int64, ""),), key=("b",))


# --------------------------------------------------------------------------- structure


def test_missing_column(tmp_path):
    text = "customer_id,plan,signup_date,is_business\nC1,basic,2024-01-05,true\n"
    err = csv_error(tmp_path, text)
    assert err.column == "monthly_fee"
    assert "missing column" in str(err) and "'monthly_fee'" in str(err)


def test_extra_column(tmp_path):
    text = (
        CUSTOMERS_CSV.replace("is_business\n", "is_business,notes\n", 1)
        .replace("true\n", "true,hi\n")
        .replace("false\n", "false,\n")
        .replace("29,\n", "29,,\n")
    )
    err = csv_error(tmp_path, text)
    assert err.column == "notes"
    assert "unexpected column" in str(err)


def test_empty_csv_with_header_only(tmp_path):
    err = csv_error(tmp_path, "customer_id,plan,signup_date,monthly_fee,is_business\n")
    assert "no data rows" in err.reason and err.column is None


def test_zero_byte_file(tmp_path):
    for name in ("customers.csv", "customers.parquet"):
        path = tmp_path / name
        path.write_bytes(b"")
        with pytest.raises(InputDataError) as info:
            read_table(path, CUSTOMERS, today=TODAY)
        assert info.value.file == str(path)
        assert info.value.reason == "the file is empty (0 bytes)"


def test_unreadable_and_unknown_files(tmp_path):
    bad = tmp_path / "customers.parquet"
    bad.write_bytes(b"definitely not parquet")
    with pytest.raises(InputDataError, match="cannot read the file as Parquet"):
        read_table(bad, CUSTOMERS, today=TODAY)
    xlsx = write(tmp_path / "customers.xlsx", "x")
    with pytest.raises(InputDataError, match="unsupported file type"):
        read_table(xlsx, CUSTOMERS, today=TODAY)


# --------------------------------------------------------------------------- types


def test_wrong_type_in_csv_names_column_and_row(tmp_path):
    text = USAGE_CSV.replace("C2,2024-06-01,30,1,", "C2,2024-06-01,30,abc,")
    err = csv_error(tmp_path, text, USAGE)
    assert err.column == "logins"
    assert error_rows(err) == [2]
    message = str(err)
    assert "column 'logins'" in message and "Int64" in message
    assert "row 2" in message and "'abc'" in message


def test_unparseable_date_in_csv(tmp_path):
    text = CUSTOMERS_CSV.replace("2024-02-01", "01/02/2024")
    err = csv_error(tmp_path, text)
    assert err.column == "signup_date" and error_rows(err) == [2]
    assert "'01/02/2024'" in str(err) and "YYYY-MM-DD" in str(err)


def test_fractional_value_in_integer_column(tmp_path):
    frame = pl.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "day": [date(2024, 6, 1)] * 2,
            "session_minutes": [1.0, 2.0],
            "logins": [1.0, 2.5],  # 2.5 must not be silently truncated to 2
            "last_seen": [None, None],
        }
    )
    with pytest.raises(InputDataError) as info:
        validate_frame(frame, USAGE, source="mem", today=TODAY)
    assert info.value.column == "logins" and error_rows(info.value) == [1]


def test_wrong_type_in_parquet(tmp_path):
    frame = customers_frame().with_columns(
        pl.Series("monthly_fee", ["9.5", "n/a", "29"])  # string column where Float64 is declared
    )
    path = tmp_path / "customers.parquet"
    frame.write_parquet(path)
    with pytest.raises(InputDataError) as info:
        read_table(path, CUSTOMERS, today=TODAY)
    err = info.value
    assert err.column == "monthly_fee" and error_rows(err) == [1]
    assert "Float64" in str(err) and "'n/a'" in str(err)


def test_incompatible_parquet_type(tmp_path):
    frame = customers_frame().with_columns(pl.Series("monthly_fee", [True, False, True]))
    path = tmp_path / "customers.parquet"
    frame.write_parquet(path)
    with pytest.raises(InputDataError, match="has type Boolean but Float64 is declared") as info:
        read_table(path, CUSTOMERS, today=TODAY)
    assert info.value.column == "monthly_fee"


# --------------------------------------------------------------------------- nulls and keys


def test_null_in_non_nullable_column(tmp_path):
    text = CUSTOMERS_CSV.replace("C2,pro,2023-12-31,29,", "C2,,2023-12-31,29,")
    err = csv_error(tmp_path, text)
    assert err.column == "plan" and error_rows(err) == [1]
    assert "null" in err.reason


def test_null_key(tmp_path):
    text = CUSTOMERS_CSV.replace("C3,pro", ",pro")
    err = csv_error(tmp_path, text)
    assert err.column == "customer_id" and error_rows(err) == [2]
    assert "key column" in err.reason


def test_duplicate_key_names_values(tmp_path):
    text = USAGE_CSV + "C1,2024-06-02,5,1,\n"
    err = csv_error(tmp_path, text, USAGE)
    assert error_rows(err) == [1, 3]
    assert "duplicated key" in err.reason
    assert "('C1', 2024-06-02)" in err.reason and "rows 1, 3" in err.reason


def test_single_column_duplicate_key(tmp_path):
    frame = pl.concat([customers_frame(), customers_frame().head(1)])
    with pytest.raises(InputDataError, match="'C1' \\(rows 0, 3\\)") as info:
        validate_frame(frame, CUSTOMERS, source="customers.parquet", today=TODAY)
    assert info.value.column == "customer_id"


# --------------------------------------------------------------------------- value rules


def test_value_outside_allowed_set(tmp_path):
    text = CUSTOMERS_CSV.replace("C2,pro", "C2,gold")
    err = csv_error(tmp_path, text)
    assert err.column == "plan" and error_rows(err) == [1]
    assert "'gold'" in err.reason and "allowed" in err.reason


def test_negative_value_below_minimum(tmp_path):
    text = USAGE_CSV.replace("C2,2024-06-01,30,", "C2,2024-06-01,-5,")
    err = csv_error(tmp_path, text, USAGE)
    assert err.column == "session_minutes" and error_rows(err) == [2]
    assert "below the minimum 0" in err.reason
    assert "session_minutes=-5.0" in str(err)


def test_value_above_maximum(tmp_path):
    text = USAGE_CSV.replace("C2,2024-06-01,30,", "C2,2024-06-01,2000,")
    err = csv_error(tmp_path, text, USAGE)
    assert err.column == "session_minutes" and "above the maximum 1440" in err.reason


def test_date_in_future(tmp_path):
    text = CUSTOMERS_CSV.replace("2024-02-01", "2024-07-01")
    err = csv_error(tmp_path, text)
    assert err.column == "signup_date" and error_rows(err) == [2]
    assert "future" in err.reason


def test_datetime_in_future_but_same_day_is_fine(tmp_path):
    ok = USAGE_CSV.replace("2024-06-01T10:15:00", "2024-06-30T23:59:00")
    read_table(write(tmp_path / "usage.csv", ok), USAGE, today=TODAY)
    bad = USAGE_CSV.replace("2024-06-01T10:15:00", "2024-07-01T00:00:00")
    err = csv_error(tmp_path, bad, USAGE)
    assert err.column == "last_seen" and error_rows(err) == [0]


# --------------------------------------------------------------------------- references


def test_unknown_foreign_key():
    customers = validate_frame(customers_frame(), CUSTOMERS, source="customers.csv", today=TODAY)
    usage = pl.DataFrame({"customer_id": ["C1", "C9", "C2", "C9"], "day": [date(2024, 6, d) for d in (1, 1, 1, 2)]})
    validate_references(usage.head(1), "customer_id", customers, "customer_id", source="u.csv", table="usage")
    with pytest.raises(InputDataError) as info:
        validate_references(usage, "customer_id", customers, "customer_id", source="data/usage.csv", table="usage")
    err = info.value
    assert err.column == "customer_id" and err.table == "usage"
    assert error_rows(err) == [1, 3]
    assert "'C9'" in str(err) and "data/usage.csv" in str(err) and "row 1" in str(err)


# --------------------------------------------------------------------------- directory loading


def test_load_tables_all_or_nothing(tmp_path):
    write(tmp_path / "customers.csv", CUSTOMERS_CSV)
    write(tmp_path / "usage.csv", USAGE_CSV.replace(",2,2024", ",-2,2024"))
    result = None
    with pytest.raises(InputDataError) as info:
        result = load_tables(tmp_path, [CUSTOMERS, USAGE], today=TODAY)
    assert result is None
    assert info.value.table == "usage" and info.value.column == "logins"

    write(tmp_path / "usage.csv", USAGE_CSV)
    tables = load_tables(tmp_path, [CUSTOMERS, USAGE], today=TODAY)
    assert set(tables) == {"customers", "usage"}
    assert tables["usage"].schema == pl.Schema(USAGE.polars_schema())


def test_find_table_file(tmp_path):
    with pytest.raises(InputDataError) as info:
        find_table_file(tmp_path, "customers")
    assert "customers.parquet" in str(info.value) and "customers.csv" in str(info.value)
    customers_frame().write_parquet(tmp_path / "customers.parquet")
    assert find_table_file(tmp_path, "customers") == tmp_path / "customers.parquet"
    write(tmp_path / "customers.csv", CUSTOMERS_CSV)
    with pytest.raises(InputDataError, match="keep only one"):
        find_table_file(tmp_path, "customers")


def test_error_message_contains_file_column_and_example_row(tmp_path):
    text = USAGE_CSV.replace("C1,2024-06-02,0,", "C1,2024-06-02,-5,")
    path = write(tmp_path / "usage.csv", text)
    with pytest.raises(InputDataError) as info:
        read_table(path, USAGE, today=TODAY)
    err = info.value
    message = str(err)
    assert message.startswith(f"{path}: table 'usage', column 'session_minutes': ")
    assert "; e.g. rows: row 1: customer_id='C1', day=2024-06-02, session_minutes=-5.0" in message
    assert "\n" not in message
    assert err.rows is not None and err.rows.height == 1
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == message and again.column == "session_minutes"


def test_example_rows_are_capped_at_five(tmp_path):
    rows = "".join(f"C{i},2024-06-01,-{i + 1},1,\n" for i in range(8))
    err = csv_error(tmp_path, "customer_id,day,session_minutes,logins,last_seen\n" + rows, USAGE)
    assert error_rows(err) == [0, 1, 2, 3, 4]
    assert "8 value(s) below" in err.reason
    assert str(err).count("row ") == 5 + 1  # five rows + the trailing note


def test_ids_are_stored_in_nfc_and_their_twins_are_refused():
    decomposed = customers_frame().with_columns(pl.Series("customer_id", ["C1", "Ce\u0301", "C3"]))
    typed = validate_frame(decomposed, CUSTOMERS, source="customers.csv", today=TODAY)
    assert typed["customer_id"].to_list() == ["C1", "C\u00e9", "C3"]
    twins = customers_frame().with_columns(pl.Series("customer_id", ["C1", "\uff23\uff11", "C3"]))
    with pytest.raises(InputDataError) as info:
        validate_frame(twins, CUSTOMERS, source="customers.csv", today=TODAY)
    assert info.value.column == "customer_id" and "ambiguous" in info.value.reason and "row 1" in str(info.value)


@pytest.mark.parametrize("bad", ["C\u200b1", "C\u202e1", "C\u009b1", "\u3164", "a=b", ".", "x" * 300])
def test_every_invisible_or_unholdable_id_is_refused(bad):
    frame = customers_frame().with_columns(pl.Series("customer_id", ["C1", bad, "C3"]))
    with pytest.raises(InputDataError) as info:
        validate_frame(frame, CUSTOMERS, source="customers.csv", today=TODAY)
    assert info.value.column == "customer_id" and "row 1" in str(info.value)


def test_an_error_echoes_a_few_dozen_characters_of_a_value_at_most():
    huge = "C" + "x" * 60_000
    frame = customers_frame().with_columns(pl.Series("customer_id", ["C1", huge, "C3"]))
    with pytest.raises(InputDataError) as info:
        validate_frame(frame, CUSTOMERS, source="customers.csv", today=TODAY)
    assert len(str(info.value)) < 1_000
    wrong = customers_frame().with_columns(pl.Series("plan", ["basic", "y" * 60_000, "pro"]))
    with pytest.raises(InputDataError) as info:
        validate_frame(wrong, CUSTOMERS, source="customers.csv", today=TODAY)
    assert len(str(info.value)) < 1_000


def test_header_cells_that_are_no_column_names_are_counted_not_echoed(tmp_path):
    path = write(tmp_path / "customers.csv", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/bin/false\n")
    with pytest.raises(InputDataError) as info:
        read_table(path, CUSTOMERS, today=TODAY)
    assert "/bin/bash" not in str(info.value) and "daemon" not in str(info.value)
    assert "1 header cell(s) that are no column name" in str(info.value)
