"""The churn case's steps, each a function of the store, the registry and the settings.

Assets, demos, benchmarks and tests call these same functions; the dbt models (staging,
point-in-time features, labels) run in between, with dbt in the process (dbt_runner.py), from the
dbt assets or directly. Model versions follow the one promotion path (lakehouse.common.promotion):
the gate here, the comparisons in evaluation.py, and with no champion yet the scores in shadow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.churn.evaluation import METRIC, compare_versions, version_info
from lakehouse.churn.model import FEATURES, LABEL, ScoredBatch, TrainedModel, load_version, log_model, score, train
from lakehouse.churn.monitoring import feature_drift, monthly_performance, usage_volume
from lakehouse.churn.roi import AbTestResult, analyse_ab_test, assign_arms, enrol_cohort, plot_ab_test, simulate_contact
from lakehouse.churn.schemas import RAW_TABLES
from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common import display, promotion
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.drift import ks_statistic, psi
from lakehouse.common.lake import Lake
from lakehouse.common.promotion import Floor, ModelChoice, Verdict
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry

SNAPSHOT = "snapshot_date"
REFERENCE_FEATURES = "reference_features"  # per model version: its inputs on its last test snapshots


@dataclass(frozen=True)
class ChurnStore:
    """Where the case's tables live: the Parquet lake and the warehouse dbt builds in."""

    lake: Lake
    warehouse: Path

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Read from the warehouse (one DuckDB process at a time: callers hold the `duckdb` pool)."""
        import duckdb

        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            if self.lake.remote:  # the lake's own filesystem (fsspec): no DuckDB extension needed
                con.register_filesystem(self.lake.fs)
            return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()


# --------------------------------------------------------------------------- raw tables


def store_raw_tables(store: ChurnStore, tables: dict[str, pl.DataFrame | None]) -> dict[str, str]:
    """Write the raw tables at once. An optional table the source did not give keeps what the lake has
    (an empty table is written only when nothing is stored yet, for the SQL to read). Returns what
    happened to each table."""
    status, writes = {}, {}
    for schema in RAW_TABLES:
        df = tables[schema.name]
        if df is None and store.lake.exists(CASE, schema.name):
            status[schema.name] = "not in the source: stored table kept"
            continue
        writes[(CASE, schema.name, None)] = schema.empty() if df is None else df
        status[schema.name] = "not in the source: stored empty" if df is None else f"{df.height:,} rows"
    store.lake.write_many(writes)
    return status


# --------------------------------------------------------------------------- training


def build_training_set(store: ChurnStore) -> pl.DataFrame:
    """Every featured snapshot joined with its 30-day label (matured or not), stored in the lake."""
    df = store.query(
        f"""
        select f.*, l.{LABEL}, l.matured_30d
        from churn_features f
        join churn_labels l using (snapshot_date, customer_id)
        order by snapshot_date, customer_id
        """
    )
    store.lake.write(df, CASE, "training_set")
    return df


@dataclass
class Challenger:
    version: str
    run_id: str
    trained: TrainedModel


def train_challenger(store: ChurnStore, registry: Registry, settings: ChurnSettings) -> Challenger:
    """Train on the stored training set, log to MLflow, register as `challenger` with what it learnt from
    (`trained_until`, its windows), and keep the version's references: its scores on the last test snapshot
    (for the score-shift check) and its inputs on the last `feature_drift.reference_weeks` test snapshots
    (for the feature-drift check, once it is the champion)."""
    training_set = store.lake.read(CASE, "training_set")
    trained = train(training_set, settings)
    version, run_id = log_model(registry, trained, settings, run_name=f"churn-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    until = trained.split.trained_until(settings.label_days)
    window = f"{trained.split}; labels learnt until {until}"
    promotion.tag_training(registry, settings.registered_model_name, version, until.isoformat(), window)
    last = trained.test_scores.filter(pl.col(SNAPSHOT) == pl.col(SNAPSHOT).max())
    store.lake.write(
        last.with_columns(model_version=pl.lit(version)), CASE, "reference_scores", ("model_version", version)
    )
    test = training_set.filter(pl.col(SNAPSHOT).is_between(trained.split.test.start, trained.split.test.end))
    weeks = test[SNAPSHOT].unique().sort().tail(settings.feature_drift.reference_weeks)
    store.lake.write(
        test.filter(pl.col(SNAPSHOT).is_in(weeks.implode())).select(SNAPSHOT, "customer_id", *FEATURES),
        CASE,
        REFERENCE_FEATURES,
        ("model_version", version),
    )
    return Challenger(version, run_id, trained)


def go_no_go(store: ChurnStore, registry: Registry, settings: ChurnSettings) -> Verdict:
    """The Go/No-Go gate on the challenger: the seed's PoC floors on its out-of-time test period, and,
    when a champion exists, no worse than it beyond noise on the test snapshots after both cut-offs."""
    name = settings.registered_model_name
    version = registry.alias_version(name, CHALLENGER)
    if version is None:
        raise LookupError(f"{name} has no challenger to gate: train one first")
    champion = registry.alias_version(name, CHAMPION)
    m = registry.version_metrics(name, version)
    test = version_info(registry, name, version).test
    comparisons = ()
    if champion is not None and champion != version:
        if test is None:
            reason = f"v{version} records no test period"
            comparisons = (promotion.no_fair_comparison(f"champion v{champion}", METRIC, reason),)
        else:
            comparisons = (compare_versions(store.lake, registry, settings, version, champion, test),)
    gate = settings.gate
    return Verdict(
        name,
        version,
        champion,
        floors=(
            Floor("AUC-PR", m["auc_pr"], gate.min_auc_pr, ">"),
            Floor("Recall@top20%", m["recall_top20"], gate.min_recall_top, ">"),
        ),
        comparisons=comparisons,
        window=f"the out-of-time test period {test.start}..{test.end}" if test else "the out-of-time test period",
        check_name="go_no_go_gate",
        headline=f"AUC-PR {m['auc_pr']:.3f}, Recall@top20% {display.pct(m['recall_top20'])}",
    )


# --------------------------------------------------------------------------- weekly scoring


@dataclass(frozen=True)
class ServingModel:
    """The booster whose scores a week gets: the champion's, or with none yet the latest challenger's in shadow."""

    booster: object
    choice: ModelChoice

    @property
    def version(self) -> str:
        return self.choice.version


def serving_model(registry: Registry, settings: ChurnSettings) -> ServingModel | None:
    """The champion, or in shadow the latest challenger; None when no version is registered."""
    choice = promotion.serving_choice(registry, settings.registered_model_name)
    if choice is None:
        return None
    return ServingModel(load_version(registry, settings.registered_model_name, choice.version), choice)


@dataclass
class WeeklyScores:
    batch: ScoredBatch
    model: ModelChoice
    checks: list[CheckOutcome]


def score_week(store: ChurnStore, model: ServingModel, snapshot: str, settings: ChurnSettings) -> WeeklyScores:
    """Score every active customer at `snapshot` (in shadow when the model is not the champion), store the
    scores and run the seed's weekly monitoring against the version's reference week, the drift of the
    week's inputs (`input_reference`) and the volume of the week's raw usage (`usage_volume_check`)."""
    features = store.query("select * from churn_features where snapshot_date = ? order by customer_id", [snapshot])
    batch = score(model.booster, features, settings, model_version=model.version, shadow=model.choice.shadow)
    previous = [k for k in store.lake.partitions(CASE, "churn_scores", SNAPSHOT) if k < snapshot]
    last_volume = store.lake.read(CASE, "churn_scores", (SNAPSHOT, previous[-1])).height if previous else None
    store.lake.write(batch.scores, CASE, "churn_scores", (SNAPSHOT, snapshot))
    reference_key = ("model_version", model.version)
    reference = (
        store.lake.read(CASE, "reference_scores", reference_key)["score"].to_numpy()
        if store.lake.exists(CASE, "reference_scores", reference_key)
        else None
    )
    inputs, against = input_reference(store, model, snapshot, settings)
    drift = feature_drift(inputs, features, model.booster.feature_name(), settings, against)
    usage = usage_volume_check(store, snapshot, settings)
    return WeeklyScores(batch, model.choice, [*scoring_checks(batch, reference, last_volume, settings), drift, usage])


def usage_volume_check(store: ChurnStore, snapshot: str, settings: ChurnSettings) -> CheckOutcome:
    """The raw usage of the week before `snapshot` against the weeks before it (monitoring.usage_volume), counted
    from the staged weekly usage (`stg_churn__usage_weekly`: one row per customer and week with usage)."""
    day = date.fromisoformat(snapshot)
    first = day - timedelta(weeks=settings.usage_volume.trailing_weeks + 1)
    weekly = store.query(
        "select week_start, sum(active_days) as active_days, count(*) as customers, sum(logins) as logins "
        "from stg_churn__usage_weekly where week_start >= ? and week_start < ? group by week_start",
        [first.isoformat(), snapshot],
    )
    first_week = store.query("select min(week_start) as first_week from stg_churn__usage_weekly")["first_week"][0]
    return usage_volume(weekly, day, first_week, settings)


def input_reference(
    store: ChurnStore, model: ServingModel, snapshot: str, settings: ChurnSettings
) -> tuple[pl.DataFrame, str]:
    """The features the week's inputs are compared with, and what they are: the champion's reference weeks (the
    last of its test period, kept at training); with no champion yet (scores in shadow), or a champion that
    kept none, the `feature_drift.reference_weeks` snapshots before `snapshot`. A shadow model's own test period
    is not the reference: it may be months old, and the check is about the data, not a model no one uses."""
    key = ("model_version", model.version)
    if not model.choice.shadow and store.lake.exists(CASE, REFERENCE_FEATURES, key):
        reference = store.lake.read(CASE, REFERENCE_FEATURES, key)
        return reference, f"champion v{model.version}'s reference weeks {_weeks(reference)}"
    first = date.fromisoformat(snapshot) - timedelta(weeks=settings.feature_drift.reference_weeks)
    reference = store.query(
        "select * from churn_features where snapshot_date >= ? and snapshot_date < ?", [first.isoformat(), snapshot]
    )
    why = "no champion yet" if model.choice.shadow else f"champion v{model.version} kept no reference"
    return reference, f"the weeks before, {_weeks(reference)} ({why})"


def _weeks(features: pl.DataFrame) -> str:
    weeks = features[SNAPSHOT].unique().sort()
    return f"{weeks[0]}..{weeks[-1]}" if weeks.len() else "none"


def scoring_checks(
    batch: ScoredBatch, reference_scores: np.ndarray | None, last_volume: int | None, settings: ChurnSettings
) -> list[CheckOutcome]:
    """The seed's weekly monitoring: prediction volume, score distribution shift, batch latency."""
    n = batch.scores.height
    base = settings.customer_base or last_volume
    if base is None:
        volume = CheckOutcome(
            "prediction_volume",
            n > 0,
            n,
            "> 0 (no earlier week to compare with; set customer_base)",
            f"{n:,} customers scored",
        )
    else:
        low, high = settings.bounds_for(base)
        volume = CheckOutcome(
            "prediction_volume",
            low <= n <= high,
            n,
            f"[{low:,}, {high:,}]",
            f"{n:,} customers scored; expected base {base:,} "
            f"({'customer_base' if settings.customer_base else 'last week'})",
        )
    latency = CheckOutcome(
        "scoring_latency",
        batch.seconds < settings.scoring_latency_budget_s,
        round(batch.seconds, 2),
        f"< {settings.scoring_latency_budget_s:.0f} s",
        f"{n:,} customers scored in {batch.seconds:.2f} s",
    )
    return [volume, score_shift(batch, reference_scores, settings), latency]


