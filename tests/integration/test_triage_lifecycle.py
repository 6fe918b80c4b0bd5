"""A triage model's first steps on a small synthetic helpdesk: a first model the gate refuses leaves a green run and
a WARN alert, still routes in shadow (marked with its version, evaluated, never published, never served); the
next one that passes the gate becomes champion, its routes reach the teams and the endpoint answers with it."""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from tests.e2e.case import evaluation
from tests.integration.triage_helpers import ask_endpoint, tick_alerts

pytestmark = pytest.mark.integration
MONTHS = ("2026-01", "2026-02", "2026-03", "2026-04")
TRAINING = "key:triage/frozen_holdout or key:triage/training_set or key:triage/model or key:triage/champion_model"
ROUTING = "key:triage/ticket_routes or key:triage/published_routes or key:triage/monthly_confusion"
REPORTS = "key:triage/evaluation_report or key:triage/roi_report"


def _key(month: str) -> str:
    from assets.triage.partitions import monthly

    return next(k for k in monthly.get_partition_keys() if k.startswith(month))


@pytest.fixture
def graph(lakehouse_home, monkeypatch):
    from assets.triage import ASSETS, CHECKS
    from demos import range_tags
    from resources import LakehouseResource, default_resources

    monkeypatch.setenv("LAKEHOUSE_TRIAGE_TICKETS_PER_MONTH", "60")
    monkeypatch.setenv("LAKEHOUSE_TRIAGE_TRAINING__MAX_STEPS", "4")
    monkeypatch.delenv("LAKEHOUSE_SOURCES", raising=False)
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}

    def materialize(selection: str, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **kwargs,
        )

    assert materialize(
        "key:triage/tickets_clean or key:triage/agent_labels", tags=range_tags(_key(MONTHS[0]), _key(MONTHS[-1]))
    ).success
    return materialize, instance, resources


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_a_refused_first_model_routes_in_shadow_and_the_first_model_that_passes_serves(graph, monkeypatch):
    from lakehouse.common.alerts import read_alerts
    from lakehouse.triage.queues import read_assignments, read_queue
    from sensors.triage import retraining_run_config

    materialize, instance, resources = graph
    lakehouse = resources["lakehouse"]
    registry, lake, month = resources["mlflow"].registry(lakehouse), lakehouse.lake, MONTHS[-1]
    name = "triage_classifier"

    # A floor no model reaches: the first model is refused, the run stays green, nobody is champion.
    monkeypatch.setenv("LAKEHOUSE_TRIAGE_GATE__MIN_MACRO_F1", "0.999")
    first = materialize(TRAINING, run_config=retraining_run_config(date(2026, 4, 1)))
    gate = evaluation(first, "promotion_gate")
    assert first.success and not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["verdict"].value == "refused" and "macro-F1" in gate.description
    assert registry.alias_version(name, "champion") is None
    kept = instance.get_latest_materialization_event(dg.AssetKey(["triage", "champion_model"]))
    assert kept.asset_materialization.metadata["outcome"].value.startswith("no champion; v1 refused")

    # Its routes are written in shadow, evaluated, and published nowhere.
    routed = materialize(ROUTING, partition_key=_key(month))
    assert routed.success and _materialized(routed) == {"triage/ticket_routes", "triage/monthly_confusion"}
    routes = lake.read("triage", "ticket_routes", ("month", month))
    assert routes["shadow"].all() and (routes["model_version"] == "1").all()
    assert read_assignments(lakehouse.paths.ops_db).is_empty() and read_queue(lakehouse.paths.ops_db).is_empty()
    reports = materialize(REPORTS)
    assert reports.success and _materialized(reports) == {"triage/evaluation_report"}
    report = lake.read("triage", "evaluation_report").row(0, named=True)
    assert report["shadow"] == "1" and report["tickets"] == routes.height and 0 <= report["accuracy"] <= 1
    metadata = instance.get_latest_materialization_event(dg.AssetKey(["triage", "evaluation_report"]))
    assert "shadow" in metadata.asset_materialization.metadata["reading"].value

    # The refusal is a WARN alert; the endpoint has no champion to serve.
    tick_alerts(instance, resources)
    alerts = read_alerts(lakehouse.paths.ops_db).filter(pl.col("check_name") == "promotion_gate")
    assert alerts.height == 1 and alerts["severity"][0] == "WARN"
    assert ask_endpoint(lakehouse.paths)[0] == 503

    # A floor the same model meets (a 4-step training on 60 tickets a month scores macro-F1 about 0.66 on
    # validation, under the seed's 0.75): the next model passes, becomes champion, routes for the teams, and serves.
    monkeypatch.setenv("LAKEHOUSE_TRIAGE_GATE__MIN_MACRO_F1", "0.5")
    second = materialize(TRAINING, run_config=retraining_run_config(date(2026, 4, 1)))
    assert second.success and evaluation(second, "promotion_gate").passed
    assert registry.alias_version(name, "champion") == "2"
    assert materialize(ROUTING, partition_key=_key(month)).success
    routes = lake.read("triage", "ticket_routes", ("month", month))
    assert not routes["shadow"].any() and (routes["model_version"] == "2").all()
    published = pl.concat(
        [read_assignments(lakehouse.paths.ops_db), read_queue(lakehouse.paths.ops_db)], how="diagonal"
    )
    assert set(published["ticket_id"]) == set(routes["ticket_id"])
    status, answer = ask_endpoint(lakehouse.paths)
    assert status == 200 and answer["model_version"] == "2"
