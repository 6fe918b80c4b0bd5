"""The steps of the fraud case, each a function of frames, the lake and the settings.

Assets, demos, benchmarks and tests call these same functions: landing transactions (a
user's source through its mapping, or frames from the generator), features, learnt rules,
training with its evaluation, batch scoring of any loaded days with the champion, an
evaluation report over any window, the online store's warm-up and the decision log with its
checks. Tables (under `<lake>/fraud/`): `transactions`, `transaction_features`, `scores`,
`decision_log` (daily partitions `day=YYYY-MM-DD`), `rule_lists`, `reference_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from lakehouse.common import promotion
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.lake import Lake
from lakehouse.common.loads import PartitionedLoad, split_partitions
from lakehouse.common.promotion import Verdict
from lakehouse.common.registry import CHAMPION, Registry
from lakehouse.common.schema import InputDataError, validate_frame
from lakehouse.common.settings import DateRange
from lakehouse.common.sources import CaseSource, load_table
from lakehouse.fraud.features_batch import batch_features
from lakehouse.fraud.features_registry import Registry as FeatureRegistry
from lakehouse.fraud.features_registry import registry_for
from lakehouse.fraud.model import (
    Cascade,
    Evaluation,
    Split,
    evaluate,
    evaluate_window,
    gate,
    load_cascade,
    log_cascade,
    score_rows,
    train,
)
from lakehouse.fraud.monitoring import decision_rate, feature_drift, layer3_share
from lakehouse.fraud.online import publish_lists, read_decision_log, store_history, warm_store
from lakehouse.fraud.rules import RuleLists, batch_rules, build_lists
from lakehouse.fraud.schemas import OPTIONAL, missing_pair, transactions_schema
from lakehouse.fraud.settings import CASE, FraudSettings

TRANSACTIONS = "transactions"
FEATURES = "transaction_features"
RULE_LISTS = "rule_lists"
SCORES = "scores"
REFERENCE = "reference_features"
DECISION_LOG = "decision_log"
DAY = "day"


# --------------------------------------------------------------------------- transactions


def partition_of(settings: FraudSettings) -> pl.Expr:
    """A transaction's daily partition: its date in the calendar's time zone."""
    return (
        pl.col("ts")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(settings.calendar.timezone)
        .dt.date()
        .cast(pl.String)
    )


def load_source(
    source: CaseSource,
    settings: FraudSettings,
    *,
    days: list[str],
    allowed: list[str],
    today: date,
    replace_with_empty: bool = False,
) -> tuple[PartitionedLoad, str]:
    """The user's transactions for the selected days, mapped and validated; nothing is written.
    Returns the rows per day and where they came from."""
    source.check_no_misnamed_files([TRANSACTIONS])
    loaded = load_table(source, transactions_schema(settings), today=today, optional=OPTIONAL)
    if pair := missing_pair(loaded.frame.columns):
        raise InputDataError(
            loaded.label, TRANSACTIONS, pair[1], f"{pair[0]} and {pair[1]} come together: give both columns or neither"
        )
    split = split_partitions(
        loaded.frame,
        partition_of(settings),
        selected=days,
        allowed=allowed,
        label=loaded.label,
        table=TRANSACTIONS,
        column="ts",
        calendar_hint=FraudSettings.where("calendar.start"),
        rows_outside_selection=source.table(TRANSACTIONS).rows_outside_selection,
        replace_with_empty=replace_with_empty,
    )
    return split, loaded.label


def validate_days(
    frames: dict[str, pl.DataFrame], settings: FraudSettings, *, source: str, today: date
) -> dict[str, pl.DataFrame]:
    """Frames from another source (the generator) through the same schema."""
    schema = transactions_schema(settings)
    return {
        d: validate_frame(df, schema.restricted(df.columns), source=source, today=today) for d, df in frames.items()
    }


def store_transactions(lake: Lake, frames: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Write the days in one step; returns rows and frauds."""
    lake.write_many({(CASE, TRANSACTIONS, (DAY, d)): df for d, df in frames.items()})
    return {
        "rows": sum(df.height for df in frames.values()),
        "frauds": sum(int(df["is_fraud"].sum()) for df in frames.values()),
    }


