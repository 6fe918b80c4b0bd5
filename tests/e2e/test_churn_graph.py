"""The whole churn graph, end to end, on a small synthetic world; then each monitoring
check is broken on purpose, the alert sensor is exercised against a real webhook, and the
model lifecycle is played through: a challenger below the floors or worse than the champion on
the same rows is refused in a green run with a WARN alert, a better one is promoted and scoring
follows it, and a refused first model scores in shadow with its reports."""

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

import demos.churn
from demos import range_tags
from lakehouse.churn.settings import ChurnSettings
from lakehouse.churn.world import WorldConfig
from lakehouse.common import promotion
from lakehouse.common.registry import CHALLENGER, CHAMPION
from tests.e2e.case import build, evaluation
from tests.loopback import UPSERT_SUFFIX, serve

pytestmark = pytest.mark.e2e
CUSTOMERS = 1000
SETTINGS = ChurnSettings()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with build(tmp_path_factory, "churn", {"LAKEHOUSE_SCALE": str(CUSTOMERS)}, WorldConfig().end_date) as case:
        yield case


def test_model_passes_the_gate_and_becomes_champion(built):
    registry = built.registry()
    name = SETTINGS.registered_model_name
    assert built.outcome["training_success"] and built.outcome["failed_steps"] == []
    assert registry.alias_version(name, CHAMPION) == registry.alias_version(name, CHALLENGER) == "1"
    metrics = registry.version_metrics(name, "1")
    assert metrics["auc_pr"] > SETTINGS.gate.min_auc_pr and metrics["recall_top20"] > SETTINGS.gate.min_recall_top
    tags = registry.client.get_model_version(name, "1").tags
    assert tags[promotion.GATE_TAG] == "passed" and date.fromisoformat(tags[promotion.TRAINED_UNTIL_TAG])
    run = registry.client.get_run(registry.client.get_model_version(name, "1").run_id)
    assert {"auc_roc", "auc_pr", "recall_top20"} <= set(run.data.metrics)
    assert "split_test_start" in run.data.params
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id)}
    assert {"features.json", "shap_importance.json"} <= artifacts
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{name}@{CHAMPION}")
    assert info.signature is not None and "usage_trend" in info.signature.inputs.input_names()


def test_weekly_scores_cover_every_active_customer_with_tier_action_and_reasons(built):
    lake = built.lake
    scores = lake.read("churn", "churn_scores", ("snapshot_date", built.outcome["latest_week"]))
    with duckdb.connect(str(built.home / "warehouse.duckdb"), read_only=True) as con:
        active = con.sql(
            f"select count(*) from churn_features where snapshot_date = '{built.outcome['latest_week']}'"
        ).fetchall()[0][0]
    assert scores.height == active > 0.8 * CUSTOMERS
    assert scores["customer_id"].is_unique().all()
    for tier in SETTINGS.tiers:
        rows = scores.filter(pl.col("risk_tier") == tier.name)
        assert (rows["score"] >= tier.min_score).all() and (rows["action"] == tier.action).all()
    assert not scores["shadow"].any() and set(scores["model_version"]) == {"1"}
    high = scores.filter(pl.col("risk_tier") == "high")
    assert high.height > 0 and (high["top_reasons"].str.len_chars() > 0).all()
    partitions = sorted(p.name for p in Path(lake.table_url("churn", "churn_scores")).iterdir())
    assert len(partitions) == demos.churn.SCORED_WEEKS


def test_crm_outbox_holds_the_latest_scores_and_a_rerun_is_idempotent(built):
    from lakehouse.churn.crm import OutboxCrm

    outbox = OutboxCrm(built.home / "ops.sqlite")
    before = outbox.read().sort("external_id")
    latest = built.lake.read("churn", "churn_scores", ("snapshot_date", built.outcome["latest_week"]))
    assert before.height == latest.height
    assert built.materialize("key:churn/crm_push", partition_key=built.outcome["latest_week"]).success
    after = outbox.read().sort("external_id")
    assert after.drop("updated_at").equals(before.drop("updated_at"))