def score_shift(batch: ScoredBatch, reference_scores: np.ndarray | None, settings: ChurnSettings) -> CheckOutcome:
    """Kolmogorov-Smirnov statistic of the week's scores against the serving version's reference week."""
    threshold = f"KS <= {settings.max_score_shift_ks}"
    if reference_scores is None:
        return CheckOutcome("score_shift", True, None, threshold, "no reference week recorded for this version")
    current = batch.scores["score"].to_numpy()
    n = current.size
    ks = ks_statistic(reference_scores, current) if n else 1.0
    return CheckOutcome(
        "score_shift",
        ks <= settings.max_score_shift_ks,
        round(ks, 4),
        threshold,
        f"Kolmogorov-Smirnov statistic vs the model's reference week: {ks:.3f}",
        metadata={"psi": round(psi(reference_scores, current), 4) if n else None},
    )


def crm_records(scores: pl.DataFrame) -> list[dict]:
    """The week's scores as CRM records, keyed by the customer id (the shadow flag stays in the lake)."""
    return (
        scores.drop("shadow", strict=False)
        .rename({"customer_id": "external_id"})
        .with_columns(pl.col(SNAPSHOT).cast(pl.String))
        .to_dicts()
    )


def crm_batch(store: ChurnStore, snapshot: str) -> tuple[list[dict], str | None]:
    """The week's records for the CRM, or none and why: no scores that week, or scores in shadow (a model
    that is not the champion: never published)."""
    key = (SNAPSHOT, snapshot)
    if not store.lake.exists(CASE, "churn_scores", key):
        return [], f"no scores for {snapshot}: nothing to push (score the week first)"
    scores = store.lake.read(CASE, "churn_scores", key)
    if "shadow" in scores.columns and scores["shadow"].any():
        versions = ", ".join(f"v{v}" for v in scores.filter(pl.col("shadow"))["model_version"].unique().sort())
        return [], (
            f"the scores of {snapshot} are shadow scores of {versions} (not promoted: no champion yet): "
            "shadow scores are never pushed to the CRM"
        )
    return crm_records(scores), None


