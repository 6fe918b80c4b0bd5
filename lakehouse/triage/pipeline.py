"""The triage case's steps: what assets, demos, benchmarks and tests all call.

Each function takes frames, the lake and the case's settings, and returns its results with
the check outcomes they carry. Monthly tables live in the lake under `month=YYYY-MM`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from lakehouse.common.checks import CheckOutcome
from lakehouse.common.lake import Lake
from lakehouse.common.loads import split_partitions
from lakehouse.common.promotion import Comparison, Floor, Verdict
from lakehouse.common.schema import InputDataError, validate_frame, validate_references
from lakehouse.common.sources import CaseSource, load_table
from lakehouse.triage.model import AUTO, TriageClassifier, evaluate, route
from lakehouse.triage.monitoring import (
    category_recall_check,
    confusion,
    human_validation_rate_check,
    mean_confidence_check,
    mix_drift_check,
    per_category,
)
from lakehouse.triage.pii import KnownPeople, model_text, prepare
from lakehouse.triage.pii_audit import residual_pii
from lakehouse.triage.roi import RoiResult, compute_roi
from lakehouse.triage.schemas import (
    AGENT_LABELS,
    CLEAN_TICKETS,
    CUSTOMER_OPTIONAL,
    CUSTOMERS,
    LABEL_OPTIONAL,
    TICKET_OPTIONAL,
    TICKETS,
    with_optional_columns,
)
from lakehouse.triage.settings import TriageSettings

CASE = "triage"
MONTH = "month"


def month_of(partition_key: str) -> str:
    """'2026-03-01' (a monthly partition key) -> '2026-03' (the lake's partition value)."""
    return partition_key[:7]


def month_start(month: str) -> datetime:
    return datetime.fromisoformat(f"{month[:7]}-01")


def month_end(month: str) -> datetime:
    """First instant of the next month (exclusive end)."""
    start = month_start(month)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1)


# --------------------------------------------------------------------------- raw tables


@dataclass
class RawTables:
    """A helpdesk export: tickets, agent labels and (optionally) the CRM's customers, validated."""

    tickets: pl.DataFrame
    labels: pl.DataFrame
    customers: pl.DataFrame | None
    origin: str  # where the rows come from, for metadata
    tickets_label: str  # the file (and mapping) of each table, for errors
    labels_label: str
    rows_outside_selection: str = "refuse"


def load_source(source: CaseSource, today: date) -> RawTables:
    """The user's tables, each mapped and validated, every reference known; the CRM may be absent."""
    source.check_no_misnamed_files([t.name for t in (TICKETS, AGENT_LABELS, CUSTOMERS)])
    tickets = load_table(source, TICKETS, today=today, optional=TICKET_OPTIONAL)
    labels = load_table(source, AGENT_LABELS, today=today, optional=LABEL_OPTIONAL)
    customers = load_table(source, CUSTOMERS, today=today, optional=CUSTOMER_OPTIONAL, required=False)
    raw = RawTables(
        with_optional_columns(tickets.frame, TICKETS),
        with_optional_columns(labels.frame, AGENT_LABELS),
        with_optional_columns(customers.frame, CUSTOMERS) if customers else None,
        origin=str(source.folder),
        tickets_label=tickets.label,
        labels_label=labels.label,
        rows_outside_selection=source.table(TICKETS.name).rows_outside_selection,
    )
    if raw.customers is not None:
        validate_references(
            raw.tickets,
            "customer_id",
            raw.customers,
            "customer_id",
            source=raw.tickets_label,
            table="tickets",
            parent_table="customers",
        )
    validate_references(
        raw.labels,
        "ticket_id",
        raw.tickets,
        "ticket_id",
        source=raw.labels_label,
        table="agent_labels",
        parent_table="tickets",
    )
    return raw


def generated(
    tickets: pl.DataFrame, labels: pl.DataFrame, customers: pl.DataFrame, origin: str, today: date
) -> RawTables:
    """Tables from the synthetic helpdesk, validated like a user's."""
    return RawTables(
        validate_frame(tickets, TICKETS, source="generator", today=today),
        validate_frame(labels, AGENT_LABELS, source="generator", today=today),
        validate_frame(customers, CUSTOMERS, source="generator", today=today),
        origin=origin,
        tickets_label="generator",
        labels_label="generator",
    )


