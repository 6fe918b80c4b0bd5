"""A triage model after its training: the promotion gate, the like-for-like comparison with the champion, and
the evaluation of any registered version on any months, through the one promotion path
(lakehouse.common.promotion).

The gate is two floors and one comparison:
- floors, the seed's figures: the challenger's validation macro-F1 (`gate.min_macro_f1`) and the precision of
  the validation tickets it routes automatically (`gate.min_auto_precision`);
- the comparison: challenger and champion classify the same frozen hold-out tickets, those neither of them
  learnt from (trained, calibrated or validated on: each version's tickets are recorded in the lake), and a
  paired bootstrap over those tickets gives the interval of the difference of their accuracy
  (`gate.comparison`: level, tolerance, resamples, minimum support). Only a challenger worse beyond noise is
  refused. Without a hold-out, or when the champion's tickets are unknown, there is no fair comparison: the
  gate says so and the floors decide.

Accuracy, not macro-F1, is the compared figure. It is a mean over tickets, so resampling tickets gives the
interval of exactly the figure compared, and each ticket weighs what a wrong answer costs (a ticket at the
wrong team is rework whatever its category). Macro-F1 weighs categories alike, and a hold-out holds a few
tickets of most categories (a tenth of a month, 150 categories on CLINC150): resampled, categories drop in and
out of it, and its interval measures that as much as the models. Rare categories keep their guard in the
macro-F1 floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from lakehouse.common.lake import Lake
from lakehouse.common.promotion import Comparison, ComparisonSettings, Floor, Verdict, compare, no_fair_comparison
from lakehouse.triage.model import TriageClassifier, classify, evaluate
from lakehouse.triage.pipeline import CASE, category_mix
from lakehouse.triage.settings import TriageSettings

METRIC = "hold-out accuracy"
LEARNT = "training_tickets"  # lake table: the tickets each version learnt from (train and validation)
VERSION = "model_version"


def record_learnt(lake: Lake, version: str, training: pl.DataFrame) -> None:
    """Keep which tickets `version` learnt from (its training set, validation included)."""
    lake.write(training.select("ticket_id", "split"), CASE, LEARNT, (VERSION, version))


def learnt_by(lake: Lake, version: str) -> pl.Series | None:
    """The tickets `version` learnt from; None when they were not recorded."""
    if not lake.exists(CASE, LEARNT, (VERSION, version)):
        return None
    return lake.read(CASE, LEARNT, (VERSION, version))["ticket_id"]


def unseen(tickets: pl.DataFrame, learnt: list[pl.Series]) -> pl.DataFrame:
    """The tickets none of the given sets holds."""
    seen = pl.concat(learnt).unique() if learnt else pl.Series("ticket_id", [], dtype=pl.String)
    return tickets.filter(~pl.col("ticket_id").is_in(seen.implode()))


def compare_accuracy(
    truth: pl.Series,
    challenger: pl.DataFrame,
    other: pl.DataFrame,
    against: str,
    settings: ComparisonSettings,
    rows: str,
    metric: str = METRIC,
) -> Comparison:
    """The challenger's accuracy against another model's on the same tickets (each frame: one routed row per
    ticket, in the order of `truth`), with the paired bootstrap interval of the gain over tickets."""
    right = (challenger["category"] == truth).to_numpy()
    theirs = (other["category"] == truth).to_numpy()
    return compare(
        against,
        metric,
        challenger=lambda index: float(right[index].mean()),
        other=lambda index: float(theirs[index].mean()),
        units=len(right),
        support=len(right),
        support_unit="tickets",
        settings=settings,
        rows=rows,
    )


@dataclass
class Versus:
    """The challenger against the champion on the hold-out tickets neither learnt from."""

    comparison: Comparison
    challenger: dict[str, float] | None = None  # figures on those tickets; None when no fair comparison exists
    champion: dict[str, float] | None = None


def against_champion(
    classifier: TriageClassifier,
    champion: Callable[[], TriageClassifier],
    champion_version: str,
    holdout: pl.DataFrame,
    learnt: list[pl.Series | None],
    settings: TriageSettings,
) -> Versus:
    """Compare on the hold-out tickets that neither the challenger nor the champion (loaded by `champion` when
    needed) learnt from (`learnt`: the tickets each learnt from; None when unknown, which makes the comparison
    impossible)."""
    against = f"champion v{champion_version}"
    if holdout.is_empty():
        reason = "there is no frozen hold-out (`training.holdout_share` is 0), so no ticket is known new to both"
        return Versus(no_fair_comparison(against, METRIC, reason))
    if any(tickets is None for tickets in learnt):
        reason = (
            f"the tickets v{champion_version} learnt from are not recorded, so no hold-out ticket is known new to it"
        )
        return Versus(no_fair_comparison(against, METRIC, reason))
    rows = unseen(holdout, learnt)
    if rows.is_empty():
        return Versus(no_fair_comparison(against, METRIC, "one of the two models learnt every hold-out ticket"))
    ours, theirs = classify(classifier, rows), classify(champion(), rows)
    left_out = holdout.height - rows.height
    comparison = compare_accuracy(
        rows["category"],
        ours,
        theirs,
        against,
        settings.gate.comparison,
        rows=f"{rows.height:,} frozen hold-out tickets neither model learnt from ({left_out:,} left out)",
    )
    truth, oos = rows["category"].to_list(), settings.out_of_scope.category
    return Versus(comparison, evaluate(truth, ours, oos), evaluate(truth, theirs, oos))


def gate(
    validation: dict[str, float],
    comparison: Comparison | None,
    version: str,
    champion_version: str | None,
    settings: TriageSettings,
) -> Verdict:
    """Floors on the challenger's validation figures, and its comparison with the champion (None: no champion)."""
    g = settings.gate
    return Verdict(
        settings.registered_model_name,
        version,
        champion_version,
        floors=(
            Floor("validation macro-F1", validation["macro_f1"], g.min_macro_f1),
            Floor("auto-route precision", validation["auto_precision"], g.min_auto_precision),
        ),
        comparisons=() if comparison is None else (comparison,),
        window="floors: the validation tickets; comparison: the frozen hold-out tickets neither model learnt from",
        headline=f"validation accuracy {validation['accuracy']:.3f}, macro-F1 {validation['macro_f1']:.3f}",
    )


