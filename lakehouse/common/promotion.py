"""The one promotion path of every case: a gate's verdict, recorded on the model version, and the
only function that moves the MLflow alias `champion`.

A gate is floors and comparisons:
- a floor is one of the seed's thresholds (a setting) on the challenger's own figures;
- a comparison sets the challenger against the champion it would replace, or against a baseline
  (rules only, seasonal naive), on the same rows neither trained on, with a bootstrap interval on
  the paired difference. It decides only with enough support (`min_support` items: frauds,
  flagged payments, series, tickets), and refuses only a challenger that is worse beyond noise:
  the whole interval of its gain lies below `-tolerance`. Where no fair comparison exists (the
  champion saw the rows), it says why and the floors decide alone.

The verdict is recorded on the challenger's version (tags `gate`, `gate_summary`, `gate_verdict`)
and a refusal is an outcome, not an error: the gate check fails with severity WARN (an alert, a
green run), the champion stays. `promote` moves `champion` to a version whose recorded verdict
is a pass; `rollback` moves it back to an earlier version that passed. Both append to the
registered model's `champion_log`, and `history` lists every version with its window, verdict and
time as champion: the UI and MLflow read the same tags.

With no champion yet, `serving_choice` names the latest challenger in shadow: its output is
written and evaluated, marked with its version, and never published.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from lakehouse.common.checks import CheckOutcome
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.common.sources import Section

GATE_TAG = "gate"  # passed | failed
GATE_SUMMARY_TAG = "gate_summary"
GATE_VERDICT_TAG = "gate_verdict"  # the verdict as JSON: floors, comparisons, window
TRAINED_UNTIL_TAG = "trained_until"  # last day of data the version learnt from (training and validation)
DATA_WINDOW_TAG = "data_window"  # the windows it was trained and evaluated on, for people
CHAMPION_LOG_TAG = "champion_log"  # on the registered model: every move of `champion`, as JSON

Op = Literal[">=", ">", "<=", "<"]
_PASSES: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
}
_NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


class ComparisonSettings(Section):
    """How a gate compares a challenger with the champion or a baseline (one per case, in its gate settings)."""

    level: float = Field(0.95, gt=0.5, lt=1.0)  # two-sided confidence level of the interval on the paired difference
    tolerance: float = Field(0.0, ge=0.0)  # a loss smaller than this, in the metric's units, never refuses
    resamples: int = Field(1000, ge=100)  # bootstrap resamples
    min_support: int = Field(30, ge=1)  # items a comparison needs before it may decide (frauds, flags, series, tickets)
    seed: int = 0


# --------------------------------------------------------------------------- what a gate concludes


def _figure(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.4g}"


@dataclass(frozen=True)
class Floor:
    """One threshold on the challenger's own figure, e.g. recall >= 0.75."""

    metric: str
    value: float | None
    threshold: float
    op: Op = ">="

    @property
    def passed(self) -> bool:
        return self.value is not None and self.value == self.value and _PASSES[self.op](self.value, self.threshold)

    @property
    def shortfall(self) -> float | None:
        """How far the figure misses its threshold (None when it passes or was not measured)."""
        if self.passed or self.value is None or self.value != self.value:
            return None
        return abs(self.value - self.threshold)

    def reason(self) -> str:
        if self.value is None or self.value != self.value:
            return f"{self.metric} could not be measured (floor {self.op} {self.threshold})"
        missed = f"{self.metric} {_figure(self.value)} {_NEGATED[self.op]} {self.threshold}"
        return f"{missed} (short by {_figure(self.shortfall)})"


