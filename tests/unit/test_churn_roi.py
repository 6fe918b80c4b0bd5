"""Tests for lakehouse.churn.roi: hashing, synthetic intervention, A/B statistics, ROI, report, plot."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from lakehouse.churn.roi import (
    AbTestResult,
    analyse_ab_test,
    assign_arms,
    hash_uniform,
    monthly_rate,
    newcombe_interval_monthly,
    plot_ab_test,
    report_table,
    required_sample_size_per_arm,
    roi_economics,
    simulate_contact,
    two_proportion_ztest,
    wilson_interval,
)
from lakehouse.churn.settings import SEED_AB_REFERENCE

REPO_ROOT = Path(__file__).resolve().parents[2]
LTV = 3_000.0
COST = 8_000.0


def outcomes_from_counts(x_t: int, n_t: int, x_c: int, n_c: int) -> pl.DataFrame:
    """An outcomes frame with exactly the given churn counts per arm."""
    return pl.DataFrame(
        {
            "arm": ["treatment"] * n_t + ["control"] * n_c,
            "churned_90d": [True] * x_t + [False] * (n_t - x_t) + [True] * x_c + [False] * (n_c - x_c),
        }
    )


def synthetic_world(n: int, p_churn: float, effect: float, *, seed: int, salt: str, contact_salt: str) -> pl.DataFrame:
    ids = pl.Series("customer_id", [f"C{i:06d}" for i in range(n)])
    rng = np.random.default_rng(seed)
    df = pl.DataFrame(
        {
            "customer_id": ids,
            "arm": assign_arms(ids, salt),
            "churned_90d": rng.random(n) < p_churn,
        }
    )
    return simulate_contact(df, effect, contact_salt)


# --------------------------------------------------------------------------- hashing
class TestHashing:
    ids = pl.Series("customer_id", [f"C{i:06d}" for i in range(20_000)])

    def test_hash_uniform_is_blake2b_of_salt_colon_id(self):
        for ids in (pl.Series(["abc", "C000042"]), pl.Series([42, 7])):
            u = hash_uniform(ids, "s1")
            for cid, value in zip(ids.to_list(), u.to_list(), strict=True):
                digest = hashlib.blake2b(f"s1:{cid}".encode(), digest_size=8).digest()
                assert value == (int.from_bytes(digest, "big") >> 11) / 2.0**53
        # Integer ids hash like their decimal string, so id dtype does not change arms.
        assert hash_uniform(pl.Series([42]), "s1").to_list() == hash_uniform(pl.Series(["42"]), "s1").to_list()

    def test_hash_uniform_range_and_uniformity(self):
        u = hash_uniform(self.ids, "salt").to_numpy()
        assert u.min() >= 0.0 and u.max() < 1.0
        # Kolmogorov-Smirnov against U(0, 1): a biased hash mapping would fail.
        assert stats.kstest(u, "uniform").pvalue > 0.001

    def test_arms_about_50_50(self):
        arms = assign_arms(self.ids, "salt")
        assert set(arms.unique().to_list()) == {"treatment", "control"}
        share = (arms == "treatment").mean()
        # Binomial SD at n=20,000 is 0.0035; 0.015 is > 4 SD.
        assert abs(share - 0.5) < 0.015

    def test_arms_deterministic_and_row_order_independent(self):
        a1 = assign_arms(self.ids, "salt")
        a2 = assign_arms(self.ids, "salt")
        assert a1.to_list() == a2.to_list()
        perm = np.random.default_rng(0).permutation(len(self.ids))
        shuffled = self.ids.gather(perm)
        a_shuffled = assign_arms(shuffled, "salt")
        assert dict(zip(shuffled.to_list(), a_shuffled.to_list(), strict=True)) == dict(
            zip(self.ids.to_list(), a1.to_list(), strict=True)
        )
        # A single customer alone gets the same arm as in the crowd.
        assert assign_arms(self.ids[:1], "salt")[0] == a1[0]

    def test_salt_changes_assignment(self):
        a = assign_arms(self.ids, "salt-a")
        b = assign_arms(self.ids, "salt-b")
        agreement = (a == b).mean()
        assert 0.45 < agreement < 0.55  # independent splits agree ~half the time

    def test_stable_across_processes_with_different_hash_seeds(self):
        code = (
            "import polars as pl; from lakehouse.churn.roi import hash_uniform;"
            "print(repr(hash_uniform(pl.Series(['C1','C2','C3']), 'x').to_list()))"
        )
        outputs = set()
        for seed in ("1", "12345"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            out = subprocess.run(
                [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
            outputs.add(out)
        assert outputs == {repr(hash_uniform(pl.Series(["C1", "C2", "C3"]), "x").to_list())}

    def test_null_ids_rejected(self):
        with pytest.raises(ValueError, match="null"):
            hash_uniform(pl.Series(["a", None]), "s")


# --------------------------------------------------------------------------- intervention
class TestSimulateContact:
    def _frame(self, n=10_000, p=0.3):
        ids = pl.Series("customer_id", list(range(n)))
        rng = np.random.default_rng(1)
        return pl.DataFrame({"customer_id": ids, "arm": assign_arms(ids, "s"), "churned_90d": rng.random(n) < p})

    def test_zero_effect_changes_nothing(self):
        df = self._frame()
        assert simulate_contact(df, 0.0, "w").equals(df)

    def test_only_treatment_churners_are_saved(self):
        df = self._frame()
        out = simulate_contact(df, 0.5, "w")
        assert out.columns == df.columns and out.height == df.height
        ctl = df["arm"] == "control"
        assert out.filter(ctl).equals(df.filter(ctl))
        before, after = df["churned_90d"], out["churned_90d"]
        assert not (after & ~before).any()  # nobody is made to churn
        saved = before & ~after
        t_churners = (df["arm"] == "treatment") & before
        assert saved.sum() > 0
        assert saved.sum() == pytest.approx(0.5 * t_churners.sum(), rel=0.06)

    def test_saved_exactly_where_contact_hash_below_effect(self):
        df = self._frame(2_000)
        out = simulate_contact(df, 0.29, "w")
        u = hash_uniform(df["customer_id"], "w:contact")
        expected = df["churned_90d"] & ~((df["arm"] == "treatment") & (u < 0.29))
        assert out["churned_90d"].to_list() == expected.to_list()

    def test_full_effect_saves_every_treatment_churner(self):
        out = simulate_contact(self._frame(), 1.0, "w")
        assert out.filter(pl.col("arm") == "treatment")["churned_90d"].sum() == 0

    def test_invalid_effect(self):
        with pytest.raises(ValueError):
            simulate_contact(self._frame(10), 1.5, "w")


# --------------------------------------------------------------------------- statistics
class TestStatistics:
    def test_ztest_hand_computed(self):
        # 29/1000 vs 41/1000: pbar = 0.035, se = sqrt(.035*.965*.002) = 0.0082189..., z = 0.012/se
        z, p = two_proportion_ztest(29, 1000, 41, 1000)
        se = math.sqrt(0.035 * 0.965 * (2 / 1000))
        assert z == pytest.approx(0.012 / se, rel=1e-12)
        assert z == pytest.approx(1.46005, abs=1e-5)
        assert p == pytest.approx(2 * stats.norm.sf(z), rel=1e-10)
        assert p == pytest.approx(0.144276, abs=1e-6)

    @pytest.mark.parametrize(
        "counts", [(29, 1000, 41, 1000), (300, 4800, 410, 5200), (50, 700, 20, 900), (0, 50, 3, 60)]
    )
    def test_ztest_matches_scipy_chi2(self, counts):
        x_t, n_t, x_c, n_c = counts
        z, p = two_proportion_ztest(*counts)
        table = np.array([[x_t, n_t - x_t], [x_c, n_c - x_c]])
        chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
        assert z**2 == pytest.approx(chi2, rel=1e-9)
        assert p == pytest.approx(p_chi2, rel=1e-9)
        assert math.copysign(1, z) == math.copysign(1, x_c / n_c - x_t / n_t)

    def test_ztest_degenerate(self):
        assert two_proportion_ztest(0, 10, 0, 10) == (0.0, 1.0)

    def test_analyse_matches_hand_computation(self):
        x_t, n_t, x_c, n_c = 300, 4_800, 410, 5_200
        r = analyse_ab_test(outcomes_from_counts(x_t, n_t, x_c, n_c), ltv=LTV, model_cost_per_month=COST)
        p_t, p_c = x_t / n_t, x_c / n_c
        assert (r.n_treatment, r.n_control, r.churned_treatment, r.churned_control) == (n_t, n_c, x_t, x_c)
        assert r.churn_rate_treatment == pytest.approx(p_t)
        assert r.churn_rate_control == pytest.approx(p_c)
        m_t, m_c = 1 - (1 - p_t) ** (1 / 3), 1 - (1 - p_c) ** (1 / 3)
        assert r.monthly_rate_treatment == pytest.approx(m_t)
        assert r.monthly_rate_control == pytest.approx(m_c)
        assert r.absolute_reduction == pytest.approx(m_c - m_t)
        assert r.relative_reduction == pytest.approx((m_c - m_t) / m_c)
        # Newcombe's interval on the 90-day difference, by hand from the Wilson limits of each arm.
        zc = stats.norm.ppf(0.975)

        def wilson(x, n):
            p, centre = x / n, (x + zc**2 / 2) / (n + zc**2)
            half = zc * math.sqrt(n) / (n + zc**2) * math.sqrt(p * (1 - p) + zc**2 / (4 * n))
            return centre - half, centre + half

        (l_t, u_t), (l_c, u_c) = wilson(x_t, n_t), wilson(x_c, n_c)
        assert r.absolute_reduction_90d == pytest.approx(p_c - p_t)
        assert r.ci_low_90d == pytest.approx(p_c - p_t - math.hypot(p_c - l_c, u_t - p_t))
        assert r.ci_high_90d == pytest.approx(p_c - p_t + math.hypot(u_c - p_c, p_t - l_t))
        # The same construction on the monthly scale, each arm's Wilson limits mapped through m.
        m = lambda p: 1 - (1 - p) ** (1 / 3)  # noqa: E731
        assert r.ci_low == pytest.approx(m_c - m_t - math.hypot(m_c - m(l_c), m(u_t) - m_t))
        assert r.ci_high == pytest.approx(m_c - m_t + math.hypot(m(u_c) - m_c, m_t - m(l_t)))
        # m compresses rates (m'(p) < 1 here): the monthly interval is the narrower one.
        assert (r.ci_high - r.ci_low) < (r.ci_high_90d - r.ci_low_90d)
        assert r.ci_low < r.absolute_reduction < r.ci_high and r.ci_low_90d < r.absolute_reduction_90d < r.ci_high_90d
        z, p = two_proportion_ztest(x_t, n_t, x_c, n_c)
        assert (r.z_stat, r.p_value) == (pytest.approx(z), pytest.approx(p))

    def test_confidence_level_widens_ci(self):
        df = outcomes_from_counts(300, 4_800, 410, 5_200)
        r95 = analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST)
        r99 = analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST, confidence=0.99)
        assert r99.ci_low < r95.ci_low < r95.absolute_reduction < r95.ci_high < r99.ci_high
        assert r99.ci_low_90d < r95.ci_low_90d < r95.absolute_reduction_90d < r95.ci_high_90d < r99.ci_high_90d
        # Score intervals are not exactly proportional to z, but at these sizes they nearly are.
        ratio = (r99.ci_high - r99.ci_low) / (r95.ci_high - r95.ci_low)
        assert ratio == pytest.approx(stats.norm.ppf(0.995) / stats.norm.ppf(0.975), rel=0.01)

    def test_monthly_interval_is_newcombe_on_the_identity_scale(self, monkeypatch):
        """With m replaced by the identity, the monthly construction is statsmodels' Newcombe interval."""
        from statsmodels.stats.proportion import confint_proportions_2indep

        import lakehouse.churn.roi as roi

        monkeypatch.setattr(roi, "monthly_rate", lambda p: p)
        for x_t, n_t, x_c, n_c in [(300, 4_800, 410, 5_200), (0, 50, 3, 60), (50, 50, 20, 90)]:
            expected = confint_proportions_2indep(x_c, n_c, x_t, n_t, method="newcomb", alpha=0.1)
            assert newcombe_interval_monthly(x_t, n_t, x_c, n_c, 0.9) == pytest.approx(expected, rel=1e-12)

    def test_intervals_stay_in_range_at_the_extremes(self):
        r = analyse_ab_test(outcomes_from_counts(0, 40, 40, 40), ltv=LTV, model_cost_per_month=COST)
        assert 0 < r.ci_low_90d < r.absolute_reduction_90d == 1.0 and r.ci_high_90d == pytest.approx(1.0)
        assert 0 < r.ci_low < r.absolute_reduction == 1.0 and r.ci_high == pytest.approx(1.0)

    def test_monthly_rate_inverts_90_day_compounding(self):
        for m in (0.0, 0.029, 0.041, 0.2):
            assert monthly_rate(1 - (1 - m) ** 3) == pytest.approx(m, abs=1e-12)

    def test_required_n_textbook_value(self):
        # Fleiss (no continuity correction), 5% vs 10%, alpha 0.05 two-sided, power 0.8: 435 per arm.
        assert required_sample_size_per_arm(0.05, 0.10) == 435
        assert required_sample_size_per_arm(0.10, 0.05) == 435

    def test_required_n_formula_and_monotonic_in_effect(self):
        p_c = 0.30
        ns = []
        for rel in (0.05, 0.1, 0.2, 0.29, 0.5):
            p_t = p_c * (1 - rel)
            za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
            pbar = (p_t + p_c) / 2
            expected = (
                za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p_t * (1 - p_t) + p_c * (1 - p_c))
            ) ** 2 / (p_c - p_t) ** 2
            n = required_sample_size_per_arm(p_t, p_c)
            assert n == math.ceil(expected)
            ns.append(n)
        assert ns == sorted(ns, reverse=True) and len(set(ns)) == len(ns)
        assert required_sample_size_per_arm(0.3, 0.3) is None
        # Higher power needs more customers.
        assert required_sample_size_per_arm(0.2, 0.3, power=0.9) > required_sample_size_per_arm(0.2, 0.3)

    def test_required_n_in_result_decreases_with_observed_effect(self):
        small = analyse_ab_test(outcomes_from_counts(280, 1000, 300, 1000), ltv=LTV, model_cost_per_month=COST)
        large = analyse_ab_test(outcomes_from_counts(200, 1000, 300, 1000), ltv=LTV, model_cost_per_month=COST)
        assert small.required_n_per_arm > large.required_n_per_arm
        assert large.required_n_per_arm == required_sample_size_per_arm(0.2, 0.3)

    def test_wilson_interval_known_value(self):
        # 10/100 at 95%: Wilson = [0.05523, 0.17437]
        lo, hi = wilson_interval(10, 100)
        assert lo == pytest.approx(0.05523, abs=1e-5)
        assert hi == pytest.approx(0.17437, abs=1e-5)


