"""What a training learns from and is judged on: a validation split that keeps every category when arrival time
means nothing (a file sorted by category), a warning naming the missing categories and the setting otherwise; the
out-of-scope rule only where the labels hold an out-of-scope class; monthly keys as the lake writes a month."""

from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from lakehouse.triage.model import AUTO, Progress, evaluate
from lakehouse.triage.pipeline import build_training_set, coverage_warning, split_coverage, stratified_split
from lakehouse.triage.settings import TriageSettings

CATEGORIES = [f"intent_{i:02d}" for i in range(20)]


def _sorted_by_category(per_category: int = 30) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A file sorted by category, as a dataset export often is: arrival order says nothing."""
    n = len(CATEGORIES) * per_category
    start = datetime(2024, 11, 1)
    clean = pl.DataFrame(
        {
            "ticket_id": [f"q{i}" for i in range(n)],
            "month": ["2024-11"] * n,
            "created_at": [start + timedelta(seconds=i) for i in range(n)],
            "text": [f"query {i}" for i in range(n)],
        }
    )
    labels = pl.DataFrame(
        {
            "ticket_id": clean["ticket_id"],
            "category": [c for c in CATEGORIES for _ in range(per_category)],
            "labelled_at": clean["created_at"] + timedelta(hours=1),
        }
    )
    return clean, labels


def test_the_newest_share_of_a_file_sorted_by_category_misses_categories_and_the_warning_names_the_fix():
    clean, labels = _sorted_by_category()
    settings = TriageSettings(training={"holdout_share": 0})
    training = build_training_set(clean, labels, datetime(2024, 12, 1), settings)
    coverage = split_coverage(training)
    # The newest 20 % are the last four categories: validation lacks the other 16, training lacks those four.
    assert coverage["missing_from_validation"] == CATEGORIES[:16]
    assert coverage["missing_from_training"] == CATEGORIES[16:]
    warning = coverage_warning(coverage, settings)
    assert "validation holds no ticket of 16 categories (intent_00" in warning
    assert "training holds no ticket of 4 validation categories (intent_16" in warning
    assert "training.validation_split: stratified" in warning


def test_a_stratified_split_keeps_every_category_on_both_sides_at_the_share_and_repeats_with_its_seed():
    clean, labels = _sorted_by_category()
    settings = TriageSettings(training={"holdout_share": 0, "validation_split": "stratified"})
    training = build_training_set(clean, labels, datetime(2024, 12, 1), settings)
    coverage = split_coverage(training)
    assert coverage == {"missing_from_validation": [], "missing_from_training": []}
    assert coverage_warning(coverage, settings) is None
    per_category = training.filter(pl.col("split") == "validation").group_by("category").len()
    assert (per_category["len"] == 6).all() and per_category.height == len(CATEGORIES)  # 20 % of 30
    assert build_training_set(clean, labels, datetime(2024, 12, 1), settings).equals(training)
    # A category with a single ticket keeps it for training; two tickets give one to validation.
    split = stratified_split(pl.Series(["a", "b", "b", "c", "c", "c"]), 0.2, seed=0).to_list()
    assert split[0] == "train" and sorted(split[1:3]) == ["train", "validation"] and split[3:].count("validation") == 1


def test_a_validation_period_and_a_stratified_split_cannot_both_choose_the_validation_tickets():
    with pytest.raises(ValueError, match="set one of them"):
        TriageSettings(training={"validation": "1mo", "validation_split": "stratified"})


def test_the_out_of_scope_rule_runs_where_the_labels_hold_an_out_of_scope_class_or_a_setting_says_so():
    assert not TriageSettings().out_of_scope.applies({"billing", "delivery"})
    assert TriageSettings().out_of_scope.applies({"billing", "out_of_scope"})
    assert TriageSettings(out_of_scope={"rule": "on"}).out_of_scope.applies({"billing"})
    assert not TriageSettings(out_of_scope={"rule": "off"}).out_of_scope.applies({"billing", "out_of_scope"})


def test_the_evaluation_reports_accuracy_with_and_without_the_out_of_scope_rule():
    routed = pl.DataFrame(
        {
            "category": ["a", "out_of_scope", "out_of_scope", "b"],
            "top_category": ["a", "b", "a", "b"],  # what the most probable category alone would have said
            "confidence": [0.9, 0.4, 0.3, 0.95],
            "route": [AUTO, "human_validation", "human_validation", AUTO],
        }
    )
    figures = evaluate(["a", "b", "out_of_scope", "b"], routed, "out_of_scope")
    assert figures["accuracy"] == 0.75 and figures["accuracy_without_out_of_scope_rule"] == 0.75
    assert figures["in_scope_accuracy"] == pytest.approx(2 / 3) and figures["out_of_scope_recall"] == 1.0
    no_class = evaluate(["a", "b"], routed.head(2), "out_of_scope")
    assert no_class["out_of_scope_recall"] != no_class["out_of_scope_recall"]  # nothing to measure: NaN
    assert no_class["accuracy"] == 0.5 and no_class["accuracy_without_out_of_scope_rule"] == 1.0


def test_the_report_says_nothing_of_out_of_scope_tickets_where_there_are_none():
    from assets.triage.reports import _reading

    figures = {"auto_rate": 0.8, "auto_precision": 0.97, "accuracy": 0.92, "accuracy_without_out_of_scope_rule": 0.92}
    without = _reading({**figures, "out_of_scope_recall": float("nan")})
    assert "n/a" not in without and "out of scope" not in without and without.endswith("were right.")
    with_class = _reading({**figures, "out_of_scope_recall": 0.7, "accuracy_without_out_of_scope_rule": 0.9})
    assert "70.0 % of the tickets the agents labelled out of scope" in with_class
    assert "90.0 % with the most probable category alone" in with_class


def test_progress_lines_come_for_each_phase_and_at_most_as_often_as_asked_in_loops():
    lines: list[str] = []
    progress = Progress(lines.append, every=3600.0)
    progress.say("probe")
    for step in range(1000):
        progress.tick(f"step {step}")
    assert lines == ["probe"]
    chatty = Progress(lines.append, every=0.0)
    for step in range(3):
        chatty.tick(f"step {step}")
    assert lines[-3:] == ["step 0", "step 1", "step 2"]


def test_while_a_phase_says_nothing_the_watcher_says_it_is_still_running():
    import time

    lines: list[str] = []
    with Progress(lines.append, every=0.05) as progress:
        progress.say("refitting the head: logistic regression")
        time.sleep(0.6)  # a silent library call, twelve times the interval
    watched = [line for line in lines if line.startswith("still running")]
    assert watched and watched[0].endswith("since: refitting the head: logistic regression)")
    count = len(lines)
    time.sleep(0.2)
    assert len(lines) == count  # the watcher stops with the phase
    # The watcher's lines do not mute a loop's: a loop still says how far it got.
    with Progress(lines.append, every=0.05) as progress:
        time.sleep(0.3)
        progress.tick("step 7/10")
    later = lines[count:]
    assert later[0].startswith("still running") and "step 7/10" in later


def test_monthly_partition_keys_are_written_as_the_lake_and_the_docs_write_a_month():
    from assets.triage.partitions import monthly
    from lakehouse.triage.pipeline import month_of

    keys = monthly.get_partition_keys()
    assert keys[0] == "2026-01" and all(len(k) == 7 for k in keys)
    assert monthly.has_partition_key("2026-02") and not monthly.has_partition_key("2026-02-01")
    months = monthly.get_partition_keys_in_range(dg.PartitionKeyRange("2026-01", "2026-03"))
    assert months == ["2026-01", "2026-02", "2026-03"]
    assert month_of("2026-02") == month_of("2026-02-01") == "2026-02"