def partition_key(settings: TriageSettings, column: str = "created_at") -> pl.Expr:
    """The monthly partition key ('YYYY-MM-01') of a UTC time, in the calendar's time zone."""
    local = pl.col(column).dt.replace_time_zone("UTC").dt.convert_time_zone(settings.calendar.timezone)
    return local.dt.strftime("%Y-%m-01")


def split_months(
    raw: RawTables,
    selected: list[str],
    allowed: list[str],
    settings: TriageSettings,
    lake: Lake,
    *,
    replace_with_empty: bool = False,
) -> tuple[dict[str, tuple[pl.DataFrame, pl.DataFrame]], int]:
    """(tickets, labels) of each selected month (labels go with their ticket's month), refusing rows of months
    outside the calendar or the selection, and selected months without tickets, before anything is written;
    and the count of tickets of other months skipped (`rows_outside_selection: skip`)."""
    hint = TriageSettings.where("calendar.start")
    tickets = split_partitions(
        raw.tickets,
        partition_key(settings),
        selected=selected,
        allowed=allowed,
        label=raw.tickets_label,
        table="tickets",
        column="created_at",
        calendar_hint=hint,
        rows_outside_selection=raw.rows_outside_selection,
        replace_with_empty=replace_with_empty,
    )
    months = raw.tickets.select("ticket_id", pl.col("created_at").alias("__created_at"))
    labels = split_partitions(
        raw.labels.join(months, on="ticket_id", how="left"),
        partition_key(settings, "__created_at"),
        selected=selected,
        allowed=allowed,
        label=raw.labels_label,
        table="agent_labels",
        column="ticket_id",
        calendar_hint=hint,
        rows_outside_selection="skip",
        replace_with_empty=True,
    )
    emptied = [k for k in selected if labels.frames[k].is_empty() and _stored_rows(lake, "agent_labels", month_of(k))]
    if emptied and not replace_with_empty:
        raise InputDataError(
            raw.labels_label,
            "agent_labels",
            None,
            f"no label for the tickets of {', '.join(emptied[:10])}, which have stored labels: the stored labels are "
            "kept. Run with `replace_with_empty: true` to store them empty on purpose",
        )
    return {k: (tickets.frames[k], labels.frames[k].drop("__created_at")) for k in selected}, tickets.skipped_rows


def _stored_rows(lake: Lake, name: str, month: str) -> int:
    return lake.read(CASE, name, (MONTH, month)).height if lake.exists(CASE, name, (MONTH, month)) else 0


def scrub_tickets(tickets: pl.DataFrame, people: KnownPeople, month: str, region: str) -> pl.DataFrame:
    """The month's tickets with scrubbed, cleaned text only (the raw text is dropped)."""
    subjects, bodies, texts, counts = [], [], [], []
    for subject, body, customer in zip(tickets["subject"], tickets["body"], tickets["customer_id"], strict=True):
        s, b, found = prepare(subject, body or "", people, customer, region)
        subjects.append(s)
        bodies.append(b)
        texts.append(model_text(s, b))
        counts.append(sum(found.values()))
    clean = tickets.select("ticket_id", "customer_id", "channel", "created_at").with_columns(
        month=pl.lit(month),
        subject=pl.Series(subjects, dtype=pl.String),
        body=pl.Series(bodies, dtype=pl.String),
        text=pl.Series(texts, dtype=pl.String),
        order_refs=tickets["order_refs"],
        pii_found=pl.Series(counts, dtype=pl.Int64),
    )
    return clean.select(CLEAN_TICKETS.column_names).sort("created_at", "ticket_id")


@dataclass
class Ingested:
    summary: pl.DataFrame  # per month: tickets, labelled, PII items replaced
    check: CheckOutcome  # no_pii_left, from the independent detector
    written: bool  # the months were stored (only when the check passed)
    skipped: int  # tickets of months the run did not select (a growing file loaded month by month)