@dataclass(frozen=True)
class Comparison:
    """The challenger against another model on the same rows: its gain (positive = better) with an interval."""

    against: str  # "champion v3", "rules only", "seasonal naive"
    metric: str
    higher_is_better: bool
    challenger: float | None = None
    other: float | None = None
    interval: tuple[float, float] | None = None  # of the gain, at `level`
    level: float = 0.95
    tolerance: float = 0.0
    support: int = 0  # items the comparison rests on
    support_unit: str = "rows"  # what `support` counts ("frauds", "flagged payments", "series", "tickets")
    min_support: int = 1
    rows: str = ""  # which rows: window, count, cut-off
    basis: str = "same rows"  # "same rows", "champion refitted at the challenger's cut-off", ...
    impossible: str | None = None  # why no fair comparison exists (the floors decide alone)

    @property
    def gain(self) -> float | None:
        if self.challenger is None or self.other is None:
            return None
        return self.challenger - self.other if self.higher_is_better else self.other - self.challenger

    @property
    def decisive(self) -> bool:
        return self.impossible is None and self.interval is not None and self.support >= self.min_support

    @property
    def worse(self) -> bool:
        """Worse beyond noise: the whole interval of the gain lies below -tolerance."""
        return self.decisive and self.interval[1] < -self.tolerance

    @property
    def status(self) -> str:
        if self.impossible is not None:
            return f"no fair comparison: {self.impossible}"
        if self.support < self.min_support:
            return f"not decisive: {self.support:,} {self.support_unit} (needs {self.min_support:,})"
        if self.interval is None:
            return "not decisive: no interval"
        if self.worse:
            return "worse beyond noise"
        return "better beyond noise" if self.interval[0] > 0 else "not worse beyond noise"

    def describe(self) -> str:
        if self.impossible is not None:
            return f"{self.metric} vs {self.against}: {self.status}"
        interval = (
            f" [{self.interval[0]:+.4g}, {self.interval[1]:+.4g}] at {self.level:.0%}"
            if self.interval is not None
            else ""
        )
        return (
            f"{self.metric} {_figure(self.challenger)} vs {self.against} {_figure(self.other)}: "
            f"gain {_figure(self.gain)}"
            f"{interval} on {self.rows or f'{self.support:,} {self.support_unit}'} ({self.status})"
        )