# --------------------------------------------------------------------------- simulation
class TestSimulation:
    P_CHURN = 0.30
    EFFECT = 0.29

    def test_ci_contains_true_effect_and_estimate_close(self):
        df = synthetic_world(20_000, self.P_CHURN, self.EFFECT, seed=2024, salt="ab-90d", contact_salt="world")
        r = analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST)
        true_90 = self.P_CHURN * self.EFFECT  # 0.087
        assert r.ci_low_90d <= true_90 <= r.ci_high_90d
        assert r.absolute_reduction_90d == pytest.approx(true_90, abs=0.015)  # SE ~0.006
        true_monthly = monthly_rate(self.P_CHURN * (1 - self.EFFECT)) * -1 + monthly_rate(self.P_CHURN)
        assert r.ci_low <= true_monthly <= r.ci_high
        assert r.absolute_reduction == pytest.approx(true_monthly, abs=0.006)
        assert r.relative_reduction > 0
        assert r.p_value < 1e-10 and r.z_stat > 0
        assert 9_500 < r.n_treatment < 10_500
        assert r.required_n_per_arm < r.n_treatment  # the test is well powered

    def test_null_effect_ci_contains_zero(self):
        df = synthetic_world(20_000, self.P_CHURN, 0.0, seed=7, salt="ab-90d", contact_salt="world")
        r = analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST)
        assert r.ci_low_90d <= 0.0 <= r.ci_high_90d
        assert r.ci_low <= 0.0 <= r.ci_high
        assert r.p_value > 0.05
        assert r.roi < 0 or r.p_value > 0.05  # no real effect, no real value

    def test_ci_coverage_close_to_nominal(self):
        """Over many replicates ~95% of intervals cover the truth (fails for wrong SEs/quantiles)."""
        n, reps = 2_000, 400
        ids = pl.Series("customer_id", list(range(n)))
        arms = assign_arms(ids, "cov")
        rng = np.random.default_rng(123)
        true_90 = self.P_CHURN * self.EFFECT
        true_m = monthly_rate(self.P_CHURN) - monthly_rate(self.P_CHURN * (1 - self.EFFECT))
        cover_90 = cover_m = 0
        for rep in range(reps):
            df = pl.DataFrame({"customer_id": ids, "arm": arms, "churned_90d": rng.random(n) < self.P_CHURN})
            r = analyse_ab_test(simulate_contact(df, self.EFFECT, f"rep{rep}"), ltv=LTV, model_cost_per_month=COST)
            cover_90 += r.ci_low_90d <= true_90 <= r.ci_high_90d
            cover_m += r.ci_low <= true_m <= r.ci_high
        # Binomial SD of coverage with 400 reps ~0.011.
        assert 0.915 <= cover_90 / reps <= 0.985
        assert 0.915 <= cover_m / reps <= 0.985