def ingest(
    raw: RawTables,
    selected: list[str],
    allowed: list[str],
    settings: TriageSettings,
    lake: Lake,
    *,
    replace_with_empty: bool = False,
) -> Ingested:
    """Split, scrub and audit the selected months; store them only when the audit finds no personal data left."""
    months, skipped = split_months(raw, selected, allowed, settings, lake, replace_with_empty=replace_with_empty)
    people = KnownPeople.from_records(raw.customers.to_dicts()) if raw.customers is not None else KnownPeople()
    tables, rows, residual = {}, [], {}
    for key, (tickets, labels) in months.items():
        month = month_of(key)
        clean = scrub_tickets(tickets, people, month, settings.phone_region)
        found = residual_pii(clean["text"], clean["customer_id"], people, settings.phone_region)
        for kind, n in found.items():
            residual[kind] = residual.get(kind, 0) + n
        tables[(CASE, "tickets_clean", (MONTH, month))] = clean
        tables[(CASE, "agent_labels", (MONTH, month))] = labels
        rows.append(
            {
                "month": month,
                "tickets": clean.height,
                "labelled": labels.height,
                "pii_replaced": int(clean["pii_found"].sum()),
            }
        )
    left = sum(residual.values())
    check = CheckOutcome(
        "no_pii_left",
        left == 0,
        left,
        "== 0",
        "no personal data found in the scrubbed text by the independent detector"
        if not left
        else f"{left} personal data item(s) left after scrubbing "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(residual.items()))}): nothing was stored",
        severity="ERROR",
        metadata={
            "pii_replaced": sum(r["pii_replaced"] for r in rows),
            **{f"left_{k}": n for k, n in residual.items()},
        },
    )
    if check.passed:
        lake.write_many(tables)
    summary = pl.DataFrame(
        rows, schema={"month": pl.String, "tickets": pl.Int64, "labelled": pl.Int64, "pii_replaced": pl.Int64}
    )
    return Ingested(summary, check, check.passed, skipped)


def read_months(lake: Lake, name: str, months: list[str] | None = None) -> pl.DataFrame:
    return lake.read_partitions(CASE, name, MONTH, months)


# --------------------------------------------------------------------------- hold-out and training set


def latest_month_end(lake: Lake) -> datetime:
    """The default cut-off of a training: the end of the latest stored month."""
    months = lake.partitions(CASE, "tickets_clean", MONTH)
    if not months:
        raise FileNotFoundError("no month of tickets is stored: materialize triage/tickets_clean first")
    return month_end(months[-1])