# --------------------------------------------------------------------------- monitoring and ROI


class NothingToReport(LookupError):
    """A report has nothing to be computed on yet (no scores, nothing matured): the step says so and skips."""


def scored_outcomes(store: ChurnStore) -> pl.DataFrame:
    """Every stored weekly score (champion's or shadow) joined with its (possibly not yet matured) outcomes."""
    if not store.lake.partitions(CASE, "churn_scores", SNAPSHOT):
        raise NothingToReport("no week has been scored yet (no model was registered, or no scoring has run)")
    return store.query(
        f"""
        select s.snapshot_date, s.customer_id, s.score, s.model_version, coalesce(s.shadow, false) as shadow,
               l.churned_30d, l.matured_30d, l.churned_90d, l.matured_90d
        from read_parquet(
            '{store.lake.glob(CASE, "churn_scores", partitioned=True)}', hive_partitioning = false, union_by_name = true
        ) s
        join churn_labels l using (snapshot_date, customer_id)
        """
    )


def live_performance(store: ChurnStore, settings: ChurnSettings) -> tuple[pl.DataFrame, CheckOutcome]:
    """AUC-PR per month and model version of the stored scores (shadow ones included, marked) whose label has
    matured, and the seed's alert on the latest month of the latest version."""
    perf = monthly_performance(scored_outcomes(store))
    if perf.is_empty():
        raise NothingToReport(f"no scored week has a matured {settings.label_days}-day label yet")
    store.lake.write(perf, CASE, "live_performance")
    latest = perf.sort("month", pl.col("model_version").cast(pl.Int64, strict=False)).row(-1, named=True)
    shadow = " (shadow scores: not promoted)" if latest["shadow"] else ""
    return perf, CheckOutcome(
        "live_auc_pr",
        latest["auc_pr"] >= settings.min_live_auc_pr,
        round(latest["auc_pr"], 4),
        f">= {settings.min_live_auc_pr}",
        f"AUC-PR {latest['auc_pr']:.3f} in {latest['month']:%Y-%m} on matured labels, "
        f"v{latest['model_version']}{shadow}",
        metadata={"month": str(latest["month"]), "model_version": latest["model_version"], "shadow": latest["shadow"]},
    )


