"""Plausibility as data: a case's limits (amounts, dates, per-column bounds, physical limits per parent) and the
rules across tables, each refused with file, column and rows, and each movable by the setting it names."""

from datetime import date, datetime

import polars as pl
import pytest

from lakehouse.common.plausibility import Bound, Limits, Plausibility
from lakehouse.common.schema import Column, InputDataError, TableSchema, validate_frame
from lakehouse.common.table_rules import not_before, within_parent_limit

TODAY = date(2026, 11, 30)
INVOICES = TableSchema(
    "invoices",
    "Invoices.",
    (
        Column("invoice_id", pl.String, "id"),
        Column("customer_id", pl.String, "who", identifier=True),
        Column("issued", pl.Date, "when"),
        Column("signed", pl.Date, "contract start", before_data=True, nullable=True),
        Column("amount", pl.Float64, "how much", min_value=0, quantity=True),
        Column("lines", pl.Int64, "invoice lines", nullable=True),
    ),
    ("invoice_id",),
)
LIMITS = Limits(Plausibility(), date(2023, 1, 2), "churn")


def frame(**changes) -> pl.DataFrame:
    rows = {
        "invoice_id": ["I1", "I2"],
        "customer_id": ["C1", "C2"],
        "issued": [date(2024, 1, 5), date(2024, 2, 5)],
        "signed": [date(1990, 1, 1), None],
        "amount": [120.0, 0.0],
        "lines": [3, 4],
    }
    return pl.DataFrame({**rows, **changes})


def refused(df: pl.DataFrame, limits: Limits = LIMITS) -> InputDataError:
    with pytest.raises(InputDataError) as info:
        validate_frame(df, INVOICES.with_limits(limits), source="invoices.csv", today=TODAY)
    return info.value


def test_plausible_rows_pass_and_long_past_origin_dates_keep_only_the_floor():
    assert validate_frame(frame(), INVOICES.with_limits(LIMITS), source="invoices.csv", today=TODAY).height == 2


def test_an_amount_of_1e9_or_more_is_refused_naming_the_setting():
    error = refused(frame(amount=[1e14, 1.0]))
    assert error.column == "amount" and "1e+09 or more" in error.reason and "row 0" in str(error)
    assert "`churn.settings.plausibility.max_amount`" in error.reason
    assert (
        validate_frame(
            frame(amount=[1e14, 1.0]),
            INVOICES.with_limits(Limits(Plausibility(max_amount=1e15), date(2023, 1, 2), "churn")),
            source="invoices.csv",
            today=TODAY,
        ).height
        == 2
    )


def test_dates_before_1900_or_long_before_the_calendar_are_refused():
    assert "before 1900-01-01" in refused(frame(signed=[date(1800, 1, 1), None])).reason
    error = refused(frame(issued=[date(2002, 12, 31), date(2024, 1, 1)]))
    assert error.column == "issued" and "before 2003-01-02" in error.reason and "history" in error.reason


def test_per_column_bounds_are_settings_and_unknown_columns_are_named():
    limits = Limits(Plausibility(columns={"invoices.lines": Bound(max=3)}), date(2023, 1, 2), "churn")
    error = refused(frame(), limits)
    assert error.column == "lines" and "above 3" in error.reason and "invoices.lines" in error.reason
    assert limits.unknown_columns([INVOICES]) == []
    assert Limits(Plausibility(columns={"invoices.line": Bound(max=3)})).unknown_columns([INVOICES]) == [
        "invoices.line"
    ]
    with pytest.raises(ValueError, match="table.column"):
        Plausibility(columns={"lines": Bound(max=3)})


def test_the_id_length_is_a_setting():
    short = Limits(Plausibility(max_id_length=2), date(2023, 1, 2), "churn")
    error = refused(frame(customer_id=["C1", "C22"]), short)
    assert error.column == "customer_id" and "at most 2" in error.reason and "max_id_length" in error.reason


def test_a_fact_before_its_entity_is_refused_unless_the_source_is_taken_as_it_is():
    customers = pl.DataFrame({"customer_id": ["C1", "C2"], "signup": [date(2024, 1, 1), date(2024, 3, 1)]})
    tickets = pl.DataFrame(
        {"customer_id": ["C1", "C2", None], "opened": [datetime(2024, 1, 1, 9), datetime(2024, 2, 1), None]}
    )
    where = {"source": "tickets.csv", "table": "tickets", "parent_table": "customers"}
    with pytest.raises(InputDataError) as info:
        not_before(tickets, "opened", customers, "signup", "customer_id", **where, limits=LIMITS)
    assert info.value.column == "opened" and "1 row(s) dated before their customers.signup" in info.value.reason
    assert "row 1" in str(info.value) and "facts_before_entity" in info.value.reason
    accepting = Limits(Plausibility(facts_before_entity="accept"), date(2023, 1, 2), "churn")
    not_before(tickets, "opened", customers, "signup", "customer_id", **where, limits=accepting)


def test_a_limit_per_unit_of_the_parent():
    customers = pl.DataFrame({"customer_id": ["C1", "C2"], "employees": [2, 50]})
    usage = pl.DataFrame({"customer_id": ["C2", "C1"], "minutes": [50_000.0, 3_000.0]})
    with pytest.raises(InputDataError) as info:
        within_parent_limit(
            usage,
            "minutes",
            customers,
            "customer_id",
            Bound(max=1440, per="employees"),
            source="usage.csv",
            table="usage",
            parent_table="customers",
            setting="`usage.minutes`",
        )
    assert "1 value(s) more than 1440 per unit of customers.employees" in info.value.reason
    assert "row 1" in str(info.value) and "row 0" not in str(info.value)