def test_roi_report_recovers_the_true_contact_effect(built):
    from lakehouse.churn.roi import assign_arms, enrol_cohort

    report = built.lake.read("churn", "ab_test_roi").row(0, named=True)
    scored = pl.concat(
        [
            built.lake.read("churn", "churn_scores", ("snapshot_date", p.name.split("=")[1]))
            for p in Path(built.lake.table_url("churn", "churn_scores")).iterdir()
        ]
    )
    with duckdb.connect(str(built.home / "warehouse.duckdb"), read_only=True) as con:
        labels = con.sql("select snapshot_date, customer_id, churned_90d from churn_labels").pl()
    event = built.instance.get_latest_materialization_event(dg.AssetKey(["churn", "ab_test_roi"]))
    start = pl.Series([event.asset_materialization.metadata["experiment_start"].value]).str.to_date().item()
    cohort = enrol_cohort(
        scored.join(labels, on=["snapshot_date", "customer_id"]),
        threshold=SETTINGS.ab.high_risk_threshold,
        first_week=start,
        weeks=SETTINGS.ab.enrolment_weeks,
    )
    treated = cohort.filter(assign_arms(cohort["customer_id"], SETTINGS.ab.salt) == "treatment")
    true_reduction_90d = WorldConfig().true_contact_effect * treated["churned_90d"].mean()
    assert report["ci_low_90d"] <= true_reduction_90d <= report["ci_high_90d"]
    cost = SETTINGS.economics.model_cost_per_month
    assert report["roi"] == pytest.approx((report["value_per_month"] - cost) / cost)
    assert (built.home / "reports" / "churn_ab_test.png").read_bytes()[:4] == b"\x89PNG"


def test_live_performance_on_matured_labels(built):
    perf = built.lake.read("churn", "live_performance")
    assert perf.height >= 2 and (perf["auc_pr"] > SETTINGS.min_live_auc_pr).all()