# --------------------------------------------------------------------------- ROI
class TestRoi:
    def test_seed_example_exact(self):
        # 1.2 points/month x 7,500 contacted = 90 retained; 90 x 3,000 = 270,000; (270,000 - 8,000)/8,000.
        retained, value, roi = roi_economics(0.012, 7_500, ltv=3_000, model_cost_per_month=8_000)
        assert retained == pytest.approx(90.0)
        assert value == pytest.approx(270_000.0)
        assert roi == pytest.approx(32.75)
        assert SEED_AB_REFERENCE["roi"] == pytest.approx(roi)

    def test_seed_case_from_counts(self):
        # 7,500 per arm; 90-day counts whose monthly rates are ~2.9% vs ~4.1%.
        n = 7_500
        x_t = round(n * (1 - (1 - 0.029) ** 3))  # 634
        x_c = round(n * (1 - (1 - 0.041) ** 3))  # 885
        r = analyse_ab_test(outcomes_from_counts(x_t, n, x_c, n), ltv=3_000, model_cost_per_month=8_000)
        assert r.monthly_rate_treatment == pytest.approx(0.029, abs=5e-5)
        assert r.monthly_rate_control == pytest.approx(0.041, abs=5e-5)
        assert r.retained_per_month == pytest.approx(r.absolute_reduction * r.n_treatment)
        assert r.retained_per_month == pytest.approx(90, abs=1)
        assert r.value_per_month == pytest.approx(r.retained_per_month * 3_000)
        assert r.cost_per_month == 8_000
        assert r.roi == pytest.approx((r.value_per_month - r.cost_per_month) / r.cost_per_month)
        assert r.roi == pytest.approx(32.75, abs=0.5)
        assert r.relative_reduction == pytest.approx(0.012 / 0.041, abs=0.01)

    def test_negative_effect_gives_negative_roi(self):
        r = analyse_ab_test(outcomes_from_counts(120, 1000, 100, 1000), ltv=LTV, model_cost_per_month=COST)
        assert r.absolute_reduction < 0 and r.retained_per_month < 0 and r.roi < -1

    def test_nonpositive_cost_rejected(self):
        with pytest.raises(ValueError, match="cost"):
            roi_economics(0.01, 100, ltv=LTV, model_cost_per_month=0)