def labelled(clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Tickets created before `as_of` whose validated label was known before it."""
    known = labels.filter(pl.col("labelled_at") < as_of).select("ticket_id", "category", "labelled_at")
    return clean.filter(pl.col("created_at") < as_of).join(known, on="ticket_id")


def in_holdout(ticket_ids: pl.Series, share: float) -> pl.Series:
    """Stable membership of the frozen hold-out, from a hash of the ticket id."""

    def bucket(ticket_id: str) -> float:
        return int.from_bytes(hashlib.sha256(ticket_id.encode()).digest()[:8], "big") / 2**64

    return pl.Series([bucket(t) < share for t in ticket_ids], dtype=pl.Boolean)


def build_holdout(clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime, settings: TriageSettings) -> pl.DataFrame:
    """The frozen hold-out: the hashed share of every labelled ticket known at `as_of` (empty when the share is 0)."""
    rows = labelled(clean, labels, as_of)
    return (
        rows.filter(in_holdout(rows["ticket_id"], settings.training.holdout_share))
        .select("ticket_id", "month", "created_at", "text", "category")
        .sort("created_at", "ticket_id")
    )


def build_training_set(
    clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime, settings: TriageSettings
) -> pl.DataFrame:
    """Validated tickets known at `as_of`, outside the hold-out: the most recent `training.tickets` (all by
    default). Validation: the `training.validation` period when set, else the newest `validation_share`."""
    t = settings.training
    rows = labelled(clean, labels, as_of)
    rows = rows.filter(~in_holdout(rows["ticket_id"], t.holdout_share)).sort("created_at", "ticket_id")
    rows = rows.select("ticket_id", "month", "created_at", "text", "category", "labelled_at")
    window = t.validation_window(as_of)
    if window is None:
        rows = rows.tail(t.tickets) if t.tickets else rows
        n_valid = max(1, round(rows.height * t.validation_share))
        return rows.with_columns(
            split=pl.Series(["train"] * (rows.height - n_valid) + ["validation"] * n_valid, dtype=pl.String)
        )
    day = pl.col("created_at").dt.date()
    is_validation = day.is_between(window.start, window.end)
    train = rows.filter(~is_validation)
    train = train.tail(t.tickets) if t.tickets else train
    return pl.concat(
        [train.with_columns(split=pl.lit("train")), rows.filter(is_validation).with_columns(split=pl.lit("validation"))]
    )


def category_mix(categories: pl.Series) -> pl.DataFrame:
    return (
        pl.DataFrame({"category": categories})
        .group_by("category")
        .agg(tickets=pl.len())
        .with_columns(share=pl.col("tickets") / pl.col("tickets").sum())
        .sort("category")
    )


# --------------------------------------------------------------------------- gate


def gate(
    validation: dict,
    comparison: dict | None,
    champion: dict | None,
    version: str,
    champion_version: str | None,
    settings: TriageSettings,
) -> Verdict:
    """The promotion gate: validation macro-F1 and auto-route precision at the threshold (floors), and not worse
    than the champion on the same tickets (`champion` None: there is none yet)."""
    g = settings.gate
    comparisons = ()
    if champion is not None and comparison is not None:
        comparisons = (
            Comparison(
                f"champion v{champion_version}",
                "macro-F1",
                True,
                challenger=comparison["macro_f1"],
                other=champion["macro_f1"],
                tolerance=g.not_worse_tolerance,
                support=int(comparison["tickets"]),
                support_unit="tickets",
                rows="the comparison tickets",
            ),
        )
    return Verdict(
        settings.registered_model_name,
        version,
        champion_version,
        floors=(
            Floor("validation macro-F1", validation["macro_f1"], g.min_macro_f1),
            Floor("auto-route precision", validation["auto_precision"], g.min_auto_precision),
        ),
        comparisons=comparisons,
        window="the validation tickets and the frozen hold-out",
        headline=f"accuracy {validation['accuracy']:.3f}, macro-F1 {validation['macro_f1']:.3f}",
    )


@dataclass
class Challenger:
    version: str
    run_id: str
    validation: dict[str, float]
    holdout: dict[str, float] | None  # None when there is no frozen hold-out (share 0)
    champion: dict[str, float] | None  # the champion on the same comparison tickets; None: no champion yet
    champion_version: str | None
    gate: Verdict
    train_seconds: float
    training_rows: int
    steps: int
    temperature: float
    out_of_scope_threshold: float
    auto_threshold: float
    auto_precision_target_met: bool | None

    def metadata(self) -> dict:
        v, h = self.validation, self.holdout
        rows = (
            [("validation", v)]
            + ([("frozen hold-out", h)] if h else [])
            + ([(f"champion v{self.champion_version}", self.champion)] if self.champion else [])
        )
        table = pl.DataFrame(
            {
                "set": [name for name, _ in rows],
                **{
                    k: [m[k] for _, m in rows]
                    for k in (
                        "accuracy",
                        "macro_f1",
                        "in_scope_accuracy",
                        "out_of_scope_recall",
                        "auto_rate",
                        "auto_precision",
                        "tickets",
                    )
                },
            }
        )
        pct = lambda x: f"{x:.1%}" if x == x else "-"  # noqa: E731
        return {
            "model_version": self.version,
            "mlflow_run_id": self.run_id,
            "accuracy": round(v["accuracy"], 4),
            "macro_f1": round(v["macro_f1"], 4),
            "auto_rate": pct(v["auto_rate"]),
            "auto_precision": pct(v["auto_precision"]),
            "out_of_scope_recall": pct(v["out_of_scope_recall"]),
            "train_seconds": round(self.train_seconds, 1),
            "training_rows": self.training_rows,
            "steps": self.steps,
            "temperature": round(self.temperature, 3),
            "out_of_scope_threshold": round(self.out_of_scope_threshold, 4),
            "auto_threshold": round(self.auto_threshold, 4),
            "auto_precision_target_met": "no target set"
            if self.auto_precision_target_met is None
            else self.auto_precision_target_met,
            "champion_at_training": self.champion_version or "none",
            "gate": self.gate.summary(),
            "metrics": table,
        }


def train_challenger(
    training: pl.DataFrame,
    holdout: pl.DataFrame,
    lake: Lake,
    registry,
    settings: TriageSettings,
    run_name: str,
    log=print,
) -> Challenger:
    """Train on the training set's `train` rows, score on its `validation` rows and on the frozen hold-out (the
    champion too, on the same tickets), register the challenger, and return the gate's outcome."""
    from lakehouse.common.registry import CHAMPION
    from lakehouse.triage.model import load_classifier, log_model, remove, score, train

    train_rows, validation = (
        training.filter(pl.col("split") == "train"),
        training.filter(pl.col("split") == "validation"),
    )
    log(
        f"training on {train_rows.height} tickets ({train_rows['category'].n_unique()} categories), "
        f"validating on {validation.height}"
    )
    trained = train(train_rows, validation, settings, log=log)
    try:
        log(
            f"trained in {trained.train_seconds:.0f} s ({trained.steps} steps); temperature {trained.temperature:.2f}, "
            f"out-of-scope threshold {trained.out_of_scope_threshold:.3f}, auto-route threshold "
            f"{trained.auto_threshold:.4f} (precision target {settings.auto_precision_target})"
        )
        scores = score(trained.classifier, validation, settings)
        held = score(trained.classifier, holdout, settings) if holdout.height else None
        comparison_set = holdout if holdout.height else validation
        champion_version = registry.alias_version(settings.registered_model_name, CHAMPION)
        champion = None
        if champion_version is not None:
            classifier, _ = load_classifier(registry, settings, CHAMPION)
            champion = score(classifier, comparison_set, settings)
        t = settings.training
        params = {
            "training_rows": train_rows.height,
            "validation_rows": validation.height,
            "steps": trained.steps,
            "batch_size": t.batch_size,
            "epochs": t.epochs,
            "max_steps": t.max_steps,
            "max_tokens": t.max_tokens,
            "learning_rate": t.learning_rate,
            "probe_per_category": t.probe_per_category,
            "auto_precision_level": settings.auto_precision_level,
            "threshold": settings.confidence_threshold,
            "categories": len(trained.categories),
            "temperature": trained.temperature,
            "out_of_scope_threshold": trained.out_of_scope_threshold,
            "auto_threshold": trained.auto_threshold,
            "auto_precision_target": settings.auto_precision_target,
            "training_from": str(training["created_at"].min()),
            "training_to": str(training["created_at"].max()),
            "champion_at_training": champion_version or "none",
        }
        metrics = {
            **scores,
            **{f"holdout_{k}": v for k, v in (held or {}).items()},
            "train_seconds": trained.train_seconds,
        }
        if champion:
            metrics["champion_macro_f1"] = champion["macro_f1"]
        version, run_id = log_model(
            registry, CASE, trained, params, metrics, validation.head(3)["text"].to_list(), settings, run_name
        )
    finally:
        remove(trained)
    known = train_rows.filter(pl.col("category") != settings.out_of_scope.category)
    lake.write(category_mix(known["category"]), CASE, "training_mix", ("model_version", version))
    outcome = gate(scores, held or scores, champion, version, champion_version, settings)
    log(
        f"challenger v{version}: accuracy {scores['accuracy']:.3f}, auto {scores['auto_rate']:.1%} at "
        f"{scores['auto_precision']:.1%}; {outcome.summary()}"
    )
    return Challenger(
        version,
        run_id,
        scores,
        held,
        champion,
        champion_version,
        outcome,
        trained.train_seconds,
        train_rows.height,
        trained.steps,
        trained.temperature,
        trained.out_of_scope_threshold,
        trained.auto_threshold,
        trained.auto_precision_target_met,
    )