def test_crm_push_to_a_rest_endpoint_survives_a_failing_then_recovering_server(built):
    from resources import CrmResource

    week = built.outcome["latest_week"]
    with serve() as crm:
        crm.script = [(503, {}), (429, {"Retry-After": "0"}), (500, {})]
        resources = {
            **built.resources,
            "crm": CrmResource(
                target="rest", base_url=f"{crm.url}/services/data/v60.0", token="test-token", batch_size=150
            ),
        }
        for _ in range(2):  # a re-run upserts the same records again: idempotent on the CRM side
            assert built.materialize("key:churn/crm_push", partition_key=week, resources=resources).success
    latest = built.lake.read("churn", "churn_scores", ("snapshot_date", week))
    assert all(r["method"] == "PATCH" and r["headers"]["Authorization"] == "Bearer test-token" for r in crm.requests)
    assert all(r["path"].endswith(UPSERT_SUFFIX) for r in crm.requests)
    assert len(crm.requests) == 3 + 2 * -(-latest.height // 150)  # three failures, then batches of 150 twice
    assert set(crm.accounts) == set(latest["customer_id"]) and set(crm.applied.values()) == {2}


def test_parallel_partition_runs_share_the_warehouse_without_lock_errors(built, tmp_path):
    """A dbt feature rebuild (the DuckDB writer) and two scoring runs (readers) launched at
    once in separate processes: the `duckdb` pool of one serializes them."""
    import subprocess
    import sys

    built = built.copy(tmp_path)
    weeks = built.outcome["feature_keys"][-3:]
    script = (
        "import sys, dagster as dg, definitions, assets.churn\n"
        "from resources import LakehouseResource, default_resources\n"
        "key, week = sys.argv[1], sys.argv[2]\n"
        "res = {**default_resources(), 'lakehouse': LakehouseResource(home=sys.argv[3])}\n"
        "r = dg.materialize(list(assets.churn.ASSETS), selection=key, partition_key=week,\n"
        "    instance=dg.DagsterInstance.from_config(sys.argv[3] + '/dagster'), resources=res, raise_on_error=False)\n"
        "sys.exit(0 if r.success else 1)\n"
    )
    jobs = [
        ("key:churn/churn_features", weeks[0]),
        ("key:churn/churn_scores", weeks[1]),
        ("key:churn/churn_scores", weeks[2]),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, key, week, str(built.home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key, week in jobs
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
        assert "Could not set lock" not in out
    # They were serialized by the pool, not lucky: the runs that started while another held
    # the warehouse waited for the slot.
    waits = [
        e
        for run in built.instance.get_runs(limit=3)
        for e in built.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if "blocked by limit for pool duckdb" in (e.message or "")
    ]
    assert waits


def test_the_monday_scoring_job_runs_as_scheduled(built, tmp_path):
    """The job the Monday 06:00 schedule launches: ingest, staging, this week's features, scores."""
    import definitions

    built = built.copy(tmp_path)
    week = built.outcome["latest_week"]
    before = built.lake.read("churn", "churn_scores", ("snapshot_date", week)).sort("customer_id")
    job = definitions.defs().resolve_job_def("churn_weekly_scoring")
    result = job.execute_in_process(partition_key=week, instance=built.instance, resources=built.resources)
    assert result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert {"customers", "stg_churn__usage_weekly", "churn_features", "churn_scores"} <= materialized
    after = built.lake.read("churn", "churn_scores", ("snapshot_date", week))
    assert after.equals(before)  # same seed, same world, same scores


# --- monitoring checks, each made to fail on purpose -------------------------------------


def test_prediction_volume_check_fails_when_the_base_is_far_from_the_configured_size(built, tmp_path, monkeypatch):
    built = built.copy(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CHURN_CUSTOMER_BASE", str(CUSTOMERS * 5))
    result = built.materialize("key:churn/churn_scores", partition_key=built.outcome["latest_week"])
    check = evaluation(result, "prediction_volume")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def _shift_reference(built) -> dg.ExecuteInProcessResult:
    """Scoring against a reference week the scores do not look like: the score-shift check fails."""
    key = ("model_version", "1")
    reference = built.lake.read("churn", "reference_scores", key)
    built.lake.write(reference.with_columns(score=pl.col("score") * 0 + 0.95), "churn", "reference_scores", key)
    return built.materialize("key:churn/churn_scores", partition_key=built.outcome["latest_week"])


def test_score_shift_check_fails_when_scores_drift_from_the_reference(built, tmp_path):
    result = _shift_reference(built.copy(tmp_path))
    check = evaluation(result, "score_shift")
    assert not check.passed and check.metadata["value"].value > SETTINGS.max_score_shift_ks


def test_live_auc_pr_check_fails_when_published_scores_lose_their_signal(built, tmp_path):
    built = built.copy(tmp_path)
    lake = built.lake
    root = Path(lake.table_url("churn", "churn_scores"))
    rng = np.random.default_rng(0)
    for part in root.iterdir():
        key = ("snapshot_date", part.name.split("=")[1])
        scores = lake.read("churn", "churn_scores", key)
        lake.write(scores.with_columns(score=pl.Series(rng.random(scores.height))), "churn", "churn_scores", key)
    result = built.materialize("key:churn/live_performance")
    check = evaluation(result, "live_auc_pr")
    assert not check.passed and check.metadata["value"].value < SETTINGS.min_live_auc_pr


def test_alert_sensor_records_each_failed_evaluation_once_and_posts_slack_json(built, tmp_path, monkeypatch):
    import definitions
    from resources import AlertSinkResource
    from sensors.alerts import asset_check_alerts

    built = built.copy(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CHURN_CUSTOMER_BASE", str(CUSTOMERS * 5))
    assert not evaluation(_shift_reference(built), "score_shift").passed  # and prediction_volume fails too

    with serve() as webhook:
        resources = {**built.resources, "alerts": AlertSinkResource(webhook_url=f"{webhook.url}/hook")}
        for _ in range(2):
            context = dg.build_sensor_context(
                instance=built.instance, resources=resources, definitions=definitions.defs()
            )
            asset_check_alerts(context)
        posts = list(webhook.requests)
    from lakehouse.common.alerts import read_alerts

    alerts = read_alerts(built.home / "ops.sqlite")
    assert {"prediction_volume", "score_shift"} <= set(alerts["check_name"])
    assert alerts["evaluation_id"].is_unique().all()
    volume = alerts.filter(pl.col("check_name") == "prediction_volume").row(0, named=True)
    assert volume["case_name"] == "churn" and volume["asset_key"] == "churn/churn_scores"
    assert volume["partition"] == built.outcome["latest_week"] and volume["severity"] == "WARN"
    assert volume["value"] is not None and volume["threshold"].startswith("[")
    assert len(posts) == alerts.height  # the second tick found nothing new
    assert all("text" in p["body"] and "blocks" in p["body"] for p in posts)


# --- the model lifecycle ------------------------------------------------------------------

TRAINING = "key:churn/model or key:churn/champion_model or key:churn/model_evaluation"
STUMP = '{"objective": "binary", "num_leaves": 2, "min_data_in_leaf": 50, "verbosity": -1, "num_threads": 2}'


def _alerts(built) -> pl.DataFrame:
    """One tick of the alert sensor over every finished run, and the alerts table it wrote."""
    import definitions
    from lakehouse.common.alerts import read_alerts
    from sensors.alerts import asset_check_alerts

    context = dg.build_sensor_context(
        instance=built.instance, resources=built.resources, definitions=definitions.defs()
    )
    asset_check_alerts(context)
    return read_alerts(built.home / "ops.sqlite")


def _stump(monkeypatch):
    """Training settings that give a one-split model: far worse than the demo's on every row."""
    monkeypatch.setenv("LAKEHOUSE_CHURN_NUM_BOOST_ROUND", "1")
    monkeypatch.setenv("LAKEHOUSE_CHURN_LGBM_PARAMS", STUMP)


def _fresh_registry(built, tmp_path):
    """A copy of the built home with no model at all (the lake and the warehouse kept, no scores)."""
    import shutil

    built = built.copy(tmp_path)
    shutil.rmtree(built.home / "mlflow")
    for table in ("churn_scores", "reference_scores", "live_performance", "ab_test_roi"):
        shutil.rmtree(Path(built.lake.table_url("churn", table)), ignore_errors=True)
    return built


def _gate(result) -> dg.AssetCheckEvaluation:
    return evaluation(result, "go_no_go_gate")


def test_a_model_below_the_floors_is_refused_in_a_green_run_and_the_champion_stays(built, tmp_path, monkeypatch):
    built = built.copy(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0.99")  # no model of this world reaches it
    result = built.materialize(TRAINING)
    gate = _gate(result)
    assert result.success and not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    registry = built.registry()
    name = SETTINGS.registered_model_name
    assert registry.alias_version(name, CHALLENGER) == "2" and registry.alias_version(name, CHAMPION) == "1"
    assert promotion.recorded_verdict(registry, name, "2")[0] == "failed"
    assert gate.description.startswith("kept v1; v2 refused") and "AUC-PR" in gate.description
    champion = built.instance.get_latest_materialization_event(dg.AssetKey(["churn", "champion_model"]))
    assert champion.asset_materialization.metadata["outcome"].value.startswith("kept v1; v2 refused")
    alerts = _alerts(built)
    assert alerts.filter((pl.col("check_name") == "go_no_go_gate") & (pl.col("severity") == "WARN")).height == 1


def test_a_challenger_worse_than_the_champion_on_the_same_rows_is_refused(built, tmp_path, monkeypatch):
    built = built.copy(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0")  # the floors pass: the comparison decides
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_RECALL_TOP", "0")
    _stump(monkeypatch)
    result = built.materialize(TRAINING)
    gate = _gate(result)
    assert result.success and not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert built.registry().alias_version(SETTINGS.registered_model_name, CHAMPION) == "1"
    (row,) = gate.metadata["comparisons"].value.records
    figures = row.data
    assert figures["against"] == "champion v1" and figures["status"] == "worse beyond noise"
    assert float(figures["challenger"]) < float(figures["other"]) and float(figures["high"]) < 0
    report = built.instance.get_latest_materialization_event(dg.AssetKey(["churn", "model_evaluation"]))
    metadata = report.asset_materialization.metadata
    (against,) = metadata["against_champion"].value.records
    assert float(against.data["this_version"]) < float(against.data["champion"]) and float(against.data["high"]) < 0
    assert metadata["model_version"].value == "2" and "champion v1" in metadata["chart"].value
    alerts = _alerts(built)
    refusal = alerts.filter(pl.col("check_name") == "go_no_go_gate").row(0, named=True)
    assert refusal["severity"] == "WARN" and "worse beyond noise" in refusal["description"]


def test_a_challenger_better_beyond_noise_is_promoted_and_scoring_follows_it(built, tmp_path, monkeypatch):
    built = _fresh_registry(built, tmp_path)
    week = built.outcome["latest_week"]
    with monkeypatch.context() as weak:
        weak.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0")
        weak.setenv("LAKEHOUSE_CHURN_GATE__MIN_RECALL_TOP", "0")
        _stump(weak)
        assert built.materialize(TRAINING).success  # a weak first model passes floors of 0: champion v1
    assert built.materialize("key:churn/churn_scores", partition_key=week).success
    first = built.lake.read("churn", "churn_scores", ("snapshot_date", week))
    assert set(first["model_version"]) == {"1"} and not first["shadow"].any()

    result = built.materialize(TRAINING)
    gate = _gate(result)
    assert result.success and gate.passed
    (row,) = gate.metadata["comparisons"].value.records
    assert row.data["status"] == "better beyond noise" and float(row.data["low"]) > 0
    assert built.registry().alias_version(SETTINGS.registered_model_name, CHAMPION) == "2"
    assert built.materialize("key:churn/churn_scores", partition_key=week).success
    scores = built.lake.read("churn", "churn_scores", ("snapshot_date", week))
    assert set(scores["model_version"]) == {"2"} and not scores["shadow"].any()
    assert built.materialize("key:churn/crm_push", partition_key=week).success


def test_a_refused_first_model_scores_in_shadow_with_its_reports_and_nothing_is_pushed(built, tmp_path, monkeypatch):
    from lakehouse.churn.crm import OutboxCrm

    built = _fresh_registry(built, tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0.99")
    weeks = built.outcome["feature_keys"][-8:]
    for selection in ("key:churn/churn_scores", "key:churn/live_performance or key:churn/ab_test_roi"):
        assert built.materialize(selection, tags=range_tags(weeks[0], weeks[-1])).success  # no model: both skip
    assert not built.lake.exists("churn", "churn_scores", ("snapshot_date", weeks[-1]))

    training = built.materialize(TRAINING)
    assert training.success and not _gate(training).passed
    assert built.registry().alias_version(SETTINGS.registered_model_name, CHAMPION) is None
    assert built.materialize("key:churn/churn_scores", tags=range_tags(weeks[0], weeks[-1])).success
    scores = built.lake.read("churn", "churn_scores", ("snapshot_date", weeks[-1]))
    assert scores["shadow"].all() and set(scores["model_version"]) == {"1"}
    outbox_before = OutboxCrm(built.home / "ops.sqlite").read().height
    push = built.materialize("key:churn/crm_push", partition_key=weeks[-1])
    assert push.success and not push.get_asset_materialization_events()
    assert OutboxCrm(built.home / "ops.sqlite").read().height == outbox_before  # nothing sent

    reports = built.materialize("key:churn/live_performance or key:churn/ab_test_roi")
    assert reports.success
    made = {e.asset_key.path[-1] for e in reports.get_asset_materialization_events()}
    assert made == {"live_performance"}  # the A/B test skips: shadow lists contacted nobody
    perf = built.lake.read("churn", "live_performance")
    assert perf.height >= 1 and perf["shadow"].all() and set(perf["model_version"]) == {"1"}
    report = built.instance.get_latest_materialization_event(dg.AssetKey(["churn", "model_evaluation"]))
    assert report.asset_materialization.metadata["role"].value == "no champion yet"
