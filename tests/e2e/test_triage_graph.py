"""The whole triage graph, end to end, on a small synthetic helpdesk with a small training budget;
then no PII anywhere, each monitoring check broken on purpose, a worse challenger refused (a green run and a
WARN alert), a better one promoted and served, any version evaluated on any month, the evaluation report, the
endpoint."""

import re
from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest

from lakehouse.common import promotion
from lakehouse.common.home import LakehouseHome
from lakehouse.common.registry import CHALLENGER, CHAMPION
from lakehouse.triage.model import AUTO, HUMAN
from lakehouse.triage.settings import TriageSettings
from lakehouse.triage.world import WorldConfig
from tests.e2e.case import Built, build, evaluation
from tests.integration.triage_helpers import ask_endpoint, tick_alerts

pytestmark = pytest.mark.e2e
TICKETS_PER_MONTH = 100
# A small training budget: a dozen steps from a probe on 25 tickets of each category.
ENV = {
    "LAKEHOUSE_TRIAGE_TICKETS_PER_MONTH": str(TICKETS_PER_MONTH),
    "LAKEHOUSE_TRIAGE_TRAINING__MAX_STEPS": "12",
    "LAKEHOUSE_TRIAGE_TRAINING__PROBE_PER_CATEGORY": "25",
}
SETTINGS = TriageSettings()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with build(tmp_path_factory, "triage", ENV) as case:
        yield case


def _months(built: Built, name: str) -> pl.DataFrame:
    return built.lake.read_partitions("triage", name, "month")


def test_two_models_went_through_the_gate_and_the_champion_is_a_loadable_pyfunc(built):
    assert built.outcome["first_training_success"] and built.outcome["retraining_success"]
    registry = built.registry()
    name = SETTINGS.registered_model_name
    assert registry.alias_version(name, CHAMPION) == registry.alias_version(name, CHALLENGER) == "2"
    metrics = registry.version_metrics(name, "2")
    assert (
        metrics["macro_f1"] >= SETTINGS.gate.min_macro_f1
        and metrics["auto_precision"] >= SETTINGS.gate.min_auto_precision
    )
    # v2 was compared with v1 on the frozen hold-out tickets neither learnt from, with an interval.
    tags = registry.client.get_model_version(name, "2").tags
    comparison = promotion.Verdict.from_json(tags[promotion.GATE_VERDICT_TAG]).comparisons[0]
    assert comparison.against == "champion v1" and comparison.decisive and not comparison.worse
    assert comparison.challenger == metrics["comparison_accuracy"] and comparison.support > 30
    assert promotion.recorded_verdict(registry, name, "2")[0] == "passed"
    import mlflow
    import pandas as pd

    registry.activate()
    model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    out = model.predict(
        pd.DataFrame(
            {
                "text": [
                    "Where is my parcel?. The tracking has not moved for 9 days.",
                    "Charged twice. Two payments of 49.99 EUR on my card.",
                ]
            }
        )
    )
    assert list(out.columns) == ["category", "confidence", "out_of_scope"]
    assert out["category"].tolist() == ["delivery_problem", "billing"]
    training = built.lake.read("triage", "training_set")
    assert training["created_at"].max().date() < date(2026, 10, 1)


def test_routes_follow_the_threshold_and_reach_the_teams_and_the_queue(built):
    from lakehouse.triage.queues import read_assignments, read_queue

    routes = _months(built, "ticket_routes")
    assert routes["month"].unique().sort().to_list() == [k[:7] for k in built.outcome["live_months"]]
    assert (routes["auto_threshold"] >= SETTINGS.confidence_threshold).all()
    assert (
        (routes["confidence"] > routes["auto_threshold"]) & ~routes["out_of_scope"] == (routes["route"] == AUTO)
    ).all()
    auto = routes.filter(pl.col("route") == AUTO)
    assert (auto["team"] == auto["category"].replace_strict(SETTINGS.teams)).all() and routes.filter(
        pl.col("route") == HUMAN
    )["team"].is_null().all()
    assignments, queue = read_assignments(built.home / "ops.sqlite"), read_queue(built.home / "ops.sqlite")
    assert set(assignments["ticket_id"]) == set(routes.filter(pl.col("route") == AUTO)["ticket_id"])
    assert set(queue["ticket_id"]) == set(routes.filter(pl.col("route") == HUMAN)["ticket_id"])
    assert (queue["status"] == "validated").all() and queue["validated_category"].is_not_null().all()
    # Validated labels of the live months fed the retraining.
    training = built.lake.read("triage", "training_set")
    assert set(queue["ticket_id"]) & set(training["ticket_id"])