# --------------------------------------------------------------------------- routing


def route_tickets(
    classifier: TriageClassifier, tickets: pl.DataFrame, version: str, settings: TriageSettings
) -> pl.DataFrame:
    """Every ticket classified and routed at the classifier's auto threshold: category, confidence, route and reason,
    team when auto-routed, and the threshold that decided."""
    started = time.perf_counter()
    predicted = route(classifier.predict(tickets["text"].to_list()), classifier.auto_threshold)
    seconds = time.perf_counter() - started
    teams = [
        settings.team(c) if r == AUTO else None for c, r in zip(predicted["category"], predicted["route"], strict=True)
    ]
    return tickets.select("ticket_id", "month", "created_at").with_columns(
        predicted.select("category", "confidence", "out_of_scope", "route", "reason"),
        team=pl.Series(teams, dtype=pl.String),
        model_version=pl.lit(version),
        auto_threshold=pl.lit(classifier.auto_threshold, dtype=pl.Float64),
        decision_ms=pl.lit(1000 * seconds / max(1, tickets.height)),
    )


def routing_checks(routes: pl.DataFrame, training_mix: pl.DataFrame, settings: TriageSettings) -> list[CheckOutcome]:
    reference = dict(zip(training_mix["category"], training_mix["share"], strict=True))
    return [
        mean_confidence_check(routes, settings.monitoring),
        human_validation_rate_check(routes, settings.monitoring),
        mix_drift_check(routes.filter(~pl.col("out_of_scope"))["category"], reference, settings.monitoring),
    ]