def loaded_days(lake: Lake) -> list[str]:
    return lake.partitions(CASE, TRANSACTIONS, DAY)


def read_transactions(lake: Lake, days: list[str] | None = None) -> pl.DataFrame:
    return lake.read_partitions(CASE, TRANSACTIONS, DAY, days)


def read_days(lake: Lake, name: str, days: list[str], asset: str) -> pl.DataFrame:
    """The named days of a daily table, or one error naming the days it lacks."""
    missing = sorted(set(days) - set(lake.partitions(CASE, name, DAY)))
    if missing:
        raise FileNotFoundError(
            f"{CASE}/{name} has no partition for {len(missing)} day(s) ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): materialize {asset} first"
        )
    return lake.read_partitions(CASE, name, DAY, days)


# --------------------------------------------------------------------------- features and rules


@dataclass
class FeatureTable:
    rows: int
    days: list[str]
    features: list[str]
    left_out: list[str]


def build_features(lake: Lake, settings: FraudSettings) -> FeatureTable:
    """Every registry feature of every loaded transaction, point in time, one file per day."""
    registry = registry_for(settings)
    features = batch_features(read_transactions(lake), registry)
    parts = {str(d): part for (d,), part in features.group_by(DAY, maintain_order=True)}
    lake.write_many({(CASE, FEATURES, (DAY, d)): part for d, part in parts.items()})
    present = [n for n in registry.names if n in features.columns]
    return FeatureTable(
        features.height, sorted(parts), present, [n for n in registry.names if n not in features.columns]
    )


def split_of(days: list[str], settings: FraudSettings) -> Split:
    return Split.from_days(date.fromisoformat(min(days)), date.fromisoformat(max(days)), settings)


def learn_rules(lake: Lake, settings: FraudSettings) -> tuple[RuleLists, Split]:
    """Layer-1 rules learnt from the training window only; stored in the lake."""
    split = split_of(loaded_days(lake), settings)
    window = split.train
    days = [d for d in lake.partitions(CASE, FEATURES, DAY) if window.contains(date.fromisoformat(d))]
    if not days:
        raise ValueError(
            f"no feature partition in the training window {window.start}..{window.end}: materialize {CASE}/{FEATURES} first"
        )
    lists = build_lists(
        read_transactions(lake, days), lake.read_partitions(CASE, FEATURES, DAY, days), registry_for(settings), settings
    )
    lake.write(lists.as_frame(), CASE, RULE_LISTS)
    return lists, split


def read_rules(lake: Lake) -> RuleLists:
    return RuleLists.from_frame(lake.read(CASE, RULE_LISTS)) if lake.exists(CASE, RULE_LISTS) else RuleLists()


def with_rules(
    features: pl.DataFrame, raw: pl.DataFrame, lists: RuleLists, registry: FeatureRegistry, settings: FraudSettings
) -> pl.DataFrame:
    """Features, rule score and hits, and the raw columns the evaluation needs."""
    extra = [c for c in ("amount", "fraud_pattern") if c in raw.columns and c not in features.columns]
    rules = batch_rules(features, raw, lists, registry, settings)
    return features.join(rules, on="tx_id").join(raw.select("tx_id", *extra), on="tx_id", how="left")


# --------------------------------------------------------------------------- training


@dataclass
class Training:
    cascade: Cascade
    evaluation: Evaluation
    split: Split
    version: str
    run_id: str


def fit(data: pl.DataFrame, split: Split, registry: Registry, settings: FraudSettings, run_name: str) -> Training:
    """Train, evaluate on the test window and log the challenger (data: features + rules)."""
    cascade = train(data, split, registry_for(settings), settings)
    evaluation = evaluate_window(cascade, data, split.test, settings)
    version, run_id = log_cascade(registry, cascade, evaluation, split, settings, run_name)
    return Training(cascade, evaluation, split, version, run_id)


