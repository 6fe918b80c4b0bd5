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
from lakehouse.common.schema import InputDataError, validate_references
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
    """The lake's partition value (`YYYY-MM`) of a month's key ('2026-03', or its first day '2026-03-01')."""
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


def partition_key(settings: TriageSettings, column: str = "created_at") -> pl.Expr:
    """The monthly partition key ('YYYY-MM') of a UTC time, in the calendar's time zone."""
    local = pl.col(column).dt.replace_time_zone("UTC").dt.convert_time_zone(settings.calendar.timezone)
    return local.dt.strftime("%Y-%m")


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
    default). Validation: the `training.validation` period when set; else `validation_share` of them, the newest
    (`validation_split: newest`) or drawn from each category alike (`stratified`)."""
    t = settings.training
    rows = labelled(clean, labels, as_of)
    rows = rows.filter(~in_holdout(rows["ticket_id"], t.holdout_share)).sort("created_at", "ticket_id")
    rows = rows.select("ticket_id", "month", "created_at", "text", "category", "labelled_at")
    window = t.validation_window(as_of)
    if window is None:
        rows = rows.tail(t.tickets) if t.tickets else rows
        if t.validation_split == "stratified":
            return rows.with_columns(split=stratified_split(rows["category"], t.validation_share, t.seed))
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


def stratified_split(categories: pl.Series, share: float, seed: int) -> pl.Series:
    """'validation' for `share` of each category's tickets (at least one, and never its only one), drawn at random
    with `seed`; 'train' for the others."""
    rng = np.random.default_rng(seed)
    values = categories.to_numpy()
    validation = np.zeros(len(values), dtype=bool)
    for category in np.unique(values):
        rows = np.flatnonzero(values == category)
        k = min(len(rows) - 1, max(1, round(len(rows) * share)))
        validation[rng.permutation(rows)[:k]] = True
    return pl.Series("split", np.where(validation, "validation", "train"), dtype=pl.String)


def split_coverage(training: pl.DataFrame) -> dict[str, list[str]]:
    """The categories one side of the split lacks: a category missing from validation is never seen by the gate,
    the calibration or the thresholds; one missing from training can never be predicted."""
    train, validation = (set(training.filter(pl.col("split") == s)["category"]) for s in ("train", "validation"))
    return {"missing_from_validation": sorted(train - validation), "missing_from_training": sorted(validation - train)}


def coverage_warning(coverage: dict[str, list[str]], settings: TriageSettings) -> str | None:
    """What to tell a user whose split lacks categories, and what to change; None when both sides hold them all."""
    missing, untrained = coverage["missing_from_validation"], coverage["missing_from_training"]
    if not missing and not untrained:
        return None
    parts = []
    if missing:
        parts.append(f"validation holds no ticket of {len(missing)} categories ({_few(missing)})")
    if untrained:
        parts.append(f"training holds no ticket of {len(untrained)} validation categories ({_few(untrained)})")
    fix = (
        "if the tickets' arrival time carries no information (e.g. a file sorted by category), set "
        "`training.validation_split: stratified`"
        if settings.training.validation_split == "newest" and settings.training.validation is None
        else "give each category more validated tickets, or another validation period"
    )
    return "; ".join(parts) + f": the gate and the calibration do not see them; {fix}"


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def category_mix(categories: pl.Series) -> pl.DataFrame:
    return (
        pl.DataFrame({"category": categories})
        .group_by("category")
        .agg(tickets=pl.len())
        .with_columns(share=pl.col("tickets") / pl.col("tickets").sum())
        .sort("category")
    )


# --------------------------------------------------------------------------- routing


def route_tickets(
    classifier: TriageClassifier, tickets: pl.DataFrame, version: str, settings: TriageSettings, shadow: bool = False
) -> pl.DataFrame:
    """Every ticket classified and routed at the classifier's auto threshold: category, confidence, route and reason,
    team when auto-routed, the version and threshold that decided, and whether that version is in shadow (no
    champion yet: its routes are evaluated, never published)."""
    started = time.perf_counter()
    predicted = route(classifier.predict(tickets["text"].to_list()), classifier.auto_threshold)
    seconds = time.perf_counter() - started
    teams = [
        settings.team(c) if r == AUTO else None for c, r in zip(predicted["category"], predicted["route"], strict=True)
    ]
    return tickets.select("ticket_id", "month", "created_at").with_columns(
        predicted.select("category", "confidence", "out_of_scope", "top_category", "route", "reason"),
        team=pl.Series(teams, dtype=pl.String),
        model_version=pl.lit(version),
        shadow=pl.lit(shadow, dtype=pl.Boolean),
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
    by_model: pl.DataFrame  # per version that routed these months: shadow or not, its tickets and figures

    @property
    def shadow_versions(self) -> list[str]:
        return self.by_model.filter(pl.col("shadow"))["model_version"].to_list()


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
    oos = settings.out_of_scope.category
    by_model = pl.DataFrame(
        [
            {"model_version": version, "shadow": shadow, **evaluate(rows["agent_category"].to_list(), rows, oos)}
            for (version, shadow), rows in joined.with_columns(_shadow_column(joined)).group_by(
                "model_version", "shadow", maintain_order=True
            )
        ]
    ).sort(pl.col("model_version").cast(pl.Int64, strict=False))
    return Evaluation(months, metrics, by_reason, by_model)


def _shadow_column(routes: pl.DataFrame) -> pl.Expr:
    """Routes written before shadow routing existed were the champion's."""
    return pl.col("shadow").fill_null(False) if "shadow" in routes.columns else pl.lit(False).alias("shadow")


def published(routes: pl.DataFrame) -> pl.DataFrame:
    """The routes a champion decided (shadow routes were never published)."""
    return routes.filter(~_shadow_column(routes))


def roi(routes: pl.DataFrame, labels: pl.DataFrame, settings: TriageSettings) -> RoiResult:
    routed = with_agent_labels(routes, labels)
    return compute_roi(routed, float((routed["decision_ms"] / 1000).sum()), settings.economics)