# --------------------------------------------------------------------------- validation
class TestValidation:
    @pytest.mark.parametrize("missing_arm", ["treatment", "control"])
    def test_empty_arm_raises(self, missing_arm):
        df = outcomes_from_counts(5, 100, 7, 100).filter(pl.col("arm") != missing_arm)
        with pytest.raises(ValueError, match=missing_arm):
            analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST)

    def test_empty_frame_raises(self):
        df = pl.DataFrame({"arm": [], "churned_90d": []}, schema={"arm": pl.String, "churned_90d": pl.Boolean})
        with pytest.raises(ValueError, match="no customers"):
            analyse_ab_test(df, ltv=LTV, model_cost_per_month=COST)

    def test_unknown_arm_and_missing_column(self):
        with pytest.raises(ValueError, match="arm must be"):
            analyse_ab_test(
                pl.DataFrame({"arm": ["treatment", "control", "other"], "churned_90d": [True, False, True]}),
                ltv=LTV,
                model_cost_per_month=COST,
            )
        with pytest.raises(ValueError, match="churned_90d"):
            analyse_ab_test(pl.DataFrame({"arm": ["treatment"]}), ltv=LTV, model_cost_per_month=COST)


# --------------------------------------------------------------------------- report & plot
@pytest.fixture(scope="module")
def seed_like_result() -> AbTestResult:
    return analyse_ab_test(outcomes_from_counts(634, 7_500, 885, 7_500), ltv=3_000, model_cost_per_month=8_000)


