"""Monitoring on matured labels and the A/B-tested ROI report. Each says so and skips (a green run) when it
has nothing to be computed on yet: no scores, nothing matured, or only shadow lists for the A/B test."""

from datetime import date

import dagster as dg

from assets.churn.model import store
from assets.churn.scoring import SCORES_KEY
from assets.common import DUCKDB_POOL, OWNERS, REPORT, check_result, money, number, rate, table
from lakehouse.churn.pipeline import NothingToReport, ab_test, live_performance
from lakehouse.churn.roi import report_table
from lakehouse.churn.settings import CASE, SEED_AB_REFERENCE, ChurnSettings
from lakehouse.common.display import bar_chart, pct
from resources import LakehouseResource, SourcesResource

LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])
PERFORMANCE_KEY = dg.AssetKey([CASE, "live_performance"])


@dg.multi_asset(
    name="live_performance",
    specs=[
        dg.AssetSpec(
            PERFORMANCE_KEY,
            deps=[SCORES_KEY, LABELS_KEY],
            group_name=CASE,
            kinds={"duckdb"},
            owners=OWNERS[CASE],
            skippable=True,  # nothing scored or matured yet: it says so, a green run
            description=(
                "AUC-PR of the weekly scores per month and model version (shadow scores included and marked), on "
                "labels that have matured (`label_days` after the snapshot)."
            ),
        )
    ],
    pool=DUCKDB_POOL,
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            "live_auc_pr",
            asset=PERFORMANCE_KEY,
            description="Monthly AUC-PR on matured labels of at least `min_live_auc_pr` (the seed's alert).",
        )
    ],
)
def churn_live_performance(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource):
    try:
        perf, check = live_performance(store(lakehouse), sources.settings(ChurnSettings))
    except NothingToReport as skipped:
        context.log.warning(f"live performance skipped: {skipped}")
        return
    selected = {key.name for key in context.selected_asset_check_keys}
    yield dg.MaterializeResult(
        asset_key=PERFORMANCE_KEY,
        check_results=[check_result(check, PERFORMANCE_KEY)] if check.name in selected else [],
        metadata={"dagster/row_count": perf.height, "by_month": table(perf)},
    )


class RoiConfig(dg.Config):
    # First weekly list of the experiment; default: the latest start whose every enrolment week has a matured outcome.
    experiment_start: str | None = None


@dg.asset(
    key=[CASE, "ab_test_roi"],
    deps=[SCORES_KEY, LABELS_KEY],
    tags=REPORT,
    group_name=CASE,
    kinds={"duckdb", "matplotlib"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    output_required=False,
    description=(
        "The seed's A/B test on the published weekly lists: customers scored above `ab.high_risk_threshold` on "
        "`ab.enrolment_weeks` weekly lists split 50/50 by a stable hash into contacted and control; churn per arm "
        "over `ab.outcome_days`, z-test, 95% CI, retained customers, value and ROI. Shadow lists (no champion) "
        "contacted nobody: with no published matured list it skips and says so."
    ),
)
def churn_ab_test_roi(
    context: dg.AssetExecutionContext, config: RoiConfig, lakehouse: LakehouseResource, sources: SourcesResource
):
    settings = sources.settings(ChurnSettings)
    start = date.fromisoformat(config.experiment_start) if config.experiment_start else None
    try:
        report = ab_test(store(lakehouse), settings, lakehouse.paths.reports, start)
    except NothingToReport as skipped:
        context.log.warning(f"A/B test ROI skipped: {skipped}")
        return
    result, currency = report.result, settings.economics.currency
    context.log.info(
        f"A/B from {report.experiment_start}: ROI {result.roi:.1f}x, reduction {result.absolute_reduction:.4f}"
    )
    yield dg.MaterializeResult(
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
                f"{pct(result.churn_rate_control)} in the control arm (p = {result.p_value:.2g}); these lists hold "
                "the customers the model ranks riskiest, hence high rates in both arms."
            ),
            "report": table(report_table(result, currency, SEED_AB_REFERENCE)),
        }
    )
