"""Materialize the whole asset graph on embedded defaults and print the key results.

    python demo.py            # what `make demo` runs

Runs go through a persistent Dagster instance under $LAKEHOUSE_HOME/dagster, so the UI
(`make ui`) shows every run, materialization, check and alert afterwards.
"""

import os
import shutil
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from lakehouse.common.home import LakehouseHome

ROOT = Path(__file__).resolve().parent
SCORED_WEEKS = 26  # 13 weeks of A/B enrolment whose 90-day outcome has matured, and monthly live AUC-PR


def prepare_instance(home: Path) -> dg.DagsterInstance:
    dagster_home = LakehouseHome(home).dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dg.DagsterInstance.get()


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def run_churn(instance: dg.DagsterInstance, resources: dict, world_end: date, log=print) -> dict:
    """The churn graph, in the order the schedules would run it over time."""
    import definitions
    from assets.churn.features import churn_staging
    from assets.churn.partitions import weekly_snapshots
    from assets.churn.raw import churn_raw

    assets = list(definitions.churn_assets) + list(definitions.churn_checks)
    keys = [k for k in weekly_snapshots.get_partition_keys() if date.fromisoformat(k) <= world_end]

    def run(selection, **kwargs):
        return dg.materialize(assets, selection=selection, instance=instance, resources=resources, raise_on_error=False, **kwargs)

    log("1/5 raw tables and dbt staging")
    run(dg.AssetSelection.assets(churn_raw, churn_staging))
    log(f"2/5 point-in-time features for {len(keys)} weekly snapshots ({keys[0]} .. {keys[-1]}), one dbt run")
    run("key:churn/churn_features", tags=_range_tags(keys[0], keys[-1]))
    log("3/5 labels, training set, LightGBM, Go/No-Go gate, champion")
    training = run("key:churn/churn_labels or key:churn/training_set or key:churn/churn_model or key:churn/champion_model")
    log(f"4/5 weekly scoring of the last {SCORED_WEEKS} weeks, CRM push of the latest")
    for key in keys[-SCORED_WEEKS:]:
        run("key:churn/churn_scores", partition_key=key)
    run("key:churn/crm_push", partition_key=keys[-1])
    log("5/5 live performance and A/B ROI")
    run("key:churn/live_performance or key:churn/ab_test_roi")
    return {"training_success": training.success, "latest_week": keys[-1], "feature_keys": keys}


def collect_alerts(instance: dg.DagsterInstance, resources: dict) -> None:
    """One tick of the alert sensor, as the Dagster daemon would run it."""
    import definitions
    from sensors.alerts import asset_check_alerts

    context = dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions.defs)
    asset_check_alerts(context)


def latest_metadata(instance: dg.DagsterInstance, key: list[str]) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def main() -> int:
    home = Path(os.environ.setdefault("LAKEHOUSE_HOME", str(ROOT / ".lakehouse"))).resolve()
    os.environ["LAKEHOUSE_HOME"] = str(home)
    instance = prepare_instance(home)
    from lakehouse.churn.config import SETTINGS, WorldConfig
    from lakehouse.common.alerts import read_alerts
    from resources import default_resources

    resources = default_resources()
    world = WorldConfig.from_env()
    print(f"Lakehouse home: {home}  (scale: {world.customers:,} customers, seed {world.seed})")
    outcome = run_churn(instance, resources, world.end_date)
    collect_alerts(instance, resources)

    model = latest_metadata(instance, ["churn", "churn_model"])
    roi = latest_metadata(instance, ["churn", "ab_test_roi"])
    champion = latest_metadata(instance, ["churn", "champion_model"])
    alerts = read_alerts(home / "ops.sqlite")
    print("\n=== Churn (seed case 1) ===")
    if model:
        print(f"model v{model['model_version']}: AUC-ROC {model['auc_roc']:.3f}  AUC-PR {model['auc_pr']:.3f}  Recall@top20% {model['recall_top20']:.3f}  (seed: 0.84 / 0.71 / 0.62)")
    gate_ok = outcome["training_success"] and champion
    print(f"Go/No-Go gate (AUC-PR > {SETTINGS.gate_min_auc_pr}, Recall@top20% > {SETTINGS.gate_min_recall_top}): {'GO, champion v' + str(champion.get('champion_version')) if gate_ok else 'NO-GO, champion unchanged'}")
    scores = latest_metadata(instance, ["churn", "churn_scores"])
    if scores:
        print(f"weekly scoring {outcome['latest_week']}: {scores['dagster/row_count']:,} customers in {scores['scoring_seconds']:.2f} s")
    if roi:
        print(f"A/B test (from {roi['experiment_start']}, {roi['high_risk_customers']} high-risk customers): monthly churn reduction {100 * roi['absolute_reduction_monthly']:.2f} pt, p={roi['p_value']:.3g}, ROI {roi['roi']:.1f}x (seed 32x)")
    print(f"alerts raised: {alerts.height}" + ("" if alerts.is_empty() else " -> " + ", ".join(sorted(set(alerts['check_name'].to_list())))))
    print("\nWhere to look:")
    print(f"  Dagster UI:   make ui   (then http://127.0.0.1:3000; DAGSTER_HOME={home / 'dagster'})")
    print(f"  MLflow UI:    .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    print(f"  Lake:         {home / 'lake'}   Warehouse: {home / 'warehouse.duckdb'}")
    print(f"  Reports:      {home / 'reports'}   Alerts/CRM outbox: {home / 'ops.sqlite'}")
    return 0 if gate_ok and roi else 1


if __name__ == "__main__":
    sys.exit(main())