def train_cascade(lake: Lake, registry: Registry, settings: FraudSettings, run_name: str) -> Training:
    """The cascade from the lake's features and rules; the test window's layer-2 inputs are
    stored as the drift reference of this version."""
    features = lake.read_partitions(CASE, FEATURES, DAY)
    data = with_rules(features, read_transactions(lake), read_rules(lake), registry_for(settings), settings)
    split = split_of([str(d) for d in data[DAY].unique().to_list()], settings)
    result = fit(data, split, registry, settings, run_name)
    reference = split.frame(data, "test").select("tx_id", DAY, *result.cascade.layer2_features)
    lake.write(reference.with_columns(model_version=pl.lit(result.version)), CASE, REFERENCE)
    return result


def promotion_gate(training: Training, registry: Registry, settings: FraudSettings) -> Verdict:
    champion = registry.alias_version(settings.cascade.registered_model_name, CHAMPION)
    return gate(training.evaluation.metrics(), training.version, champion, settings)


def train_from_transactions(
    registry: Registry, tx: pl.DataFrame, settings: FraudSettings, promote: bool, run_name: str = "from-transactions"
) -> tuple[Training, RuleLists]:
    """Features, rules, cascade and evaluation from raw transactions in one call (benchmarks,
    tests); the assets run the same steps one asset at a time. `promote` applies the gate's
    verdict through the one promotion path, as the gate check and the champion asset would."""
    feature_registry = registry_for(settings)
    features = batch_features(tx, feature_registry)
    split = split_of([str(d) for d in features[DAY].unique().to_list()], settings)
    train_features = split.frame(features, "train")
    lists = build_lists(
        tx.filter(pl.col("tx_id").is_in(train_features["tx_id"].implode())), train_features, feature_registry, settings
    )
    result = fit(with_rules(features, tx, lists, feature_registry, settings), split, registry, settings, run_name)
    if promote:
        promotion.record(registry, promotion_gate(result, registry, settings))
        promotion.promote(registry, settings.cascade.registered_model_name, result.version)
    return result, lists


# --------------------------------------------------------------------------- scoring and evaluation


def score_days(lake: Lake, registry: Registry, settings: FraudSettings, days: list[str]) -> dict[str, int | str]:
    """Score the named loaded days with the champion and store one file per day."""
    cascade, version = load_cascade(registry, settings)
    features = read_days(lake, FEATURES, days, f"{CASE}/{FEATURES}")
    missing = [f for f in cascade.layer3_features if f not in features.columns and f != "rule_score"]
    if missing:
        raise ValueError(
            f"the champion v{version} needs features the table lacks ({', '.join(missing[:5])}): rebuild {CASE}/{FEATURES} with its settings, or train again"
        )
    data = with_rules(features, read_transactions(lake, days), read_rules(lake), cascade.registry, settings)
    scored = score_rows(cascade, data)
    scored = scored.with_columns(decision=cascade.decide(scored), model_version=pl.lit(version))
    table = scored.select(
        "tx_id", DAY, "amount", "rule_score", "layer", "layer2_score", "score", "decision", "model_version"
    )
    lake.write_many({(CASE, SCORES, (DAY, str(d))): part for (d,), part in table.group_by(DAY)})
    return {"rows": table.height, "model_version": version, "flagged": int((table["decision"] != "approve").sum())}


def default_window(lake: Lake, settings: FraudSettings) -> DateRange:
    return split_of(loaded_days(lake), settings).test


def evaluation_report(
    lake: Lake, registry: Registry, settings: FraudSettings, window: DateRange | None = None
) -> tuple[Evaluation, DateRange, str]:
    """The champion's stored scores over a window (default: the settings' test window) against
    the labels known now. Returns the evaluation, the window and the champion's version."""
    window = window or default_window(lake, settings)
    cascade, version = load_cascade(registry, settings)
    days = [d for d in loaded_days(lake) if window.contains(date.fromisoformat(d))]
    if not days:
        raise ValueError(f"no loaded day in {window.start}..{window.end}: load its transactions first")
    scores = read_days(lake, SCORES, days, f"{CASE}/{SCORES} for these days")
    tx = read_transactions(lake, days)
    scored = scores.join(
        tx.select("tx_id", "is_fraud", *[c for c in ("fraud_pattern",) if c in tx.columns]), on="tx_id", how="inner"
    )
    return evaluate(scored, cascade, window.days, settings), window, version


