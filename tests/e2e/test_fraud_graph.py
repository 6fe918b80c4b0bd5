"""The whole fraud graph, end to end, through the demo on a small world: training, gate,
champion, a live slice of traffic through the decision service, the decision log and its
checks, and the alert sensor turning a failed check into an alert."""

import polars as pl
import pytest

import demos.fraud
from lakehouse.common.alerts import read_alerts
from lakehouse.common.registry import CHALLENGER, CHAMPION
from lakehouse.fraud.online import read_decision_log
from lakehouse.fraud.settings import FraudSettings
from lakehouse.fraud.world import WorldConfig
from tests.e2e.case import build

pytestmark = pytest.mark.e2e
LIVE = 1200
SETTINGS = FraudSettings()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # A generous Redis timeout: the live slice checks answers and logs, not the latency budget
    # (an in-process app sharing a busy machine with the consumers would flag slow reads degraded).
    env = {"LAKEHOUSE_FRAUD_SCALE": "5000", "LAKEHOUSE_FRAUD_SERVING__REDIS_TIMEOUT_S": "2"}
    with build(tmp_path_factory, "fraud", env, live_transactions=LIVE) as case:
        yield case


def test_every_day_lands_and_features_cover_every_transaction(built):
    assert built.outcome["ingest_success"]
    lake = built.home / "lake" / "fraud"
    days = WorldConfig.from_env().day_keys
    assert sorted(p.name for p in (lake / "transactions").iterdir()) == [f"day={d}" for d in days]
    tx = pl.read_parquet(lake / "transactions" / "*" / "data.parquet", hive_partitioning=False)
    features = pl.read_parquet(lake / "transaction_features" / "*" / "data.parquet", hive_partitioning=False)
    assert features.height == tx.height and features.width > 250


def test_cascade_passes_the_gate_is_logged_and_becomes_champion(built):
    assert built.outcome["training_success"]
    registry = built.registry()
    name = SETTINGS.cascade.registered_model_name
    assert registry.alias_version(name, CHAMPION) == registry.alias_version(name, CHALLENGER) == "1"
    metrics = registry.version_metrics(name, "1")
    assert metrics["recall"] > metrics["baseline_recall"] and metrics["precision"] > metrics["baseline_precision"]
    assert {
        "layer3_share",
        "layer1_precision",
        "fraud_caught_per_month",
        "review_threshold",
        "roc_auc",
        "average_precision",
        "layer3_lift_average_precision",
    } <= set(metrics)
    assert 0.05 < metrics["layer3_share"] <= 0.5
    # one calibrated probability whichever layer decided: it ranks at least as well as either layer alone
    assert metrics["average_precision"] >= metrics["layer2_only_average_precision"]
    assert metrics["average_precision"] >= metrics["layer3_only_average_precision"]
    assert metrics["validation_frauds_below_band"] <= metrics["validation_frauds"]
    tags = registry.client.get_model_version(name, "1").tags
    assert tags["trained_until"] == WorldConfig.from_env().day_keys[-4] and tags["gate"] == "passed"
    run_id = registry.client.get_model_version(name, "1").run_id
    cascade = {a.path for a in registry.client.list_artifacts(run_id, "cascade")}
    assert {"cascade/layer2.txt", "cascade/layer3.json", "cascade/cascade.json"} <= cascade


def test_every_live_request_is_decided_and_logged(built):
    live = built.outcome["live"]
    assert live["requests"] == LIVE and live["errors"] == 0 and live["degraded"] == 0
    assert live["decisions"]["review"] + live["decisions"]["block"] > 0
    log = read_decision_log(built.lake, built.outcome["live_day"])
    assert log.height == LIVE and log["tx_id"].n_unique() == LIVE
    assert set(log["model_version"].unique()) == {"1"}
    compacted = pl.read_parquet(
        built.home / "lake" / "fraud" / "decision_log" / f"day={built.outcome['live_day']}" / "data.parquet"
    )
    assert compacted.height == LIVE
    assert demos.fraud.report(built.instance, built.home, built.outcome)


def test_a_failed_monitoring_check_becomes_an_alert(built):
    checks = built.outcome["checks"]
    assert set(checks) == {"feature_drift", "layer3_share", "decision_rate"}
    # The live slice is the first hours of a day: its hour-of-day distribution drifts from full days.
    assert checks["feature_drift"] is False
    from demos import collect_alerts

    collect_alerts(built.instance, built.resources)
    alerts = read_alerts(built.home / "ops.sqlite")
    drift = alerts.filter((pl.col("case_name") == "fraud") & (pl.col("check_name") == "feature_drift"))
    assert (
        drift.height == 1
        and drift["severity"][0] == "WARN"
        and drift["value"][0] > SETTINGS.monitoring.max_feature_drift_ks
    )


def test_batch_scores_and_the_evaluation_of_a_chosen_window(built):
    """The test days scored in batch as the service would, and a report over a window the user picks."""
    days = WorldConfig.from_env().day_keys
    scores = built.lake.read_partitions("fraud", "scores", "day", days[-3:])
    assert (
        scores.height > 0
        and set(scores["layer"].unique()) <= {1, 2, 3}
        and set(scores["model_version"].unique()) == {"1"}
        and not scores["shadow"].any()
    )
    assert {"ts", "customer_id", "card_id", "merchant_id", "is_fraud", "layer2_score", "layer3_score"} <= set(
        scores.columns
    )
    assert scores.filter(pl.col("layer") == 3)["layer3_score"].null_count() == 0
    report = built.materialize(
        "key:fraud/evaluation",
        run_config={"ops": {"fraud__evaluation": {"config": {"start": days[-2], "end": days[-1]}}}},
    )
    assert report.success
    meta = report.asset_materializations_for_node("fraud__evaluation")[0].metadata
    assert meta["window"].value == f"{days[-2]} .. {days[-1]}" and meta["roc_auc"].value > 0.95
    assert {
        "layer3_share_pct",
        "layer3_lift_average_precision",
        "fraud_caught_per_month_EUR",
        "economics",
        "card_precision_at_100",
        "frauds_below_band",
    } <= set(meta)
    missing = built.materialize(
        "key:fraud/evaluation",
        run_config={"ops": {"fraud__evaluation": {"config": {"start": days[0], "end": days[1]}}}},
    )
    assert not missing.success  # those days were never scored: the error names them