# --------------------------------------------------------------------------- training a challenger

RATES = (
    "accuracy",
    "accuracy_without_out_of_scope_rule",
    "in_scope_accuracy",
    "out_of_scope_recall",
    "auto_rate",
    "auto_precision",
)
FIGURES = (*RATES, "macro_f1", "tickets")


@dataclass
class Challenger:
    version: str
    run_id: str
    validation: dict[str, float]
    holdout: dict[str, float] | None  # None when there is no frozen hold-out (share 0)
    versus: Versus | None  # the comparison with the champion; None: no champion yet
    champion_version: str | None
    gate: Verdict
    train_seconds: float
    training_rows: int
    steps: int
    temperature: float
    out_of_scope_threshold: float
    auto_threshold: float
    auto_precision_target_met: bool | None
    out_of_scope_rule: bool

    def figures(self) -> pl.DataFrame:
        """Validation, the whole hold-out, and challenger and champion on the tickets they were compared on."""
        rows = [("validation", self.validation)] + ([("frozen hold-out", self.holdout)] if self.holdout else [])
        if self.versus is not None and self.versus.champion is not None:
            rows += [
                (f"v{self.version} on the comparison tickets", self.versus.challenger),
                (f"champion v{self.champion_version} on the same tickets", self.versus.champion),
            ]
        return pl.DataFrame({"set": [name for name, _ in rows], **{k: [m[k] for _, m in rows] for k in FIGURES}})

    def metadata(self) -> dict:
        """What the model asset shows (rates as fractions, frames as tables)."""
        v = self.validation
        return {
            "model_version": self.version,
            "mlflow_run_id": self.run_id,
            **{k: v[k] for k in ("accuracy", "macro_f1", "auto_rate", "auto_precision", "out_of_scope_recall")},
            "train_seconds": round(self.train_seconds, 1),
            "training_rows": self.training_rows,
            "steps": self.steps,
            "temperature": round(self.temperature, 3),
            "out_of_scope_rule": "on" if self.out_of_scope_rule else "off",
            "out_of_scope_threshold": round(self.out_of_scope_threshold, 4),
            "auto_threshold": round(self.auto_threshold, 4),
            "auto_precision_target_met": "no target set"
            if self.auto_precision_target_met is None
            else self.auto_precision_target_met,
            "champion_at_training": self.champion_version or "none",
            "gate": self.gate.summary(),
            "gate_verdict": "pass" if self.gate.passed else "refused",
            "metrics": self.figures(),
            **({"comparison": self.gate.comparisons_frame()} if self.gate.comparisons else {}),
        }