@dataclass
class AbTestReport:
    result: AbTestResult
    experiment_start: date
    high_risk_customers: int
    chart: Path


def ab_test(
    store: ChurnStore, settings: ChurnSettings, report_dir: Path, experiment_start: date | None = None
) -> AbTestReport:
    """The seed's A/B test on the published weekly lists (the champion's, never shadow ones): high-risk
    customers split 50/50 by a stable hash, 90-day churn per arm, the test statistics, retained customers,
    value and ROI."""
    outcomes = scored_outcomes(store)
    scored = outcomes.filter(~pl.col("shadow") & pl.col("matured_90d"))
    if scored.is_empty():
        why = (
            "every stored score is a shadow score (no champion yet): no customer was contacted from them"
            if outcomes["shadow"].all()
            else f"no published week has a matured {settings.ab.outcome_days}-day outcome yet"
        )
        raise NothingToReport(f"no A/B test to analyse: {why}")
    ab = settings.ab
    start = experiment_start or scored[SNAPSHOT].max() - timedelta(weeks=ab.enrolment_weeks - 1)
    cohort = enrol_cohort(scored, threshold=ab.high_risk_threshold, first_week=start, weeks=ab.enrolment_weeks)
    outcomes = cohort.select("customer_id", "churned_90d").with_columns(arm=assign_arms(cohort["customer_id"], ab.salt))
    outcomes = simulate_contact(outcomes, ab.simulated_contact_effect, ab.salt)
    economics = settings.economics
    result = analyse_ab_test(outcomes, ltv=economics.ltv, model_cost_per_month=economics.model_cost_per_month)
    report_dir.mkdir(parents=True, exist_ok=True)
    chart = plot_ab_test(result, report_dir / "churn_ab_test.png", economics.currency)
    store.lake.write(pl.DataFrame([result.to_dict()]), CASE, "ab_test_roi")
    return AbTestReport(result, start, cohort.height, chart)
