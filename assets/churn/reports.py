"""Monitoring on matured labels and the A/B-tested ROI report."""


from datetime import date, timedelta

import dagster as dg
import polars as pl

from assets.churn.scoring import SCORES_KEY
from assets.common import DUCKDB_POOL, OWNERS, markdown_table, png_markdown
from lakehouse.churn.config import CASE, SEED_AB_REFERENCE, SETTINGS, WorldConfig
from lakehouse.churn.monitoring import monthly_performance
from lakehouse.churn.roi import analyse_ab_test, assign_arms, enrol_cohort, plot_ab_test, report_markdown, simulate_contact
from resources import LakehouseResource

LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])
PERFORMANCE_KEY = dg.AssetKey([CASE, "live_performance"])


def _scored_outcomes(lakehouse: LakehouseResource) -> pl.DataFrame:
    """Every stored weekly score joined with its (possibly not yet matured) outcomes."""
    return lakehouse.query(
        f"""
        select s.snapshot_date, s.customer_id, s.score, s.model_version,
               l.churned_30d, l.matured_30d, l.churned_90d, l.matured_90d
        from read_parquet('{lakehouse.lake.glob(CASE, "churn_scores", partitioned=True)}', hive_partitioning = false) s
        join churn_labels l using (snapshot_date, customer_id)
        """
    )


@dg.asset(
    key=PERFORMANCE_KEY,
    deps=[SCORES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"duckdb"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    description="AUC-PR of the published weekly scores per month, on labels that have matured (30 days after the snapshot).",
)
def churn_live_performance(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    perf = monthly_performance(_scored_outcomes(lakehouse))
    lakehouse.lake.write(perf, CASE, "live_performance")
    return dg.MaterializeResult(metadata={"dagster/row_count": perf.height, "by_month": dg.MetadataValue.md(markdown_table(perf))})


@dg.asset_check(asset=PERFORMANCE_KEY, description=f"Monthly AUC-PR on matured labels of at least {SETTINGS.min_live_auc_pr} (seed alert).")
def churn_live_auc_pr(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    perf = lakehouse.lake.read(CASE, "live_performance")
    if perf.is_empty():
        return dg.AssetCheckResult(passed=True, description="no matured scores yet", metadata={"value": None, "threshold": f">= {SETTINGS.min_live_auc_pr}"})
    latest = perf.sort("month").row(-1, named=True)
    return dg.AssetCheckResult(
        passed=latest["auc_pr"] >= SETTINGS.min_live_auc_pr,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"value": latest["auc_pr"], "threshold": f">= {SETTINGS.min_live_auc_pr}", "month": str(latest["month"])},
    )


class RoiConfig(dg.Config):
    # First weekly list of the experiment; default: the latest start whose every enrolment
    # week has a matured 90-day outcome.
    experiment_start: str | None = None
    # Share of treated churners a contact saves. The synthetic world has no real CS team, so
    # the contact is simulated with this true effect; set 0 when outcomes come from real data.
    simulated_contact_effect: float = WorldConfig.true_contact_effect


@dg.asset(
    key=[CASE, "ab_test_roi"],
    deps=[SCORES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"duckdb", "matplotlib"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    description=(
        "The seed's A/B test: customers on the weekly lists with a score above 0.65 (13 weekly lists, the seed's 90 days) "
        "split 50/50 by a stable hash into contacted and control; 90-day churn per arm, z-test, 95% CI, "
        "retained customers, value and ROI."
    ),
)
def churn_ab_test_roi(context: dg.AssetExecutionContext, config: RoiConfig, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    scored = _scored_outcomes(lakehouse).filter(pl.col("matured_90d"))
    if scored.is_empty():
        raise dg.Failure("no scored week has a matured 90-day outcome yet: score weeks at least 90 days old first")
    weeks = SETTINGS.ab_enrolment_weeks
    start = (
        date.fromisoformat(config.experiment_start)
        if config.experiment_start
        else scored["snapshot_date"].max() - timedelta(weeks=weeks - 1)
    )
    cohort = enrol_cohort(scored, threshold=SETTINGS.ab_high_risk_threshold, first_week=start, weeks=weeks)
    outcomes = cohort.select("customer_id", "churned_90d").with_columns(
        arm=assign_arms(cohort["customer_id"], SETTINGS.ab_salt)
    )
    outcomes = simulate_contact(outcomes, config.simulated_contact_effect, SETTINGS.ab_salt)
    result = analyse_ab_test(outcomes, ltv_eur=SETTINGS.ltv_eur, model_cost_eur_per_month=SETTINGS.model_cost_eur_per_month)
    report_dir = lakehouse.paths.reports
    report_dir.mkdir(parents=True, exist_ok=True)
    png = plot_ab_test(result, report_dir / "churn_ab_test.png")
    lakehouse.lake.write(pl.DataFrame([result.to_dict()]), CASE, "ab_test_roi")
    context.log.info(f"A/B from {start}: ROI {result.roi:.1f}x, reduction {result.absolute_reduction:.4f}")
    return dg.MaterializeResult(
        metadata={
            "experiment_start": str(start),
            "enrolment_weeks": weeks,
            "high_risk_customers": cohort.height,
            "roi": result.roi,
            "absolute_reduction_monthly": result.absolute_reduction,
            "p_value": result.p_value,
            "report": dg.MetadataValue.md(report_markdown(result, SEED_AB_REFERENCE)),
            "chart": png_markdown(png, "churn per arm"),
            "chart_path": dg.MetadataValue.path(str(png)),
        }
    )
