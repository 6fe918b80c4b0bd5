"""The triage gate: the seed's floors on validation, and the challenger against the champion on the same hold-out
tickets neither learnt from, refused only when worse beyond noise (paired bootstrap over tickets)."""

import numpy as np
import polars as pl
import pytest

from lakehouse.common.promotion import ComparisonSettings
from lakehouse.triage.lifecycle import against_champion, compare_accuracy, gate, unseen
from lakehouse.triage.settings import TriageSettings

SETTINGS = TriageSettings()
FAST = ComparisonSettings(resamples=300, tolerance=0.01)


def _figures(f1=0.9, precision=0.95, accuracy=0.9):
    return {"macro_f1": f1, "auto_precision": precision, "accuracy": accuracy}


def _answers(truth: np.ndarray, right: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"category": np.where(right, truth, "wrong")})


def test_a_good_first_model_passes_its_floors_and_a_short_one_is_told_by_how_much():
    assert gate(_figures(), None, "1", None, SETTINGS).passed
    refused = gate(_figures(f1=0.7), None, "1", None, SETTINGS)
    assert not refused.passed and refused.summary().startswith("no champion; v1 refused")
    assert "validation macro-F1 0.7 < 0.75 (short by 0.05)" in refused.summary()
    assert "auto-route precision" in gate(_figures(precision=0.8), None, "1", None, SETTINGS).summary()
    nothing_routed = gate(_figures(precision=float("nan")), None, "1", None, SETTINGS)
    assert not nothing_routed.passed and "could not be measured" in nothing_routed.summary()
    assert gate(_figures(), None, "1", None, SETTINGS).outcome().severity == "WARN"


def test_the_challenger_is_refused_only_when_worse_than_the_champion_beyond_noise():
    rng = np.random.default_rng(0)
    truth = pl.Series(rng.choice(["a", "b", "c"], 600))
    champion = rng.random(600) < 0.9
    worse = champion & (rng.random(600) < 0.8)  # loses a fifth of the champion's right answers
    level = champion.copy()  # as many tickets won as lost
    level[np.flatnonzero(champion)[:20]] = False
    level[np.flatnonzero(~champion)[:20]] = True
    better = champion | (rng.random(600) < 0.8)
    compared = {
        name: compare_accuracy(
            truth, _answers(truth, ours), _answers(truth, champion), "champion v1", FAST, rows="600 tickets"
        )
        for name, ours in (("worse", worse), ("level", level), ("better", better))
    }
    assert compared["worse"].status == "worse beyond noise" and compared["worse"].interval[1] < -0.01
    assert compared["level"].status == "not worse beyond noise" and compared["level"].gain == pytest.approx(0)
    assert compared["better"].status == "better beyond noise" and compared["better"].interval[0] > 0
    assert compared["worse"].challenger == pytest.approx(worse.mean())
    verdict = gate(_figures(), compared["worse"], "2", "1", SETTINGS)
    assert not verdict.passed and verdict.summary().startswith("kept v1; v2 refused")
    assert "hold-out accuracy" in verdict.summary() and "worse beyond noise" in verdict.summary()
    assert gate(_figures(), compared["level"], "2", "1", SETTINGS).passed
    # A handful of tickets never decides.
    few = compare_accuracy(
        truth[:10],
        _answers(truth[:10], worse[:10] & False),
        _answers(truth[:10], champion[:10]),
        "champion v1",
        FAST,
        rows="10 tickets",
    )
    assert not few.decisive and gate(_figures(), few, "2", "1", SETTINGS).passed


def test_only_hold_out_tickets_neither_model_learnt_from_are_compared():
    holdout = pl.DataFrame({"ticket_id": ["a", "b", "c", "d"], "text": ["x"] * 4, "category": ["k"] * 4})
    learnt = [pl.Series("ticket_id", ["b", "z"]), pl.Series("ticket_id", ["d"])]
    assert unseen(holdout, learnt)["ticket_id"].to_list() == ["a", "c"]
    assert unseen(holdout, [])["ticket_id"].to_list() == ["a", "b", "c", "d"]


def test_without_a_hold_out_or_the_champions_tickets_there_is_no_fair_comparison_and_the_floors_decide():
    def never_loaded():
        raise AssertionError("the champion is loaded only when a comparison can be made")

    holdout = pl.DataFrame({"ticket_id": ["a"], "text": ["x"], "category": ["k"]})
    empty = holdout.clear()
    no_holdout = against_champion(None, never_loaded, "1", empty, [pl.Series(["b"])], SETTINGS)
    unknown = against_champion(None, never_loaded, "1", holdout, [pl.Series(["b"]), None], SETTINGS)
    for versus, why in ((no_holdout, "no frozen hold-out"), (unknown, "not recorded")):
        assert versus.comparison.impossible and why in versus.comparison.impossible and versus.champion is None
        verdict = gate(_figures(), versus.comparison, "2", "1", SETTINGS)
        assert verdict.passed and verdict.comparisons_frame()["status"][0].startswith("no fair comparison")


def test_the_comparison_settings_keep_their_triage_default_when_one_is_moved():
    moved = TriageSettings(gate={"comparison": {"level": 0.9}})
    assert moved.gate.comparison.tolerance == SETTINGS.gate.comparison.tolerance == 0.01
    assert moved.gate.comparison.level == 0.9
