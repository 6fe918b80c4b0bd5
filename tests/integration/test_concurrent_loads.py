"""Two runs loading the same partitions from different files: the later one to write is refused, naming the run
that wrote first, and the lake keeps that run's rows; a run started after a write replaces it as a reload."""

import threading
from datetime import date

import dagster as dg
import polars as pl
import pytest
import yaml

from lakehouse.triage.world import WorldConfig, generate_customers, generate_month, generic_categories

pytestmark = pytest.mark.integration
FIRST_DAY = date(2026, 2, 1)


def _key() -> str:
    """The month's partition key, in the format of the case's monthly partitions."""
    from assets.triage.partitions import monthly

    return FIRST_DAY.strftime(monthly.fmt)


def _export(folder, seed: int):
    world = WorldConfig(tickets_per_month=30, customers=20, categories=generic_categories(4), seed=seed)
    customers = generate_customers(world)
    tickets, labels = generate_month(world, FIRST_DAY, customers)
    folder.mkdir()
    customers.write_csv(folder / "customers.csv")
    tickets.write_parquet(folder / "tickets.parquet")
    labels.write_csv(folder / "agent_labels.csv")
    sources = folder.parent / f"{folder.name}.yaml"
    sources.write_text(yaml.safe_dump({"triage": {"folder": str(folder)}}))
    return sources, tickets


def _load(home, sources):
    from assets.triage.raw import triage_tickets
    from demos import range_tags
    from resources import LakehouseResource, SourcesResource

    return dg.materialize(
        [triage_tickets],
        tags=range_tags(_key(), _key()),
        resources={"lakehouse": LakehouseResource(home=str(home)), "sources": SourcesResource(path=str(sources))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_two_loads_of_one_partition_from_different_files_do_not_both_succeed(lakehouse_home, tmp_path, monkeypatch):
    import assets.triage.raw as raw

    first_sources, first_tickets = _export(tmp_path / "first", seed=1)
    second_sources, _ = _export(tmp_path / "second", seed=2)
    reading, release = threading.Event(), threading.Event()
    original = raw.load_source

    def slow_for_the_second(source, today):
        if source.folder.name == "second":  # the second run has started and read its file, and now waits
            reading.set()
            assert release.wait(120)
        return original(source, today)

    monkeypatch.setattr(raw, "load_source", slow_for_the_second)
    results = {}
    second = threading.Thread(target=lambda: results.setdefault("second", _load(lakehouse_home, second_sources)))
    second.start()
    assert reading.wait(120)
    results["first"] = _load(lakehouse_home, first_sources)  # writes the month while the second is loading
    release.set()
    second.join(180)

    assert results["first"].success and not results["second"].success
    failure = next(e for e in results["second"].all_events if e.is_step_failure).step_failure_data.error
    message = (failure.cause or failure).message
    assert "month=2026-02" in message and f"run {results['first'].run_id}" in message, message
    stored = pl.read_parquet(lakehouse_home / "lake" / "triage" / "tickets_clean" / "month=2026-02" / "data.parquet")
    assert sorted(stored["ticket_id"]) == sorted(first_tickets["ticket_id"])

    assert _load(lakehouse_home, second_sources).success  # afterwards, a load replaces the month as usual
