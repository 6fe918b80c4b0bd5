"""The churn case's steps, each a function of the store, the registry and the settings.

Assets, demos, benchmarks and tests call these same functions; the dbt models (staging,
point-in-time features, labels) run in between, through dagster-dbt or the dbt CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.churn.model import LABEL, ScoredBatch, TrainedModel, load_model, log_model, score, train
from lakehouse.churn.monitoring import monthly_performance
from lakehouse.churn.roi import AbTestResult, analyse_ab_test, assign_arms, enrol_cohort, plot_ab_test, simulate_contact
from lakehouse.churn.schemas import RAW_TABLES
from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.drift import ks_statistic, psi
from lakehouse.common.lake import Lake
from lakehouse.common.promotion import Floor, Verdict
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry

SNAPSHOT = "snapshot_date"


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
    """Train on the stored training set, log to MLflow, register as `challenger`, and keep the model's
    scores on the last test snapshot as the reference of the score-shift check."""
    trained = train(store.lake.read(CASE, "training_set"), settings)
    version, run_id = log_model(registry, trained, settings, run_name=f"churn-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    last = trained.test_scores.filter(pl.col(SNAPSHOT) == pl.col(SNAPSHOT).max())
    store.lake.write(last.with_columns(model_version=pl.lit(version)), CASE, "reference_scores")
    return Challenger(version, run_id, trained)


def go_no_go(registry: Registry, settings: ChurnSettings) -> Verdict:
    """The seed's PoC gate on the challenger's out-of-time test metrics: the only place it is evaluated."""
    name = settings.registered_model_name
    version = registry.alias_version(name, CHALLENGER)
    if version is None:
        raise LookupError(f"{name} has no challenger to gate: train one first")
    m = registry.version_metrics(name, version)
    return Verdict(
        name,
        version,
        registry.alias_version(name, CHAMPION),
        floors=(
            Floor("AUC-PR", m["auc_pr"], settings.gate_min_auc_pr, ">"),
            Floor("Recall@top20%", m["recall_top20"], settings.gate_min_recall_top, ">"),
        ),
        window="the out-of-time test period",
        check_name="go_no_go_gate",
        headline=f"AUC-PR {m['auc_pr']:.3f}, Recall@top20% {m['recall_top20']:.1%}",
    )


# --------------------------------------------------------------------------- weekly scoring


@dataclass
class WeeklyScores:
    batch: ScoredBatch
    model_version: str
    checks: list[CheckOutcome]


def score_week(store: ChurnStore, registry: Registry, snapshot: str, settings: ChurnSettings) -> WeeklyScores:
    """Score every active customer at `snapshot` with the champion, store the scores and run the seed's
    weekly monitoring."""
    features = store.query("select * from churn_features where snapshot_date = ? order by customer_id", [snapshot])
    booster, version = load_model(registry, settings)
    batch = score(booster, features, settings, model_version=version)
    previous = [k for k in store.lake.partitions(CASE, "churn_scores", SNAPSHOT) if k < snapshot]
    last_volume = store.lake.read(CASE, "churn_scores", (SNAPSHOT, previous[-1])).height if previous else None
    store.lake.write(batch.scores, CASE, "churn_scores", (SNAPSHOT, snapshot))
    reference = store.lake.read(CASE, "reference_scores")["score"].to_numpy()
    return WeeklyScores(batch, version, scoring_checks(batch, reference, last_volume, settings))


def scoring_checks(
    batch: ScoredBatch, reference_scores: np.ndarray, last_volume: int | None, settings: ChurnSettings
) -> list[CheckOutcome]:
    """The seed's weekly monitoring: prediction volume, score distribution shift, batch latency."""
    n = batch.scores.height
    base = settings.customer_base or last_volume
    current = batch.scores["score"].to_numpy()
    ks = ks_statistic(reference_scores, current) if n else 1.0
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
            f"{n:,} customers scored; expected base {base:,} ({'customer_base' if settings.customer_base else 'last week'})",
        )
    return [
        volume,
        CheckOutcome(
            "score_shift",
            ks <= settings.max_score_shift_ks,
            round(ks, 4),
            f"KS <= {settings.max_score_shift_ks}",
            f"Kolmogorov-Smirnov statistic vs the champion's reference week: {ks:.3f}",
            metadata={"psi": round(psi(reference_scores, current), 4) if n else None},
        ),
        CheckOutcome(
            "scoring_latency",
            batch.seconds < settings.scoring_latency_budget_s,
            round(batch.seconds, 2),
            f"< {settings.scoring_latency_budget_s:.0f} s",
            f"{n:,} customers scored in {batch.seconds:.2f} s",
        ),
    ]


def crm_records(scores: pl.DataFrame) -> list[dict]:
    """The week's scores as CRM records, keyed by the customer id."""
    return scores.rename({"customer_id": "external_id"}).with_columns(pl.col(SNAPSHOT).cast(pl.String)).to_dicts()


# --------------------------------------------------------------------------- monitoring and ROI


def scored_outcomes(store: ChurnStore) -> pl.DataFrame:
    """Every stored weekly score joined with its (possibly not yet matured) outcomes (none before the first scoring)."""
    if not store.lake.partitions(CASE, "churn_scores", SNAPSHOT):
        schema = {SNAPSHOT: pl.Date, "customer_id": pl.String, "score": pl.Float64, "model_version": pl.String}
        return pl.DataFrame(
            schema={**schema, **{c: pl.Boolean for c in ("churned_30d", "matured_30d", "churned_90d", "matured_90d")}}
        )
    return store.query(
        f"""
        select s.snapshot_date, s.customer_id, s.score, s.model_version,
               l.churned_30d, l.matured_30d, l.churned_90d, l.matured_90d
        from read_parquet('{store.lake.glob(CASE, "churn_scores", partitioned=True)}', hive_partitioning = false) s
        join churn_labels l using (snapshot_date, customer_id)
        """
    )


def live_performance(store: ChurnStore, settings: ChurnSettings) -> tuple[pl.DataFrame, CheckOutcome]:
    """AUC-PR per month of the published scores whose label has matured, and the seed's alert on it."""
    perf = monthly_performance(scored_outcomes(store))
    store.lake.write(perf, CASE, "live_performance")
    threshold = f">= {settings.min_live_auc_pr}"
    if perf.is_empty():
        return perf, CheckOutcome("live_auc_pr", True, None, threshold, "no matured scores yet")
    latest = perf.sort("month").row(-1, named=True)
    return perf, CheckOutcome(
        "live_auc_pr",
        latest["auc_pr"] >= settings.min_live_auc_pr,
        round(latest["auc_pr"], 4),
        threshold,
        f"AUC-PR {latest['auc_pr']:.3f} in {latest['month']:%Y-%m} on matured labels",
        metadata={"month": str(latest["month"])},
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
    """The seed's A/B test on the stored weekly lists: high-risk customers split 50/50 by a stable hash,
    90-day churn per arm, the test statistics, retained customers, value and ROI."""
    scored = scored_outcomes(store).filter(pl.col("matured_90d"))
    if scored.is_empty():
        raise ValueError("no scored week has a matured 90-day outcome yet: score weeks at least 90 days old first")
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
