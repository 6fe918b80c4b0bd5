"""Churn demo: raw tables, weekly features, training and gate, 26 weeks of scoring, CRM, ROI."""

import os
from datetime import date
from pathlib import Path

import dagster as dg

from demos import latest_metadata, range_tags

SCORED_WEEKS = 26  # 13 weeks of A/B enrolment whose 90-day outcome has matured, and monthly live AUC-PR


def run(instance: dg.DagsterInstance, resources: dict, world_end: date | None = None, log=print) -> dict:
    """The churn graph, in the order the schedules would run it over time."""
    from assets.churn import ASSETS, CHECKS
    from assets.churn.features import churn_staging
    from assets.churn.partitions import weekly_snapshots
    from assets.churn.raw import churn_raw
    from lakehouse.churn.world import WorldConfig

    world = WorldConfig()
    # The synthetic world has no Customer Success team: its A/B outcomes simulate the contact's effect.
    os.environ.setdefault("LAKEHOUSE_CHURN_AB__SIMULATED_CONTACT_EFFECT", str(world.true_contact_effect))
    world_end = world_end or world.end_date
    keys = [
        k for k in weekly_snapshots.get_partition_keys() if world.first_snapshot <= date.fromisoformat(k) <= world_end
    ]

    failed: list[str] = []

    def materialize(selection, **kwargs):
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **kwargs,
        )
        failed.extend(e.step_key for e in result.all_events if e.is_step_failure)
        return result

    log("churn 1/5 raw tables and dbt staging")
    materialize(dg.AssetSelection.assets(churn_raw, churn_staging))
    log(f"churn 2/5 point-in-time features for {len(keys)} weekly snapshots ({keys[0]} .. {keys[-1]}), one dbt run")
    materialize("key:churn/churn_features", tags=range_tags(keys[0], keys[-1]))
    log("churn 3/5 labels, training set, LightGBM, Go/No-Go gate, champion, evaluation")
    training = materialize(
        "key:churn/churn_labels or key:churn/training_set or key:churn/model or key:churn/champion_model"
        " or key:churn/model_evaluation"
    )
    log(f"churn 4/5 weekly scoring of the last {SCORED_WEEKS} weeks in one run, CRM push of the latest")
    scored = keys[-SCORED_WEEKS:]
    materialize("key:churn/churn_scores", tags=range_tags(scored[0], scored[-1]))
    materialize("key:churn/crm_push", partition_key=keys[-1])
    log("churn 5/5 live performance and A/B ROI")
    materialize("key:churn/live_performance or key:churn/ab_test_roi")
    return {"training_success": training.success, "failed_steps": failed, "latest_week": keys[-1], "feature_keys": keys}


def report(instance: dg.DagsterInstance, home: Path, outcome: dict) -> bool:
    """Print the churn results; True when the gate passed and the ROI report exists."""
    from lakehouse.churn.settings import ChurnSettings
    from lakehouse.churn.world import WorldConfig
    from lakehouse.common.settings import configured_sources_path

    world, settings = WorldConfig(), ChurnSettings.load(configured_sources_path())
    model = latest_metadata(instance, ["churn", "model"])
    roi = latest_metadata(instance, ["churn", "ab_test_roi"])
    champion = latest_metadata(instance, ["churn", "champion_model"])
    print(f"\n=== Churn (seed case 1): {world.customers:,} customers, seed {world.seed} ===")
    if model:
        print(
            f"model v{model['model_version']}: AUC-ROC {model['auc_roc']:.3f}  AUC-PR {model['auc_pr']:.3f}  "
            f"Recall@top20% {model['recall_top20']}  (seed: 0.84 / 0.71 / 0.62)"
        )
    gate = settings.gate
    promoted = bool(champion.get("moved")) or champion.get("champion_version") == model.get("model_version")
    print(
        f"Go/No-Go gate (AUC-PR > {gate.min_auc_pr}, Recall@top20% > {gate.min_recall_top}, not worse than the "
        f"champion): {'GO, champion v' + str(champion.get('champion_version')) if promoted else 'NO-GO'}"
        + ("" if promoted else f" ({champion.get('outcome', 'no champion step')})")
    )
    scores = latest_metadata(instance, ["churn", "churn_scores"])
    if scores:
        print(
            f"weekly scoring, {SCORED_WEEKS} weeks to {outcome['latest_week']}: {scores['dagster/row_count']:,} "
            f"scores by {scores['model']}"
        )
    if roi:
        print(
            f"A/B test (from {roi['experiment_start']}, {roi['high_risk_customers']} high-risk customers): "
            f"monthly churn reduction {roi['absolute_reduction_monthly']}, {_p(roi['p_value'])}, "
            f"ROI {roi['roi']:.1f}x (seed 32x)"
        )
    return bool(promoted and roi)


def _p(p_value: float) -> str:
    """The test's p-value; below double precision it underflows to 0, which says 'smaller than 1e-300'."""
    return f"p={p_value:.3g}" if p_value > 0 else "p<1e-300"
