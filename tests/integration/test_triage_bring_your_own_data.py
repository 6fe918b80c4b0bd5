"""The user's helpdesk export through the sources file: loaded when valid (with or without a CRM), refused
with one clear error naming file, column and rows when not, and the lake byte-identical after every
refusal; personal data left after scrubbing stops the write."""

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from lakehouse.triage.world import WorldConfig, generate_customers, generate_month, generic_categories
from tests.integration.probes import ID_PROBES, assert_names_file_column_rows, lake_digest, set_value, spoil_id

pytestmark = pytest.mark.integration
MONTHS = ("2026-02", "2026-03")


@pytest.fixture
def export(tmp_path):
    """A small export with a helpdesk of its own (5 categories, none of the seed's), and its sources file."""
    world = WorldConfig(tickets_per_month=60, customers=40, categories=generic_categories(5))
    customers = generate_customers(world)
    tickets, labels = zip(
        *(generate_month(world, date.fromisoformat(f"{m}-01"), customers) for m in MONTHS), strict=True
    )
    folder = tmp_path / "export"
    folder.mkdir()
    customers.write_csv(folder / "customers.csv")
    pl.concat(tickets).write_parquet(folder / "tickets.parquet")
    pl.concat(labels).write_csv(folder / "agent_labels.csv")
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"triage": {"folder": str(folder)}}))
    return folder, sources


def _ingest(home: Path, sources: Path, monkeypatch, keys=MONTHS, **config):
    from assets.triage.raw import TicketsConfig, triage_tickets
    from demos import range_tags
    from resources import LakehouseResource, SourcesResource

    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(sources))
    return dg.materialize(
        [triage_tickets],
        tags=range_tags(keys[0], keys[-1]),
        resources={"lakehouse": LakehouseResource(home=str(home)), "sources": SourcesResource(path=str(sources))},
        run_config=dg.RunConfig(ops={"triage_tickets": TicketsConfig(**config)}),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _error(result) -> str:
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    return (error.cause or error).message if error.cls_name not in ("InputDataError",) else error.message


def _lake(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted((home / "lake").rglob("*")) if p.is_file()}


def _stored(home: Path, name: str, month: str) -> pl.DataFrame:
    return pl.read_parquet(home / "lake" / "triage" / name / f"month={month}" / "data.parquet")


def test_a_valid_export_with_its_own_categories_is_scrubbed_into_the_lake(lakehouse_home, export, monkeypatch):
    folder, sources = export
    assert _ingest(lakehouse_home, sources, monkeypatch).success
    clean, labels = (
        _stored(lakehouse_home, "tickets_clean", "2026-03"),
        _stored(lakehouse_home, "agent_labels", "2026-03"),
    )
    assert clean.height == 60 and (clean["month"] == "2026-03").all()
    assert set(labels["category"]) <= set(generic_categories(5))
    emails = pl.read_csv(folder / "customers.csv")["email"].to_list()
    assert not any(e in t for t in clean["text"] for e in emails)


def test_without_a_crm_the_patterns_still_scrub(lakehouse_home, export, monkeypatch):
    folder, sources = export
    (folder / "customers.csv").unlink()
    assert _ingest(lakehouse_home, sources, monkeypatch).success
    clean = _stored(lakehouse_home, "tickets_clean", "2026-02")
    assert clean["pii_found"].sum() > 0 and not clean["text"].str.contains(r"\d{4} \d{4} \d{4} \d{4}").any()


def _rewrite(path: Path, breakage) -> None:
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    broken = breakage(df)
    path.unlink()
    if path.suffix == ".parquet":
        broken.write_parquet(path)
    else:
        broken.write_csv(path) if broken.height else path.write_text(",".join(broken.columns) + "\n")


@pytest.mark.parametrize(
    "table, breakage, column, words",
    [
        ("tickets", lambda df: df.drop("subject"), None, "missing"),
        (
            "tickets",
            lambda df: df.with_columns(pl.col("created_at").cast(pl.String).str.replace("2026-03", "2026-13")),
            "created_at",
            "cannot be read",
        ),
        (
            "tickets",
            lambda df: df.with_columns(pl.col("ticket_id").str.replace("T202603-000007", "T/../x")),
            "ticket_id",
            "path separators",
        ),
        (
            "agent_labels",
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 3)
                .then(pl.lit("T-unknown"))
                .otherwise(pl.col("ticket_id"))
                .alias("ticket_id")
            ),
            "ticket_id",
            "missing from tickets.ticket_id",
        ),
        ("customers", lambda df: pl.concat([df, df.head(1)]), "customer_id", "duplicated"),
        ("agent_labels", lambda df: df.clear(), None, "no data rows"),
        (
            "tickets",
            lambda df: df.with_columns(pl.col("created_at").cast(pl.Datetime("us")).dt.offset_by("-3mo")),
            "created_at",
            "outside the data calendar",
        ),
    ],
)
def test_a_bad_file_stops_the_run_and_leaves_the_lake_unchanged(
    lakehouse_home, export, monkeypatch, table, breakage, column, words
):
    folder, sources = export
    assert _ingest(lakehouse_home, sources, monkeypatch).success
    before = _lake(lakehouse_home)
    path = next(folder.glob(f"{table}.*"))
    _rewrite(path, breakage)
    result = _ingest(lakehouse_home, sources, monkeypatch)
    assert not result.success
    message = _error(result)
    assert str(path) in message and words in message, message
    if column:
        assert f"column '{column}" in message
    if words == "outside the data calendar":
        assert "2026-01" in message and "LAKEHOUSE_TRIAGE_CALENDAR__START" in message
    assert _lake(lakehouse_home) == before