def test_report_table_in_the_cases_currency_beside_the_seed(seed_like_result):
    rows = {
        r["metric"]: (r["ours"], r["seed"])
        for r in report_table(seed_like_result, "USD", SEED_AB_REFERENCE).iter_rows(named=True)
    }
    assert rows["Monthly churn, treatment"] == ("2.90 %", "2.90 %")
    assert rows["Monthly churn, control"] == ("4.10 %", "4.10 %")
    assert rows["Absolute reduction (monthly)"][0] == "1.20 pt"
    assert rows["Value / month"][1] == "270,000 EUR" and rows["Value / month"][0].endswith(" USD")
    assert rows["Model cost / month"] == ("8,000 USD", "8,000 EUR")
    assert rows["ROI (value - cost) / cost"][0].endswith("x") and "95% CI of monthly reduction (Newcombe)" in rows
    # Without a seed reference the seed column is a dash; strings are shown verbatim.
    assert set(report_table(seed_like_result, "EUR")["seed"]) == {"—"}
    assert "32x" in report_table(seed_like_result, "EUR", {"roi": "32x"})["seed"].to_list()


def test_plot_writes_png(tmp_path, seed_like_result):
    out = plot_ab_test(seed_like_result, tmp_path / "sub" / "ab.png", "EUR")
    assert isinstance(out, Path) and out.exists()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