def test_confusion_matrix_evaluation_and_roi_reports(built):
    last = built.outcome["live_months"][-1][:7]
    matrix = built.lake.read("triage", "monthly_confusion", ("month", last))
    assert matrix.height >= 10 and matrix.drop("agent_category").to_numpy().sum() == TICKETS_PER_MONTH
    assert (built.home / "reports" / f"triage_confusion_{last}.png").read_bytes()[:4] == b"\x89PNG"
    routes = _months(built, "ticket_routes")
    roi = built.lake.read("triage", "roi_report").row(0, named=True)
    assert (
        roi["tickets"] == routes.height and roi["currency"] == "EUR" and "agent_annual_cost" in roi["default_figures"]
    )
    assert roi["auto_triage_rate"] == pytest.approx((routes["route"] == AUTO).mean())
    assert roi["roi_multiple"] == pytest.approx(roi["annual_value"] / roi["system_annual_cost"])
    # The evaluation report covers the months `evaluation` picks: by default the last three routed.
    report = built.lake.read("triage", "evaluation_report").row(0, named=True)
    assert report["months"].split(",") == [k[:7] for k in built.outcome["live_months"][-3:]]
    assert report["tickets"] == 3 * TICKETS_PER_MONTH and 0.5 < report["accuracy"] <= 1


def _raw_month(key: str):
    from lakehouse.triage.world import generate_customers, generate_month

    world = WorldConfig.from_env()
    customers = generate_customers(world)
    tickets, _ = generate_month(world, date.fromisoformat(f"{key}-01"), customers)
    return tickets, customers