# --------------------------------------------------------------------------- online store


def warm_online_store(lake: Lake, client, settings: FraudSettings) -> dict[str, int | str]:
    """Warm Redis with what its windows need up to the last loaded day (idempotent)."""
    days = loaded_days(lake)
    if not days:
        raise FileNotFoundError(f"no transactions in the lake: materialize {CASE}/{TRANSACTIONS} first")
    registry = registry_for(settings)
    history, labels = store_history(lake, registry, date.fromisoformat(days[-1]))
    applied = warm_store(client, history, registry, settings.serving, labels)
    return {"transactions": history.height, "applied": applied, "up_to": days[-1]}


def publish_rules(lake: Lake, client) -> str:
    return publish_lists(client, read_rules(lake))


# --------------------------------------------------------------------------- decision log


def compact_decision_log(
    lake: Lake, registry: Registry, settings: FraudSettings, day: str
) -> tuple[pl.DataFrame, list[CheckOutcome]]:
    """One row per decision of the day, stored; and the day's monitoring checks."""
    log = read_decision_log(lake, day)
    lake.write(log, CASE, DECISION_LOG, (DAY, day))
    name = settings.cascade.registered_model_name
    expected = registry.version_metrics(name, registry.alias_version(name, CHAMPION))["flag_rate"]
    reference = lake.read(CASE, REFERENCE)
    history_days = (reference[DAY].min() - date.fromisoformat(loaded_days(lake)[0])).days
    not_compared = registry_for(settings).not_comparable_daily(reference.columns, history_days)
    return log, [
        feature_drift(reference, log, settings, not_compared),
        layer3_share(log, settings),
        decision_rate(log, expected, settings),
    ]


# --------------------------------------------------------------------------- reports


def evaluation_table(evaluation: Evaluation, settings: FraudSettings) -> pl.DataFrame:
    """The evaluation beside the rules-only baseline, layer 2 alone and the seed's figures
    (rates in %, money per month in the settings' currency; the seed's in its own)."""
    m, b, seed = evaluation.cascade, evaluation.baseline, settings.reference
    pct = 100.0
    rows = [
        (
            "recall %",
            b["recall"] * pct,
            m["recall"] * pct,
            m["layer2_only_recall"] * pct,
            seed.rules_recall * pct,
            seed.cascade_recall * pct,
        ),
        (
            "precision %",
            b["precision"] * pct,
            m["precision"] * pct,
            m["layer2_only_precision"] * pct,
            seed.rules_precision * pct,
            seed.cascade_precision * pct,
        ),
        (
            "false-positive share of flags %",
            b["fp_share"] * pct,
            m["fp_share"] * pct,
            None,
            (1 - seed.rules_precision) * pct,
            seed.cascade_fp_share * pct,
        ),
        ("ROC AUC", None, m["roc_auc"], m["layer2_only_roc_auc"], None, None),
        ("average precision", None, m["average_precision"], m["layer2_only_average_precision"], None, None),
        (
            f"fraud caught / month ({settings.economics.currency}; seed {seed.currency})",
            b["fraud_caught_per_month"],
            m["fraud_caught_per_month"],
            None,
            seed.fraud_caught_per_month_before,
            seed.fraud_caught_per_month_after,
        ),
        ("legitimate payments flagged", b["legit_flagged"], m["legit_flagged"], None, None, None),
        ("layer 1: share blocked %", None, m["layer1_block_share"] * pct, None, None, seed.layer1_block_share * pct),
        ("layer 1: precision %", None, m["layer1_precision"] * pct, None, None, seed.layer1_precision * pct),
        ("layer 3: share of traffic %", None, m["layer3_share"] * pct, None, None, seed.layer3_share * pct),
    ]
    return pl.DataFrame(
        rows, schema=["metric", "rules only", "cascade", "layer 2 alone", "seed before", "seed after"], orient="row"
    )