def with_agent_labels(routes: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    return routes.join(labels.select("ticket_id", pl.col("category").alias("agent_category")), on="ticket_id")


@dataclass
class RoutedMonths:
    """The routes of some months and the agents' labels of the same months."""

    months: list[str]
    routes: pl.DataFrame
    labels: pl.DataFrame

    def labelled(self) -> pl.DataFrame:
        """Each routed ticket with its agent's label (`agent_category`); tickets not labelled yet are left out."""
        return with_agent_labels(self.routes, self.labels)


def routed_months(lake: Lake, months: list[str] | None = None) -> RoutedMonths | None:
    """The routes and labels of `months` (YYYY-MM; every routed month by default) that have routes; None when none
    has."""
    routed = lake.partitions(CASE, "ticket_routes", MONTH)
    chosen = routed if months is None else [m for m in months if m in routed]
    if not chosen:
        return None
    labelled = [m for m in chosen if lake.exists(CASE, "agent_labels", (MONTH, m))]
    labels = read_months(lake, "agent_labels", labelled) if labelled else AGENT_LABELS.empty()
    return RoutedMonths(chosen, read_months(lake, "ticket_routes", chosen), labels)


@dataclass
class Confusion:
    categories: list[str]
    matrix: np.ndarray
    stats: pl.DataFrame  # per category: support, recall, precision
    check: CheckOutcome
    accuracy: float
    auto_precision: float | None

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"agent_category": self.categories, **{c: self.matrix[:, j] for j, c in enumerate(self.categories)}}
        )


def monthly_confusion(joined: pl.DataFrame, settings: TriageSettings) -> Confusion:
    """Agent label vs predicted category of a month's routed tickets, per-category recall and precision."""
    cats, matrix = confusion(joined["agent_category"], joined["category"])
    stats = per_category(cats, matrix)
    auto = joined.filter(pl.col("route") == AUTO)
    return Confusion(
        cats,
        matrix,
        stats,
        category_recall_check(stats, settings.monitoring),
        float(np.trace(matrix) / matrix.sum()),
        float((auto["category"] == auto["agent_category"]).mean()) if auto.height else None,
    )


# --------------------------------------------------------------------------- reports


@dataclass
class Evaluation:
    months: list[str]
    metrics: dict[str, float]
    by_reason: pl.DataFrame


def evaluation_report(routes: pl.DataFrame, labels: pl.DataFrame, settings: TriageSettings) -> Evaluation:
    """Quality of the routed tickets of the months `settings.evaluation` picks, against the agents' labels."""
    months = settings.evaluation_months(routes["month"].unique().to_list())
    if not months:
        raise ValueError("no routed month to evaluate: route a month first")
    joined = with_agent_labels(routes.filter(pl.col("month").is_in(months)), labels)
    if joined.is_empty():
        raise ValueError(f"no agent label for the routed tickets of {', '.join(months)}")
    metrics = evaluate(joined["agent_category"].to_list(), joined, settings.out_of_scope.category)
    by_reason = (
        joined.group_by("route", "reason")
        .agg(
            tickets=pl.len(),
            right=(pl.col("category") == pl.col("agent_category")).mean(),
            mean_confidence=pl.col("confidence").mean(),
        )
        .sort("route", "reason")
    )
    return Evaluation(months, metrics, by_reason)


def roi(routes: pl.DataFrame, labels: pl.DataFrame, settings: TriageSettings) -> RoiResult:
    routed = with_agent_labels(routes, labels)
    return compute_roi(routed, float((routed["decision_ms"] / 1000).sum()), settings.economics)
