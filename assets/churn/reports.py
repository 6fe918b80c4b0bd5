"""Monitoring on matured labels and the A/B-tested ROI report."""

from datetime import date

import dagster as dg

from assets.churn.model import store
from assets.churn.scoring import SCORES_KEY
from assets.common import DUCKDB_POOL, OWNERS, REPORT, check_result, money, number, rate, table
from lakehouse.churn.pipeline import ab_test, live_performance
from lakehouse.churn.roi import report_table
from lakehouse.churn.settings import CASE, SEED_AB_REFERENCE, ChurnSettings
from lakehouse.common.display import bar_chart, pct
from resources import LakehouseResource

LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])
PERFORMANCE_KEY = dg.AssetKey([CASE, "live_performance"])
SETTINGS = ChurnSettings()


@dg.asset(
    key=PERFORMANCE_KEY,
    deps=[SCORES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"duckdb"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "live_auc_pr",
            asset=PERFORMANCE_KEY,
            description=f"Monthly AUC-PR on matured labels of at least {SETTINGS.min_live_auc_pr} (seed alert).",
        )
    ],
    description="AUC-PR of the published weekly scores per month, on labels that have matured (30 days after the snapshot).",
)
def churn_live_performance(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    perf, check = live_performance(store(lakehouse), ChurnSettings())
    return dg.MaterializeResult(
        check_results=[check_result(check)],
        metadata={"dagster/row_count": perf.height, "by_month": table(perf)},
    )


class RoiConfig(dg.Config):
    # First weekly list of the experiment; default: the latest start whose every enrolment week has a matured 90-day outcome.
    experiment_start: str | None = None


@dg.asset(
    key=[CASE, "ab_test_roi"],
    deps=[SCORES_KEY, LABELS_KEY],
    tags=REPORT,
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
def churn_ab_test_roi(
    context: dg.AssetExecutionContext, config: RoiConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    settings = ChurnSettings()
    start = date.fromisoformat(config.experiment_start) if config.experiment_start else None
    try:
        report = ab_test(store(lakehouse), settings, lakehouse.paths.reports, start)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    result, currency = report.result, settings.economics.currency
    context.log.info(
        f"A/B from {report.experiment_start}: ROI {result.roi:.1f}x, reduction {result.absolute_reduction:.4f}"
    )
    return dg.MaterializeResult(
        metadata={
            "experiment_start": str(report.experiment_start),
            "enrolment_weeks": settings.ab.enrolment_weeks,
            "high_risk_customers": report.high_risk_customers,
            "roi": number(result.roi, 1),
            "absolute_reduction_monthly": rate(result.absolute_reduction, 2),
            "value_per_month": money(result.value_per_month, currency),
            "p_value": number(result.p_value, 4),
            "economics": "seed defaults" if settings.economics_are_defaults else "from the settings",
            "chart": dg.MetadataValue.md(
                bar_chart(
                    "90-day churn per arm",
                    [("control", result.churn_rate_control), ("contacted", result.churn_rate_treatment)],
                    label=pct,
                )
            ),
            "reading": (
                f"Contacted high-risk customers churned {pct(result.churn_rate_treatment)} over 90 days against "
                f"{pct(result.churn_rate_control)} in the control arm (p = {result.p_value:.2g}); these lists hold the customers "
                "the model ranks riskiest, hence high rates in both arms."
            ),
            "report": table(report_table(result, currency, SEED_AB_REFERENCE)),
        }
    )