@dataclass(frozen=True)
class Verdict:
    """A gate's conclusion on one challenger: floors, comparisons, and where the figures come from."""

    model_name: str
    version: str
    champion: str | None
    floors: tuple[Floor, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    window: str = ""  # the rows the figures were measured on
    check_name: str = "promotion_gate"
    headline: str = ""  # the figure people read first, e.g. "recall 0.98, precision 0.86"

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.floors) and not any(c.worse for c in self.comparisons)

    @property
    def reasons(self) -> list[str]:
        return [f.reason() for f in self.floors if not f.passed] + [c.describe() for c in self.comparisons if c.worse]

    def summary(self) -> str:
        """One line: "PASS: v4 ..." or "kept v3; v4 refused: recall 0.71 < 0.75 (short by 0.04)"."""
        figures = f" ({self.headline})" if self.headline else ""
        if self.passed:
            against = f"champion v{self.champion}" if self.champion else "no champion yet"
            undecided = [c for c in self.comparisons if not c.decisive]
            note = f"; {len(undecided)} comparison(s) not decisive" if undecided else ""
            return f"PASS: v{self.version}{figures} against {against}{note}"
        kept = f"kept v{self.champion}" if self.champion else "no champion"
        return f"{kept}; v{self.version} refused{figures}: " + "; ".join(self.reasons)

    def floors_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "floor": [f"{f.metric} {f.op} {f.threshold}" for f in self.floors],
                "value": [f.value for f in self.floors],
                "passed": [f.passed for f in self.floors],
                "short_by": [f.shortfall for f in self.floors],
            },
            schema={"floor": pl.String, "value": pl.Float64, "passed": pl.Boolean, "short_by": pl.Float64},
        )

    def comparisons_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "against": [c.against for c in self.comparisons],
                "metric": [c.metric for c in self.comparisons],
                "challenger": [c.challenger for c in self.comparisons],
                "other": [c.other for c in self.comparisons],
                "gain": [c.gain for c in self.comparisons],
                "low": [c.interval[0] if c.interval else None for c in self.comparisons],
                "high": [c.interval[1] if c.interval else None for c in self.comparisons],
                "support": [f"{c.support:,} {c.support_unit}" for c in self.comparisons],
                "basis": [c.basis for c in self.comparisons],
                "status": [c.status for c in self.comparisons],
            },
            schema={
                "against": pl.String,
                "metric": pl.String,
                "challenger": pl.Float64,
                "other": pl.Float64,
                "gain": pl.Float64,
                "low": pl.Float64,
                "high": pl.Float64,
                "support": pl.String,
                "basis": pl.String,
                "status": pl.String,
            },
        )

    def outcome(self) -> CheckOutcome:
        """The gate's check outcome: a refusal fails with severity WARN (an alert; the run stays green)."""
        first = self.floors[0] if self.floors else None
        return CheckOutcome(
            name=self.check_name,
            passed=self.passed,
            value=round(first.value, 4) if first and first.value is not None and first.value == first.value else None,
            threshold="; ".join(
                [f"{f.metric} {f.op} {f.threshold}" for f in self.floors] + ["not worse than the champion beyond noise"]
            ),
            description=self.summary(),
            severity="WARN",
            metadata={
                "verdict": "pass" if self.passed else "refused",
                "challenger_version": self.version,
                "champion_version": self.champion or "none",
                "measured_on": self.window or "n/a",
                "floors": self.floors_frame(),
                **({"comparisons": self.comparisons_frame()} if self.comparisons else {}),
            },
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        raw = json.loads(text)
        comparisons = tuple(
            Comparison(**{**c, "interval": tuple(c["interval"]) if c.get("interval") else None})
            for c in raw.pop("comparisons", [])
        )
        floors = tuple(Floor(**f) for f in raw.pop("floors", []))
        return cls(**raw, floors=floors, comparisons=comparisons)


# --------------------------------------------------------------------------- comparisons


def paired_gain(
    challenger: Callable[[np.ndarray], float],
    other: Callable[[np.ndarray], float],
    units: int,
    settings: ComparisonSettings,
    higher_is_better: bool,
) -> tuple[float, float, tuple[float, float] | None]:
    """(challenger's figure, the other's, percentile bootstrap interval of the gain) over `units` resampled
    with replacement; each function computes its model's metric on the units it is given (indices, repeats
    allowed), so both see the same resample. Units are rows, or clusters of rows (customers, series) when
    rows are not independent."""
    from scipy.stats import bootstrap

    everything = np.arange(units)
    ours, theirs = challenger(everything), other(everything)
    if units < 2:
        return ours, theirs, None
    sign = 1.0 if higher_is_better else -1.0

    def gain(index: np.ndarray) -> float:
        return sign * (challenger(index) - other(index))

    result = bootstrap(
        (everything,),
        gain,
        vectorized=False,
        n_resamples=settings.resamples,
        confidence_level=settings.level,
        method="percentile",
        rng=np.random.default_rng(settings.seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return ours, theirs, None if math.isnan(low) or math.isnan(high) else (low, high)


def compare(
    against: str,
    metric: str,
    *,
    challenger: Callable[[np.ndarray], float],
    other: Callable[[np.ndarray], float],
    units: int,
    support: int,
    support_unit: str,
    settings: ComparisonSettings,
    higher_is_better: bool = True,
    rows: str = "",
    basis: str = "same rows",
    min_support: int | None = None,
) -> Comparison:
    """A comparison on shared rows (see `paired_gain`); `support` counts the items the metric rests on."""
    ours, theirs, interval = paired_gain(challenger, other, units, settings, higher_is_better)
    return Comparison(
        against=against,
        metric=metric,
        higher_is_better=higher_is_better,
        challenger=float(ours),
        other=float(theirs),
        interval=interval,
        level=settings.level,
        tolerance=settings.tolerance,
        support=int(support),
        support_unit=support_unit,
        min_support=settings.min_support if min_support is None else min_support,
        rows=rows,
        basis=basis,
    )


def no_fair_comparison(against: str, metric: str, reason: str, higher_is_better: bool = True) -> Comparison:
    return Comparison(against=against, metric=metric, higher_is_better=higher_is_better, impossible=reason)


# --------------------------------------------------------------------------- recording and moving the alias


def record(registry: Registry, verdict: Verdict) -> None:
    """Write the verdict on the challenger's version: the only input `promote` trusts."""
    tags = {
        GATE_TAG: "passed" if verdict.passed else "failed",
        GATE_SUMMARY_TAG: verdict.summary()[:5000],
        GATE_VERDICT_TAG: verdict.to_json(),
        "gate_at": _now(),
    }
    for key, value in tags.items():
        registry.client.set_model_version_tag(verdict.model_name, verdict.version, key, value)


def recorded_verdict(registry: Registry, model_name: str, version: str) -> tuple[str | None, str]:
    """('passed' | 'failed' | None when never gated, the gate's one-line summary)."""
    tags = registry.client.get_model_version(model_name, version).tags
    return tags.get(GATE_TAG), tags.get(GATE_SUMMARY_TAG, "")


def tag_training(registry: Registry, model_name: str, version: str, trained_until: str, data_window: str) -> None:
    """What a new version learnt from: its last day of data, and its windows in words."""
    registry.client.set_model_version_tag(model_name, version, TRAINED_UNTIL_TAG, trained_until)
    registry.client.set_model_version_tag(model_name, version, DATA_WINDOW_TAG, data_window[:5000])


@dataclass(frozen=True)
class Promotion:
    """What a promotion or a rollback did to `champion`."""

    model_name: str
    version: str | None  # the version considered
    previous: str | None  # champion before
    champion: str | None  # champion after
    moved: bool
    message: str

    @property
    def refused(self) -> bool:
        return not self.moved and self.version is not None and self.version != self.champion


def promote(registry: Registry, model_name: str, version: str | None = None) -> Promotion:
    """Move `champion` to `version` (default: the current challenger) if its recorded verdict is a pass;
    otherwise keep the champion and say why. Never raises for a refusal."""
    version = version or registry.alias_version(model_name, CHALLENGER)
    previous = registry.alias_version(model_name, CHAMPION)
    if version is None:
        return Promotion(model_name, None, previous, previous, False, f"{model_name} has no challenger to promote")
    if version == previous:
        return Promotion(model_name, version, previous, previous, False, f"v{version} is already the champion")
    verdict, summary = recorded_verdict(registry, model_name, version)
    if verdict != "passed":
        why = summary if verdict else f"no gate has judged v{version}"
        kept = f"kept v{previous}" if previous else "no champion"
        message = why if why.startswith(kept) else f"{kept}; v{version} not promoted: {why}"
        return Promotion(model_name, version, previous, previous, False, message)
    _move(registry, model_name, version, previous, note=f"gate passed: {summary}")
    return Promotion(model_name, version, previous, version, True, f"champion v{previous or 'none'} -> v{version}")


def rollback(registry: Registry, model_name: str, version: str, reason: str) -> Promotion:
    """Move `champion` back to an earlier `version` whose gate passed, recording the reason."""
    previous = registry.alias_version(model_name, CHAMPION)
    verdict, _ = recorded_verdict(registry, model_name, version)
    if verdict != "passed":
        raise ValueError(
            f"{model_name} v{version} cannot become champion: its gate verdict is {verdict or 'missing'}; "
            f"roll back to a version that passed ({', '.join(passed_versions(registry, model_name)) or 'none yet'})"
        )
    if not reason.strip():
        raise ValueError("a rollback needs a reason (it is recorded in the model's history)")
    if version == previous:
        return Promotion(model_name, version, previous, previous, False, f"v{version} is already the champion")
    _move(registry, model_name, version, previous, note=f"rollback: {reason.strip()}")
    return Promotion(model_name, version, previous, version, True, f"rolled back v{previous} -> v{version}: {reason}")


def passed_versions(registry: Registry, model_name: str) -> list[str]:
    versions = registry.client.search_model_versions(f"name = '{model_name}'")
    return sorted((str(v.version) for v in versions if v.tags.get(GATE_TAG) == "passed"), key=int)


def _move(registry: Registry, model_name: str, version: str, previous: str | None, note: str) -> None:
    log = champion_log(registry, model_name)
    log.append({"at": _now(), "from": previous, "to": version, "note": note[:500]})
    while len(json.dumps(log)) > 90_000:  # the registry keeps a tag of at most 100,000 characters
        log.pop(0)
    registry.client.set_registered_model_alias(model_name, CHAMPION, version)
    registry.client.set_registered_model_tag(model_name, CHAMPION_LOG_TAG, json.dumps(log))


def champion_log(registry: Registry, model_name: str) -> list[dict]:
    tags = registry.client.get_registered_model(model_name).tags
    return json.loads(tags.get(CHAMPION_LOG_TAG, "[]"))


def history(registry: Registry, model_name: str) -> pl.DataFrame:
    """Every version: registered when, trained until, its windows, the gate's verdict, its periods as champion."""
    from mlflow.exceptions import MlflowException

    schema = {
        "version": pl.Int64,
        "registered": pl.String,
        "trained_until": pl.String,
        "data_window": pl.String,
        "gate": pl.String,
        "gate_summary": pl.String,
        "champion_from": pl.String,
        "champion_until": pl.String,
        "aliases": pl.String,
    }
    try:
        model = registry.client.get_registered_model(model_name)
    except MlflowException:
        return pl.DataFrame(schema=schema)
    log = json.loads(model.tags.get(CHAMPION_LOG_TAG, "[]"))
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    periods: dict[str, list[tuple[str, str | None]]] = {}
    for event in log:
        if event["from"] is not None and periods.get(event["from"]):
            start, _ = periods[event["from"]][-1]
            periods[event["from"]][-1] = (start, event["at"])
        periods.setdefault(event["to"], []).append((event["at"], None))
    rows = []
    for v in registry.client.search_model_versions(f"name = '{model_name}'"):
        spans = periods.get(str(v.version), [])
        rows.append(
            {
                "version": int(v.version),
                "registered": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
                "trained_until": v.tags.get(TRAINED_UNTIL_TAG),
                "data_window": v.tags.get(DATA_WINDOW_TAG),
                "gate": v.tags.get(GATE_TAG, "not judged"),
                "gate_summary": v.tags.get(GATE_SUMMARY_TAG),
                "champion_from": "; ".join(s for s, _ in spans) or None,
                "champion_until": "; ".join(u or "now" for _, u in spans) or None,
                "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
            }
        )
    return pl.DataFrame(rows, schema=schema).sort("version")


# --------------------------------------------------------------------------- which version serves


@dataclass(frozen=True)
class ModelChoice:
    """The version whose output a step writes: the champion, or in shadow the latest challenger."""

    version: str
    alias: str
    shadow: bool
    note: str = field(default="")

    @property
    def label(self) -> str:
        return f"v{self.version} (shadow: not promoted)" if self.shadow else f"v{self.version} (champion)"


def serving_choice(registry: Registry, model_name: str) -> ModelChoice | None:
    """The champion; with none yet, the latest challenger in shadow (its output is never published); None
    when no version exists."""
    champion = registry.alias_version(model_name, CHAMPION)
    if champion is not None:
        return ModelChoice(champion, CHAMPION, False)
    challenger = registry.alias_version(model_name, CHALLENGER)
    if challenger is None:
        return None
    _, summary = recorded_verdict(registry, model_name, challenger)
    return ModelChoice(challenger, CHALLENGER, True, summary or "not judged by a gate yet")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