def test_a_selected_month_without_rows_is_refused_unless_emptied_on_purpose(lakehouse_home, export, monkeypatch):
    folder, sources = export
    assert _ingest(lakehouse_home, sources, monkeypatch).success
    before = _lake(lakehouse_home)
    _rewrite(folder / "tickets.parquet", lambda df: df.filter(pl.col("created_at").cast(pl.String) < "2026-03"))
    _rewrite(folder / "agent_labels.csv", lambda df: df.filter(pl.col("ticket_id").str.starts_with("T202602")))
    refused = _ingest(lakehouse_home, sources, monkeypatch)
    assert (
        not refused.success
        and "no row for selected partition(s) 2026-03" in _error(refused)
        and "replace_with_empty" in _error(refused)
    )
    assert _lake(lakehouse_home) == before
    assert _ingest(lakehouse_home, sources, monkeypatch, replace_with_empty=True).success
    assert (
        _stored(lakehouse_home, "tickets_clean", "2026-03").is_empty()
        and _stored(lakehouse_home, "agent_labels", "2026-03").is_empty()
    )
    assert _stored(lakehouse_home, "tickets_clean", "2026-02").height == 60


def test_a_misnamed_file_is_refused_rather_than_read_as_an_absent_crm(lakehouse_home, export, monkeypatch):
    folder, sources = export
    (folder / "customers.csv").rename(folder / "customer.csv")
    result = _ingest(lakehouse_home, sources, monkeypatch)
    assert not result.success and "misnamed 'customers'" in _error(result)
    assert not (lakehouse_home / "lake").exists()


def test_generator_drills_do_not_apply_to_a_user_source(lakehouse_home, export, monkeypatch):
    _, sources = export
    result = _ingest(lakehouse_home, sources, monkeypatch, vague_rate=1.0)
    assert not result.success and "sources file" in _error(result)


def test_personal_data_left_after_scrubbing_fails_the_blocking_check_and_nothing_is_written(
    lakehouse_home, export, monkeypatch
):
    import lakehouse.triage.pipeline as pipeline

    _, sources = export
    assert _ingest(lakehouse_home, sources, monkeypatch).success
    before = _lake(lakehouse_home)
    # A scrubber that misses everything: the independent detector still finds the personal data.
    monkeypatch.setattr(pipeline, "prepare", lambda subject, body, *args: (subject, body, {}))
    result = _ingest(lakehouse_home, sources, monkeypatch)
    assert not result.success
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_pii_left")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and check.metadata["value"].value > 50
    assert _lake(lakehouse_home) == before


