"""The steps of the fraud case, each a function of frames, the lake and the settings.

Assets, demos, benchmarks and tests call these same functions: landing transactions (a
user's source through its mapping, or frames from the generator), features, learnt rules,
training with its evaluation, batch scoring of any loaded days with the champion, an
evaluation report over any window, the online store's warm-up and the decision log with its
checks. Tables (under `<lake>/fraud/`): `transactions`, `transaction_features`, `scores`,
`decision_log` (daily partitions `day=YYYY-MM-DD`), `rule_lists`, `reference_features` (one partition per model
version: the drift reference of each version).
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
from lakehouse.fraud.gate import gate, no_fair_champion_comparison, versus_champion, versus_rules
from lakehouse.fraud.model import (
    RULE_SCORE,
    Cascade,
    Evaluation,
    Split,
    evaluate,
    evaluate_window,
    load_cascade,
    log_cascade,
    score_rows,
    train,
)
from lakehouse.fraud.monitoring import decision_rate, feature_drift, layer3_share
from lakehouse.fraud.online import publish_lists, read_decision_log, store_history, warm_store
from lakehouse.fraud.rules import RAW_FIELDS, RuleLists, batch_rules, build_lists
from lakehouse.fraud.schemas import OPTIONAL, missing_pair, transactions_schema
from lakehouse.fraud.settings import CASE, FraudSettings

TRANSACTIONS = "transactions"
FEATURES = "transaction_features"
RULE_LISTS = "rule_lists"
SCORES = "scores"
REFERENCE = "reference_features"
DECISION_LOG = "decision_log"
DAY = "day"
VERSION = "model_version"


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
            f"{CASE}/{name} has no partition for {len(missing)} day(s) "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): materialize {asset} first"
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
            f"no feature partition in the training window {window.start}..{window.end}: "
            f"materialize {CASE}/{FEATURES} first"
        )
    lists = build_lists(
        read_transactions(lake, days), lake.read_partitions(CASE, FEATURES, DAY, days), registry_for(settings), settings
    )
    lake.write(lists.as_frame(), CASE, RULE_LISTS)
    return lists, split


def read_rules(lake: Lake) -> RuleLists:
    return RuleLists.from_frame(lake.read(CASE, RULE_LISTS)) if lake.exists(CASE, RULE_LISTS) else RuleLists()


RAW_EXTRAS = ("amount", "card_id", "fraud_pattern", *RAW_FIELDS)


def with_rules(
    features: pl.DataFrame, raw: pl.DataFrame, lists: RuleLists, registry: FeatureRegistry, settings: FraudSettings
) -> pl.DataFrame:
    """Features, rule score and hits, and the raw columns the evaluation and the rules need."""
    extra = [c for c in dict.fromkeys(RAW_EXTRAS) if c in raw.columns and c not in features.columns]
    rules = batch_rules(features, raw, lists, registry, settings)
    return features.join(rules, on="tx_id").join(raw.select("tx_id", *extra), on="tx_id", how="left")


def rescored_rules(rows: pl.DataFrame, lists: RuleLists, registry: FeatureRegistry, settings: FraudSettings):
    """Rows of `with_rules` with the rule score and hits of other lists (another model version's)."""
    raw_only = [c for c in RAW_FIELDS if c in rows.columns and c != "channel"]
    features = rows.drop(RULE_SCORE, "rule_hits", *raw_only)
    rules = batch_rules(features, rows.select("tx_id", *raw_only), lists, registry, settings)
    return rows.drop(RULE_SCORE, "rule_hits").join(rules, on="tx_id")


# --------------------------------------------------------------------------- training


@dataclass
class Training:
    cascade: Cascade
    evaluation: Evaluation
    split: Split
    version: str
    run_id: str
    test_rows: pl.DataFrame  # the test window's features and rules, for the comparisons of the gate


def fit(
    data: pl.DataFrame, split: Split, registry: Registry, settings: FraudSettings, run_name: str, lists: RuleLists
) -> Training:
    """Train, evaluate on the test window and log the challenger (data: features + rules of `lists`)."""
    cascade = train(data, split, registry_for(settings), settings, lists)
    evaluation = evaluate_window(cascade, data, split.test, settings, layer3_everywhere=True)
    version, run_id = log_cascade(registry, cascade, evaluation, split, settings, run_name)
    return Training(cascade, evaluation, split, version, run_id, split.frame(data, "test"))


def train_cascade(lake: Lake, registry: Registry, settings: FraudSettings, run_name: str) -> Training:
    """The cascade from the lake's features and rules; the test window's layer-2 inputs are
    stored as the drift reference of this version."""
    features = lake.read_partitions(CASE, FEATURES, DAY)
    lists = read_rules(lake)
    data = with_rules(features, read_transactions(lake), lists, registry_for(settings), settings)
    split = split_of([str(d) for d in data[DAY].unique().to_list()], settings)
    result = fit(data, split, registry, settings, run_name, lists)
    reference = split.frame(data, "test").select("tx_id", DAY, *result.cascade.layer2_features)
    lake.write(reference, CASE, REFERENCE, (VERSION, result.version))
    return result


def promotion_gate(training: Training, registry: Registry, settings: FraudSettings) -> Verdict:
    """The gate's verdict on the new version: floors, the comparison with the champion on the test rows
    after both cut-offs, and the comparisons with the rules only."""
    name = settings.cascade.registered_model_name
    champion = registry.alias_version(name, CHAMPION)
    comparisons = versus_rules(training.evaluation.decisions, settings)
    if champion is not None and champion != training.version:
        comparisons.insert(0, _versus_champion(training, registry, champion, settings))
    test = training.split.test
    window = f"the test window {test.start}..{test.end} ({training.evaluation.cascade['transactions']:,.0f} payments)"
    return gate(training.evaluation.metrics(), training.version, champion, settings, comparisons, window)


def _versus_champion(training: Training, registry: Registry, champion: str, settings: FraudSettings):
    name = settings.cascade.registered_model_name
    until = registry.client.get_model_version(name, champion).tags.get(promotion.TRAINED_UNTIL_TAG)
    if until is None:
        return no_fair_champion_comparison(champion, f"v{champion} does not say when its data ends (no trained_until)")
    cutoff = max(date.fromisoformat(until), training.split.trained_until)
    rows = training.test_rows.filter(pl.col(DAY) > cutoff)
    test = training.split.test
    if rows.is_empty():
        return no_fair_champion_comparison(
            champion,
            f"the test window {test.start}..{test.end} has no payment after v{champion}'s cut-off {until} "
            f"and v{training.version}'s {training.split.trained_until}",
        )
    theirs, _ = load_cascade(registry, settings, version=champion)
    missing = sorted(set(theirs.layer3_features) - set(rows.columns) - {RULE_SCORE})
    if missing:
        return no_fair_champion_comparison(
            champion, f"v{champion} needs features this table lacks ({', '.join(missing[:5])})"
        )
    ours = training.evaluation.decisions.filter(pl.col(DAY) > cutoff)
    their_rows = rescored_rules(rows, theirs.lists, registry_for(settings), settings)
    return versus_champion(ours, score_rows(theirs, their_rows), champion, settings, f"{cutoff}")


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
    data = with_rules(features, tx, lists, feature_registry, settings)
    result = fit(data, split, registry, settings, run_name, lists)
    if promote:
        promotion.record(registry, promotion_gate(result, registry, settings))
        promotion.promote(registry, settings.cascade.registered_model_name, result.version)
    return result, lists


# --------------------------------------------------------------------------- scoring and evaluation


SCORE_COLUMNS = (
    "tx_id",
    DAY,
    "ts",
    "customer_id",
    "card_id",
    "merchant_id",
    "amount",
    "is_fraud",
    RULE_SCORE,
    "layer",
    "layer2_score",
    "layer3_score",
    "score",
    "decision",
    "model_version",
    "shadow",
)


@dataclass
class Scored:
    rows: int
    flagged: int
    choice: promotion.ModelChoice


def scored_with(lake: Lake, cascade: Cascade, version: str, days: list[str], settings: FraudSettings) -> pl.DataFrame:
    """The named days' payments scored by a cascade with its own rules, and decided (nothing is stored)."""
    features = read_days(lake, FEATURES, days, f"{CASE}/{FEATURES}")
    missing = [f for f in cascade.layer3_features if f not in features.columns and f != RULE_SCORE]
    if missing:
        raise ValueError(
            f"v{version} needs features the table lacks ({', '.join(missing[:5])}): rebuild {CASE}/{FEATURES} "
            "with its settings, or train again"
        )
    data = with_rules(features, read_transactions(lake, days), cascade.lists, cascade.registry, settings)
    scored = score_rows(cascade, data)
    return scored.with_columns(decision=cascade.decide(scored), model_version=pl.lit(version))


def score_days(lake: Lake, registry: Registry, settings: FraudSettings, days: list[str]) -> Scored | None:
    """Score the named loaded days with the champion (or, with none yet, the latest challenger in shadow) and
    store one file per day; None when no version exists."""
    choice = promotion.serving_choice(registry, settings.cascade.registered_model_name)
    if choice is None:
        return None
    cascade, version = load_cascade(registry, settings, version=choice.version)
    scored = scored_with(lake, cascade, version, days, settings).with_columns(shadow=pl.lit(choice.shadow))
    table = scored.select([c for c in SCORE_COLUMNS if c in scored.columns])
    lake.write_many({(CASE, SCORES, (DAY, str(d))): part for (d,), part in table.group_by(DAY)})
    return Scored(table.height, int((table["decision"] != "approve").sum()), choice)


def default_window(lake: Lake, settings: FraudSettings) -> DateRange:
    return split_of(loaded_days(lake), settings).test


@dataclass
class Report:
    evaluation: Evaluation
    window: DateRange
    version: str
    shadow: bool
    source: str  # "stored scores" or "scored now"


def evaluation_report(
    lake: Lake, registry: Registry, settings: FraudSettings, window: DateRange | None = None, version: str | None = None
) -> Report | None:
    """A model's scores over a window (default: the settings' test window) against the labels known now:
    the stored scores (those of the champion, or of a shadow challenger) or, for a `version` given, that
    version's scores computed now, whether it was promoted or not. None when no version exists."""
    window = window or default_window(lake, settings)
    days = [d for d in loaded_days(lake) if window.contains(date.fromisoformat(d))]
    if not days:
        raise ValueError(f"no loaded day in {window.start}..{window.end}: load its transactions first")
    name = settings.cascade.registered_model_name
    tx = read_transactions(lake, days)
    labels = tx.select("tx_id", "is_fraud", *[c for c in ("fraud_pattern",) if c in tx.columns])
    if version is not None:
        cascade, version = load_cascade(registry, settings, version=version)
        scored = scored_with(lake, cascade, version, days, settings).drop("is_fraud", "fraud_pattern", strict=False)
        source, shadow = "scored now", registry.alias_version(name, CHAMPION) != version
    else:
        if promotion.serving_choice(registry, name) is None:
            return None
        scored = read_days(lake, SCORES, days, f"{CASE}/{SCORES} for these days").drop("is_fraud", strict=False)
        versions = scored.group_by("model_version").agg(pl.col(DAY).unique().sort())
        if versions.height > 1:
            spans = "; ".join(f"v{v}: {len(d)} day(s) from {d[0]}" for v, d in versions.sort("model_version").rows())
            raise ValueError(
                f"the stored scores of {window.start}..{window.end} come from several versions ({spans}): score "
                f"these days again ({CASE}/{SCORES}) or evaluate one version (run config `version`)"
            )
        version = versions["model_version"][0]
        cascade, _ = load_cascade(registry, settings, version=version)
        source, shadow = "stored scores", bool(scored["shadow"].any()) if "shadow" in scored.columns else False
    scored = scored.join(labels, on="tx_id", how="inner")
    return Report(evaluate(scored, cascade, window.days, settings), window, version, shadow, source)


# --------------------------------------------------------------------------- online store


def warm_online_store(lake: Lake, client, settings: FraudSettings) -> dict[str, int | str]:
    """Warm Redis with what its windows need up to the last loaded day (idempotent)."""
    days = loaded_days(lake)
    if not days:
        raise FileNotFoundError(f"no transactions in the lake: materialize {CASE}/{TRANSACTIONS} first")
    registry = registry_for(settings)
    history = store_history(lake, registry, date.fromisoformat(days[-1]))
    applied = warm_store(
        client, history.transactions, registry, settings.serving, history.labels, profiles=history.profiles
    )
    return {"transactions": history.transactions.height, "applied": applied, "up_to": days[-1]}


def publish_champion_rules(registry: Registry, settings: FraudSettings, client) -> tuple[str, str] | None:
    """Publish the champion's own layer-1 rules to Redis (never a shadow model's); returns the
    published version and the champion's, or None when there is no champion."""
    try:
        cascade, version = load_cascade(registry, settings)
    except LookupError:
        return None
    return publish_lists(client, cascade.lists), version


# --------------------------------------------------------------------------- decision log


def compact_decision_log(
    lake: Lake, registry: Registry, settings: FraudSettings, day: str
) -> tuple[pl.DataFrame, list[CheckOutcome]] | None:
    """One row per decision of the day, stored; and the day's monitoring checks against the champion's
    figures (its test-window flag rate and drift reference). None when there is no champion."""
    name = settings.cascade.registered_model_name
    champion = registry.alias_version(name, CHAMPION)
    if champion is None:
        return None
    log = read_decision_log(lake, day)
    lake.write(log, CASE, DECISION_LOG, (DAY, day))
    expected = registry.version_metrics(name, champion)["flag_rate"]
    reference = lake.read(CASE, REFERENCE, (VERSION, champion))
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
            f"card precision @ {settings.evaluation.card_precision_k} per day",
            b["card_precision_at_k"],
            m["card_precision_at_k"],
            None,
            None,
            None,
        ),
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
        ("frauds below the layer-3 band", None, m["frauds_below_band"], None, None, None),
    ]
    return pl.DataFrame(
        rows, schema=["metric", "rules only", "cascade", "layer 2 alone", "seed before", "seed after"], orient="row"
    )
