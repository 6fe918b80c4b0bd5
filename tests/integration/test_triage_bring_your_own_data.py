"""The user's helpdesk export instead of the generator: loaded when valid, refused with one clear error
naming file, column and rows when not, and the lake left unchanged."""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.schema import InputDataError
from lakehouse.triage.config import WorldConfig
from lakehouse.triage.world import generate_customers, generate_month, generic_categories

pytestmark = pytest.mark.integration
MONTH = "2026-03-01"


@pytest.fixture
def export(tmp_path):
    """A small export with a helpdesk of its own: 5 categories, none of the seed's."""
    world = WorldConfig(tickets_per_month=60, customers=40, categories=generic_categories(5))
    customers = generate_customers(world)
    tickets, labels = zip(*(generate_month(world, date(2026, m, 1), customers) for m in (2, 3)))
    folder = tmp_path / "export"
    folder.mkdir()
    customers.write_csv(folder / "customers.csv")
    pl.concat(tickets).write_parquet(folder / "tickets.parquet")
    pl.concat(labels).write_csv(folder / "agent_labels.csv")
    return folder


def _ingest(home, folder):
    from assets.triage.tickets import TicketsConfig, triage_tickets
    from resources import LakehouseResource

    return dg.materialize(
        [triage_tickets],
        partition_key=MONTH,
        resources={"lakehouse": LakehouseResource(home=str(home))},
        run_config=dg.RunConfig(ops={"triage_tickets": TicketsConfig(source_dir=str(folder))}),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_a_valid_export_with_its_own_categories_is_scrubbed_into_the_lake(lakehouse_home, export):
    assert _ingest(lakehouse_home, export).success
    clean = pl.read_parquet(lakehouse_home / "lake" / "triage" / "tickets_clean" / "month=2026-03" / "data.parquet")
    labels = pl.read_parquet(lakehouse_home / "lake" / "triage" / "agent_labels" / "month=2026-03" / "data.parquet")
    assert clean.height == 60 and (clean["month"] == "2026-03").all()
    assert set(labels["category"]) <= {c.name for c in generic_categories(5)}
    emails = pl.read_csv(export / "customers.csv")["email"].to_list()
    assert not any(e in t for t in clean["text"] for e in emails)


@pytest.mark.parametrize(
    "table, breakage, column, words",
    [
        ("tickets", lambda df: df.drop("subject"), None, "missing"),
        ("tickets", lambda df: df.with_columns(pl.col("created_at").cast(pl.String).str.replace("2026-03", "2026-13")), "created_at", "cannot be read"),
        ("agent_labels", lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("T-unknown")).otherwise(pl.col("ticket_id")).alias("ticket_id")), "ticket_id", "missing from tickets.ticket_id"),
        ("customers", lambda df: pl.concat([df, df.head(1)]), "customer_id", "duplicated"),
        ("agent_labels", lambda df: df.clear(), None, "no data rows"),
    ],
)
def test_a_bad_file_stops_the_run_and_leaves_the_lake_unchanged(lakehouse_home, export, table, breakage, column, words):
    assert _ingest(lakehouse_home, export).success
    stored = lakehouse_home / "lake" / "triage" / "tickets_clean" / "month=2026-03" / "data.parquet"
    before = stored.read_bytes()
    path = next(export.glob(f"{table}.*"))
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    broken = breakage(df)
    path.unlink()
    if path.suffix == ".parquet":
        broken.write_parquet(path)
    else:
        broken.write_csv(path) if broken.height else path.write_text(",".join(broken.columns) + "\n")
    result = _ingest(lakehouse_home, export)
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    error = error.cause or error
    assert error.cls_name == InputDataError.__name__
    message = error.message
    assert str(path) in message and words in message
    if column:
        assert f"column '{column}'" in message
    assert stored.read_bytes() == before