def test_a_month_outside_the_calendar_is_refused_naming_the_range_and_the_setting():
    from assets.common import PartitionOutOfRange, require_partitions
    from assets.triage.partitions import monthly
    from lakehouse.triage.settings import TriageSettings

    with pytest.raises(PartitionOutOfRange) as error:
        require_partitions(monthly, ["2025-06-01"], TriageSettings)
    assert "2026-01 .." in str(error.value) and "LAKEHOUSE_TRIAGE_CALENDAR__START" in str(error.value)


def test_a_month_range_before_the_calendar_gives_the_documented_message_not_a_check_error(lakehouse_home, export):
    from assets.triage.partitions import monthly
    from assets.triage.raw import triage_tickets
    from demos import range_tags
    from resources import LakehouseResource, SourcesResource

    june, july = (datetime(2025, m, 1).strftime(monthly.fmt) for m in (6, 7))  # the partitions' own key format
    result = dg.materialize(
        [triage_tickets],
        tags=range_tags(june, july),
        resources={"lakehouse": LakehouseResource(home=str(lakehouse_home)), "sources": SourcesResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert (error.cause or error).cls_name == "PartitionOutOfRange"
    message = (error.cause or error).message
    assert june in message and "outside the data calendar" in message and "CALENDAR__START" in message


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """An export loaded once into a home, and a function that loads a spoilt copy of it into that home."""
    from assets.triage.raw import triage_tickets
    from demos import range_tags
    from resources import LakehouseResource, SourcesResource

    world = WorldConfig(tickets_per_month=40, customers=30, categories=generic_categories(4))
    customers = generate_customers(world)
    tickets, labels = zip(
        *(generate_month(world, date.fromisoformat(f"{m}-01"), customers) for m in MONTHS), strict=True
    )
    tables = {"customers": customers, "tickets": pl.concat(tickets), "agent_labels": pl.concat(labels)}
    home = tmp_path_factory.mktemp("home")

    def load(tables: dict[str, pl.DataFrame]):
        folder = tmp_path_factory.mktemp("export")
        for name, frame in tables.items():
            frame.write_parquet(folder / f"{name}.parquet")
        sources = folder / "sources.yaml"
        sources.write_text(yaml.safe_dump({"triage": {"folder": str(folder)}}))
        before = lake_digest(home)
        result = dg.materialize(
            [triage_tickets],
            tags=range_tags(MONTHS[0], MONTHS[-1]),
            resources={"lakehouse": LakehouseResource(home=str(home)), "sources": SourcesResource(path=str(sources))},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        return result, lake_digest(home) == before

    assert load(tables)[0].success
    return tables, load


def _label_before_its_ticket(tables):
    created = tables["tickets"].filter(pl.col("ticket_id") == tables["agent_labels"]["ticket_id"][0])["created_at"][0]
    return set_value(tables["agent_labels"], "labelled_at", created - timedelta(hours=2))


PROBES = {
    **{f"id: {p}": ("tickets", "ticket_id", lambda t, p=p: spoil_id(t["tickets"], "ticket_id", p)) for p in ID_PROBES},
    "a ticket in 1800": (
        "tickets",
        "created_at",
        lambda t: set_value(t["tickets"], "created_at", datetime(1800, 1, 1)),
    ),
    "a label in 1800": (
        "agent_labels",
        "labelled_at",
        lambda t: set_value(t["agent_labels"], "labelled_at", datetime(1800, 1, 1)),
    ),
    "a label before its ticket": ("agent_labels", "labelled_at", _label_before_its_ticket),
    "an agent id with a zero-width space": (
        "agent_labels",
        "agent_id",
        lambda t: spoil_id(t["agent_labels"], "agent_id", "zero-width space"),
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_each_probe_is_refused_with_file_column_rows_and_the_lake_unchanged(loaded, probe):
    tables, load = loaded
    table, column, spoil = PROBES[probe]
    result, unchanged = load({**tables, table: spoil(tables)})
    assert not result.success
    assert_names_file_column_rows(_error(result), f"{table}.parquet", column)
    assert unchanged