def _window(training: pl.DataFrame, holdout: pl.DataFrame) -> str:
    parts = [
        f"{split} {rows.height:,} tickets {rows['created_at'].min():%Y-%m-%d} .. {rows['created_at'].max():%Y-%m-%d}"
        for split in ("train", "validation")
        if (rows := training.filter(pl.col("split") == split)).height
    ]
    return "; ".join(parts + [f"frozen hold-out {holdout.height:,} tickets (never learnt)"])


def _run_params(trained, training: pl.DataFrame, champion_version: str | None, settings: TriageSettings) -> dict:
    t = settings.training
    return {
        "training_rows": trained.training_rows,
        "validation_rows": training.filter(pl.col("split") == "validation").height,
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
        "out_of_scope_rule": trained.out_of_scope_rule,
        "out_of_scope_threshold": trained.out_of_scope_threshold,
        "auto_threshold": trained.auto_threshold,
        "auto_precision_target": settings.auto_precision_target,
        "training_from": str(training["created_at"].min()),
        "training_to": str(training["created_at"].max()),
        "champion_at_training": champion_version or "none",
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
    """Train on the training set's `train` rows, score on its `validation` rows and on the frozen hold-out, compare
    with the champion on the hold-out tickets neither learnt from, register the challenger (alias `challenger`,
    what it learnt from) and return the gate's verdict (recorded by the caller)."""
    from lakehouse.triage.model import Progress

    with Progress(log) as progress:
        return _train_challenger(training, holdout, lake, registry, settings, run_name, progress)


def _train_challenger(
    training: pl.DataFrame,
    holdout: pl.DataFrame,
    lake: Lake,
    registry,
    settings: TriageSettings,
    run_name: str,
    progress,
) -> Challenger:
    from lakehouse.common import promotion
    from lakehouse.common.registry import CHAMPION
    from lakehouse.triage.model import remove, score, train
    from lakehouse.triage.registered import load_classifier, log_model

    log = progress.say
    train_rows, validation = (training.filter(pl.col("split") == s) for s in ("train", "validation"))
    log(
        f"training on {train_rows.height} tickets ({train_rows['category'].n_unique()} categories), "
        f"validating on {validation.height}"
    )
    trained = train(train_rows, validation, settings, progress=progress)
    name = settings.registered_model_name
    try:
        log(
            f"trained in {trained.train_seconds:.0f} s ({trained.steps} steps); temperature {trained.temperature:.2f}, "
            f"out-of-scope threshold {trained.out_of_scope_threshold:.3f}, auto-route threshold "
            f"{trained.auto_threshold:.4f} (precision target {settings.auto_precision_target})"
        )
        log(f"scoring the {validation.height:,} validation tickets and the {holdout.height:,} of the frozen hold-out")
        scores = score(trained.classifier, validation, settings)
        held = score(trained.classifier, holdout, settings) if holdout.height else None
        champion_version, versus = registry.alias_version(name, CHAMPION), None
        if champion_version is not None:
            log(f"comparing with champion v{champion_version} on the frozen hold-out")
            versus = against_champion(
                trained.classifier,
                lambda: load_classifier(registry, settings, version=champion_version)[0],
                champion_version,
                holdout,
                [training["ticket_id"], learnt_by(lake, champion_version)],
                settings,
            )
        metrics = {**scores, **{f"holdout_{k}": v for k, v in (held or {}).items()}}
        if versus is not None and versus.champion is not None:
            metrics |= {f"comparison_{k}": v for k, v in versus.challenger.items()}
            metrics |= {f"champion_comparison_{k}": v for k, v in versus.champion.items()}
        version, run_id = log_model(
            registry,
            CASE,
            trained,
            _run_params(trained, training, champion_version, settings),
            {**metrics, "train_seconds": trained.train_seconds},
            validation.head(3)["text"].to_list(),
            settings,
            run_name,
        )
    finally:
        remove(trained)
    record_learnt(lake, version, training)
    promotion.tag_training(
        registry, name, version, f"{training['created_at'].max():%Y-%m-%d}", _window(training, holdout)
    )
    known = train_rows.filter(pl.col("category") != settings.out_of_scope.category)
    lake.write(category_mix(known["category"]), CASE, "training_mix", ("model_version", version))
    verdict = gate(scores, versus.comparison if versus else None, version, champion_version, settings)
    log(
        f"challenger v{version}: accuracy {scores['accuracy']:.3f}, auto {scores['auto_rate']:.1%} at "
        f"{scores['auto_precision']:.1%}; {verdict.summary()}"
    )
    return Challenger(
        version,
        run_id,
        scores,
        held,
        versus,
        champion_version,
        verdict,
        trained.train_seconds,
        train_rows.height,
        trained.steps,
        trained.temperature,
        trained.out_of_scope_threshold,
        trained.auto_threshold,
        trained.auto_precision_target_met,
        trained.out_of_scope_rule,
    )


# --------------------------------------------------------------------------- any version on any months


@dataclass
class VersionEvaluation:
    """Versions scored on the same labelled tickets, none of which any of them learnt from."""

    months: list[str]
    figures: pl.DataFrame  # one row per version: its figures on the tickets
    comparison: Comparison | None  # the first version against the second, when two are evaluated
    tickets: int
    left_out: int  # tickets one of the versions learnt from
    unknown: list[str]  # versions whose training tickets are not recorded (their figures may be in-sample)
    model_name: str = ""

    def comparison_frame(self) -> pl.DataFrame:
        """The comparison as the gate shows its own (figures, gain, interval, support, status)."""
        first, second = self.figures["model_version"].to_list()[:2]
        evaluation = Verdict(self.model_name, first, second, comparisons=(self.comparison,), check_name="evaluation")
        return evaluation.comparisons_frame()


def evaluate_versions(
    tickets: pl.DataFrame,
    classifiers: dict[str, TriageClassifier],
    learnt: dict[str, pl.Series | None],
    settings: TriageSettings,
) -> VersionEvaluation:
    """Each version (in the order given) on the labelled `tickets` (text, category, month) that no version learnt
    from; with two versions, the first against the second with the interval of the accuracy gain."""
    unknown = [v for v, seen in learnt.items() if seen is None]
    rows = unseen(tickets, [seen for seen in learnt.values() if seen is not None])
    if rows.is_empty():
        raise ValueError(f"every one of the {tickets.height:,} tickets was learnt by one of v{', v'.join(classifiers)}")
    truth, oos = rows["category"].to_list(), settings.out_of_scope.category
    routed = {v: classify(c, rows) for v, c in classifiers.items()}
    figures = pl.DataFrame(
        [{"model_version": v, **evaluate(truth, r, oos)} for v, r in routed.items()],
    )
    comparison = None
    if len(routed) == 2:
        (first, ours), (second, theirs) = routed.items()
        comparison = compare_accuracy(
            rows["category"],
            ours,
            theirs,
            f"v{second}",
            settings.gate.comparison,
            rows=f"{rows.height:,} labelled tickets no version learnt from",
            metric="accuracy",
        )
    months = sorted(rows["month"].unique().to_list())
    return VersionEvaluation(
        months, figures, comparison, rows.height, tickets.height - rows.height, unknown, settings.registered_model_name
    )


def shadow_note(version: str, verdict: str) -> str:
    """How a shadow version's output is described to people."""
    return f"v{version} in shadow (not promoted: {verdict}); nothing it decided was published"