def _pii_values(built: Built) -> set[str]:
    """Every piece of personal data the generator put into the raw tickets or the CRM."""
    import re as regex

    values: set[str] = set()
    for key in built.outcome["months"]:
        tickets, customers = _raw_month(key)
        for text in tickets["body"]:
            values |= set(regex.findall(r"\d{4} \d{4} \d{4} \d{4}", text))  # the generator's card numbers
            values |= set(regex.findall(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){3,7}(?: [A-Z0-9]{1,4})?", text))  # and IBANs
    for c in customers.iter_rows(named=True):
        values |= {c["email"], c["phone"], c["street"], f"{c['first_name']} {c['last_name']}", c["last_name"]}
    return values | {v.replace(" ", "") for v in values if re.fullmatch(r"[\d A-Z]+", v)}


def _persisted_texts(built: Built) -> dict[str, str]:
    """Every table of the lake, the warehouse and the ops database, and every MLflow artifact, as text."""
    texts = {}
    for path in (built.home / "lake").rglob("*.parquet"):
        df = pl.read_parquet(path)
        texts[str(path)] = "\n".join(str(v) for col in df.columns for v in df[col].cast(pl.String).to_list())
    if (built.home / "warehouse.duckdb").exists():
        with duckdb.connect(str(built.home / "warehouse.duckdb"), read_only=True) as con:
            for (table,) in con.sql("select table_name from information_schema.tables").fetchall():
                texts[f"warehouse:{table}"] = str(con.sql(f'select * from "{table}"').fetchall())
    import sqlite3

    with sqlite3.connect(built.home / "ops.sqlite") as con:
        for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
            texts[f"ops:{table}"] = str(con.execute(f'select * from "{table}"').fetchall())
    for path in (built.home / "mlflow").rglob("*"):
        # Weights are tensors of numbers (safetensors, ONNX, the head's npz); every other file (config, tokenizer,
        # example, metadata) is read.
        if path.is_file() and path.suffix not in (".safetensors", ".onnx", ".npz"):
            texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    return texts


def test_no_personal_data_in_any_persisted_table_training_set_or_model_artifact(built):
    values = _pii_values(built)
    texts = _persisted_texts(built)
    assert any(p.endswith("input_example.json") for p in texts) and any("training_set" in p for p in texts)
    assert len(values) > 500
    everything = "\n".join(texts.values())
    leaks = [v for v in values if v in everything]
    assert not leaks, [(where, v) for v in leaks[:5] for where, text in texts.items() if v in text]
    # The scan does find personal data where it exists: the raw export itself.
    raw, _ = _raw_month(built.outcome["months"][0])
    assert any(v in "\n".join(raw["body"]) for v in values)


def test_monitoring_checks_fail_on_purpose_and_raise_alerts(built):
    from assets.triage.raw import TicketsConfig
    from lakehouse.common.alerts import read_alerts

    month = built.outcome["live_months"][-1]
    n = len(WorldConfig().categories)
    drills = {
        # Vague tickets: low confidence, most of them sent to humans.
        "vague": (TicketsConfig(vague_rate=1.0), {"mean_confidence", "human_validation_rate"}),
        # One category takes over the month.
        "mix": (TicketsConfig(category_weights=[20.0] + [1.0] * (n - 1)), {"category_mix_drift"}),
        # Agents' labels mostly disagree with the model (a bigger month, so every category has enough tickets to judge).
        "labels": (TicketsConfig(tickets_per_month=600, mislabel_rate=0.9), {"category_recall"}),
    }
    failed = {}
    for name, (config, expected) in drills.items():
        assert built.materialize(
            "key:triage/tickets_clean or key:triage/agent_labels",
            partition_key=month,
            run_config=dg.RunConfig(ops={"triage_tickets": config}),
        ).success
        result = built.materialize("key:triage/ticket_routes or key:triage/monthly_confusion", partition_key=month)
        failed[name] = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
        assert expected <= failed[name], (name, failed[name])
    assert "category_mix_drift" not in failed["labels"] and "category_recall" not in failed["mix"]
    recall = evaluation(result, "category_recall")
    assert (
        recall.severity == dg.AssetCheckSeverity.WARN
        and recall.metadata["value"].value < SETTINGS.monitoring.min_category_recall
    )
    tick_alerts(built.instance, built.resources)
    alerts = read_alerts(built.home / "ops.sqlite")
    assert {"mean_confidence", "human_validation_rate", "category_mix_drift", "category_recall"} <= set(
        alerts["check_name"]
    )
    drift = alerts.filter(pl.col("check_name") == "category_mix_drift").row(0, named=True)
    assert (
        drift["case_name"] == "triage"
        and drift["partition"] == month
        and drift["value"] > SETTINGS.monitoring.max_mix_psi
    )
    # Back to the real month so the following tests see the demo's data.
    assert built.materialize("key:triage/tickets_clean or key:triage/agent_labels", partition_key=month).success


RETRAINING = {"ops": {"triage__training_set": {"config": {"as_of": "2026-10-01"}}}}
RETRAIN = "key:triage/training_set or key:triage/model or key:triage/champion_model"
# A model that learns from 40 tickets for one step: far worse than the champion.
TINY = {"LAKEHOUSE_TRIAGE_TRAINING__TICKETS": "40", "LAKEHOUSE_TRIAGE_TRAINING__MAX_STEPS": "1"}


def _private(built: Built, tmp_path, monkeypatch) -> Built:
    """A copy of the built home for a test that trains: MLflow's fluent API points MLFLOW_TRACKING_URI at the store
    it logs to, which is the copy's until the test ends, then the module's again."""
    copy = built.copy(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", LakehouseHome(copy.home).mlflow_uri)
    return copy


def _comparison(metadata) -> dict:
    """The one comparison row of a gate's (or an evaluation's) metadata table."""
    (row,) = metadata["comparisons" if "comparisons" in metadata else "comparison"].value.records
    return row.data


def test_a_worse_challenger_is_refused_the_run_stays_green_and_a_warn_alert_is_raised(built, tmp_path, monkeypatch):
    from lakehouse.common.alerts import read_alerts

    copy = _private(built, tmp_path, monkeypatch)
    for name, value in TINY.items():
        monkeypatch.setenv(name, value)
    result = copy.materialize(RETRAIN, run_config=RETRAINING)
    gate = evaluation(result, "promotion_gate")
    assert result.success and not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    registry = copy.registry()
    assert registry.alias_version(SETTINGS.registered_model_name, CHALLENGER) == "3"
    assert registry.alias_version(SETTINGS.registered_model_name, CHAMPION) == "2"
    # Worse beyond noise on the same hold-out tickets: both figures and the interval, in the gate's metadata...
    row = _comparison(gate.metadata)
    assert row["against"] == "champion v2" and row["status"] == "worse beyond noise"
    assert float(row["challenger"]) < float(row["other"]) and float(row["high"]) < -SETTINGS.gate.comparison.tolerance
    # ... the model's (both models' figures on those tickets) and the champion asset's (the verdict).
    model = copy.instance.get_latest_materialization_event(dg.AssetKey(["triage", "model"])).asset_materialization
    sets = [r.data["set"] for r in model.metadata["metrics"].value.records]
    assert sets[-2:] == ["v3 on the comparison tickets", "champion v2 on the same tickets"]
    assert model.metadata["gate_verdict"].value == "refused" and "comparison" in model.metadata
    kept = copy.instance.get_latest_materialization_event(dg.AssetKey(["triage", "champion_model"]))
    assert kept.asset_materialization.metadata["outcome"].value.startswith("kept v2; v3 refused")
    tick_alerts(copy.instance, copy.resources)
    alerts = read_alerts(copy.home / "ops.sqlite").filter(pl.col("check_name") == "promotion_gate")
    assert alerts.height == 1 and alerts["severity"][0] == "WARN" and "kept v2" in alerts["description"][0]


def test_a_better_challenger_is_promoted_the_endpoint_follows_and_any_version_is_evaluated(
    built, tmp_path, monkeypatch
):
    copy = _private(built, tmp_path, monkeypatch)
    # A weak champion first: the tiny model, let through with the floors and the tolerance opened.
    opened = {
        **TINY,
        "LAKEHOUSE_TRIAGE_CONFIDENCE_THRESHOLD": "0.05",
        "LAKEHOUSE_TRIAGE_GATE__MIN_MACRO_F1": "0",
        "LAKEHOUSE_TRIAGE_GATE__MIN_AUTO_PRECISION": "0",
        "LAKEHOUSE_TRIAGE_GATE__COMPARISON__TOLERANCE": "1",
    }
    for name, value in opened.items():
        monkeypatch.setenv(name, value)
    assert copy.materialize(RETRAIN, run_config=RETRAINING).success
    registry = copy.registry()
    assert registry.alias_version(SETTINGS.registered_model_name, CHAMPION) == "3"
    for name in opened:
        monkeypatch.delenv(name)
    result = copy.materialize(RETRAIN, run_config=RETRAINING)
    gate = evaluation(result, "promotion_gate")
    assert result.success and gate.passed
    row = _comparison(gate.metadata)
    assert row["against"] == "champion v3" and row["status"] == "better beyond noise" and float(row["low"]) > 0
    assert registry.alias_version(SETTINGS.registered_model_name, CHAMPION) == "4"
    status, answer = ask_endpoint(LakehouseHome(copy.home))
    assert status == 200 and answer["model_version"] == "4"
    # Any version on any month, by run config, promoting nothing: the weak v3 against v4 on October's tickets.
    config = {"version": "3", "against": "4", "months": ["2026-10"]}
    evaluated = copy.materialize(
        "key:triage/model_evaluation", run_config={"ops": {"triage__model_evaluation": {"config": config}}}
    )
    assert evaluated.success and registry.alias_version(SETTINGS.registered_model_name, CHAMPION) == "4"
    figures = copy.lake.read("triage", "model_evaluation")
    assert figures["model_version"].to_list() == ["3", "4"] and (figures["tickets"] == TICKETS_PER_MONTH).all()
    event = copy.instance.get_latest_materialization_event(dg.AssetKey(["triage", "model_evaluation"]))
    row = _comparison(event.asset_materialization.metadata)
    assert row["against"] == "v4" and row["status"] == "worse beyond noise"


def test_the_endpoint_triages_a_raw_ticket_with_the_champion(built):
    from fastapi.testclient import TestClient

    from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

    home = LakehouseHome(built.home)
    settings = ServingSettings(api_key="k", home=home, mlflow_uri=home.mlflow_uri, cases=("triage",))
    ticket = {
        "subject": "Charged twice",
        "body": "<p>Hello,</p><p>I was billed twice for order ORD-12345678, 89.90 EUR taken two times from card "
        "4111 1111 1111 1111. Call me on +44 7911 123456.</p><p>Best regards,</p><p>Gwendolyn Hargreaves</p>",
        "sender_first_name": "Gwendolyn",
        "sender_last_name": "Hargreaves",
        "sender_email": "gwen@example.org",
    }
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").json()["cases"]["triage"] == {"ready": True, "model_version": "2"}
        assert client.post("/triage/tickets", json=ticket).status_code == 401
        response = client.post("/triage/tickets", json=ticket, headers={API_KEY_HEADER: "k"})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["category"] == "billing" and out["model_version"] == "2"
    assert out["auto_threshold"] >= SETTINGS.confidence_threshold
    assert out["route"] == (AUTO if out["confidence"] > out["auto_threshold"] else HUMAN) and out["reason"] in (
        "confident",
        "low_confidence",
    )
    assert out["team"] == ("finance" if out["route"] == AUTO else None)
    assert (
        "4111" not in out["text"]
        and "7911" not in out["text"]
        and "Gwendolyn" not in out["text"]
        and "<p>" not in out["text"]
    )
    assert "[CARD]" in out["text"] and "[PHONE]" in out["text"] and out["pii_found"]["card"] == 1
