"""The churn Go/No-Go gate: the seed's floors, and the challenger against the champion on the same rows after
both training cut-offs, AUC-PR with a bootstrap over customers; any version evaluated on any window. On a
synthetic training set (no dbt), a real LightGBM and a real MLflow registry (SQLite)."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from lakehouse.churn.evaluation import ClusteredAveragePrecision, evaluate_version, version_info
from lakehouse.churn.model import FEATURES, LABEL
from lakehouse.churn.pipeline import ChurnStore, go_no_go, train_challenger
from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common import promotion
from lakehouse.common.lake import Lake
from lakehouse.common.promotion import ComparisonSettings
from lakehouse.common.registry import CHAMPION, Registry
from lakehouse.common.settings import DateRange

CUSTOMERS, WEEKS = 300, 70
FIRST = date(2024, 1, 1)  # a Monday


def _training_set(seed: int = 0) -> pl.DataFrame:
    """Weekly snapshots of customers whose churn depends on two features (the rest is noise)."""
    rng = np.random.default_rng(seed)
    n = CUSTOMERS * WEEKS
    frame = {f: rng.normal(size=n) for f in FEATURES}
    risk = 1 / (1 + np.exp(-(2.2 * frame["usage_trend"] - 1.8 * frame["activation_score"] - 3.5)))
    last = FIRST + timedelta(weeks=WEEKS - 1)
    snapshots = [FIRST + timedelta(weeks=w) for w in range(WEEKS)]
    return pl.DataFrame(
        {
            "snapshot_date": pl.Series([s for s in snapshots for _ in range(CUSTOMERS)], dtype=pl.Date),
            "customer_id": np.tile([f"c{i:04d}" for i in range(CUSTOMERS)], WEEKS),
            **frame,
            LABEL: rng.random(n) < risk,
        }
    ).with_columns(matured_30d=pl.col("snapshot_date") <= last - timedelta(days=30))


def _settings(**changes) -> ChurnSettings:
    gate = {"min_auc_pr": 0.0, "min_recall_top": 0.0, "comparison": {"resamples": 300}}
    fast = {**ChurnSettings().lgbm_params, "num_threads": 1, "learning_rate": 0.1}  # one thread: a shared machine
    return ChurnSettings().with_(gate={**gate, **changes.pop("gate", {})}, lgbm_params=fast, **changes)


@pytest.fixture
def home(tmp_path):
    store = ChurnStore(Lake(str(tmp_path / "lake")), tmp_path / "warehouse.duckdb")
    store.lake.write(_training_set(), CASE, "training_set")
    return store, Registry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")


def _train(store, registry, settings, shuffled_labels: bool = False) -> str:
    """A new challenger; with shuffled labels, a model with no signal (worse on every row)."""
    if shuffled_labels:
        rows = store.lake.read(CASE, "training_set")
        store.lake.write(rows.with_columns(pl.col(LABEL).shuffle(seed=3)), CASE, "training_set")
    version = train_challenger(store, registry, settings).version
    if shuffled_labels:
        store.lake.write(rows, CASE, "training_set")
    return version


def _gate_and_promote(store, registry, settings) -> promotion.Verdict:
    verdict = go_no_go(store, registry, settings)
    promotion.record(registry, verdict)
    promotion.promote(registry, settings.registered_model_name)
    return verdict


def test_clustered_average_precision_is_sklearns_with_the_draw_as_weights():
    rng = np.random.default_rng(1)
    labels = rng.random(3_000) < 0.1
    scores = np.round(rng.random(3_000) + 0.5 * labels, 2)  # many ties
    customer = rng.integers(0, 500, 3_000)
    ap = ClusteredAveragePrecision(labels, scores, customer)
    assert ap(np.arange(500)) == pytest.approx(average_precision_score(labels, scores))
    drawn = rng.integers(0, 500, 500)  # a bootstrap draw: repeats, and customers left out
    weights = np.bincount(drawn, minlength=500)[customer]
    assert ap(drawn) == pytest.approx(average_precision_score(labels, scores, sample_weight=weights))


def test_a_version_records_what_it_learnt_from(home):
    store, registry = home
    settings = _settings()
    version = _train(store, registry, settings)
    info = version_info(registry, settings.registered_model_name, version)
    tags = registry.client.get_model_version(settings.registered_model_name, version).tags
    assert info.test is not None and info.trained_until < info.test.start
    assert tags[promotion.TRAINED_UNTIL_TAG] == info.trained_until.isoformat() and "test" in tags["data_window"]


def test_the_first_model_is_judged_on_the_floors_alone(home):
    store, registry = home
    version = _train(store, registry, _settings())
    refused = go_no_go(store, registry, _settings(gate={"min_auc_pr": 0.99}))
    assert not refused.passed and refused.comparisons == () and refused.champion is None
    assert refused.summary().startswith(f"no champion; v{version} refused") and "AUC-PR" in refused.reasons[0]
    assert refused.outcome().severity == "WARN"


def test_a_worse_challenger_is_refused_on_the_same_rows_and_a_better_one_promoted(home):
    store, registry = home
    settings = _settings()
    name = settings.registered_model_name
    noise = _train(store, registry, settings, shuffled_labels=True)
    assert _gate_and_promote(store, registry, settings).passed  # floors at 0, no champion: v1 is champion
    good = _train(store, registry, settings)
    better = _gate_and_promote(store, registry, settings)
    (comparison,) = better.comparisons
    assert better.passed and comparison.status == "better beyond noise" and comparison.interval[0] > 0
    assert registry.alias_version(name, CHAMPION) == good
    test = version_info(registry, name, good).test
    rows = store.lake.read(CASE, "training_set").filter(
        pl.col("matured_30d") & pl.col("snapshot_date").is_between(test.start, test.end)
    )
    assert comparison.support_unit == "churned customers" and f"{rows.height:,} rows" in comparison.rows
    assert comparison.support == rows.filter(pl.col(LABEL))["customer_id"].n_unique()

    worse = _train(store, registry, settings, shuffled_labels=True)
    refused = _gate_and_promote(store, registry, settings)
    assert not refused.passed and refused.comparisons[0].worse and refused.comparisons[0].interval[1] < 0
    assert refused.summary().startswith(f"kept v{good}; v{worse} refused") and "AUC-PR" in refused.summary()
    assert registry.alias_version(name, CHAMPION) == good != noise


def test_no_fair_comparison_when_the_champion_trained_on_the_challengers_test_rows(home):
    store, registry = home
    settings = _settings()
    _train(store, registry, settings)
    _gate_and_promote(store, registry, settings)
    # A challenger tested on an earlier window (a shorter history): its test rows are the champion's training rows.
    earlier = settings.with_(
        evaluation={"test": {"start": "2024-06-03", "end": "2024-08-26"}, "validation": "2mo", "gap": "30d"}
    )
    challenger = _train(store, registry, earlier)
    verdict = go_no_go(store, registry, earlier)
    (comparison,) = verdict.comparisons
    assert comparison.impossible is not None and "after both cut-offs" in comparison.impossible
    assert verdict.passed and "no fair comparison" in verdict.comparisons_frame()["status"][0]
    assert verdict.version == challenger


def test_a_tolerance_keeps_a_slightly_worse_challenger(home):
    store, registry = home
    settings = _settings()
    _train(store, registry, settings)
    _gate_and_promote(store, registry, settings)
    _train(store, registry, settings, shuffled_labels=True)
    tolerant = _settings(gate={"comparison": ComparisonSettings(resamples=300, tolerance=1.0).model_dump()})
    assert go_no_go(store, registry, tolerant).passed


def test_any_version_on_any_window_without_promotion(home):
    store, registry = home
    settings = _settings()
    name = settings.registered_model_name
    first = _train(store, registry, settings)
    _gate_and_promote(store, registry, settings)
    second = _train(store, registry, settings, shuffled_labels=True)
    own = evaluate_version(store.lake, registry, settings, second, champion=first)
    assert own.in_sample_rows == 0 and own.comparison is not None and own.comparison.worse
    table = own.comparison_table()
    assert table.row(0, named=True)["high"] < 0 and table["champion"][0] > table["this_version"][0]
    window = DateRange(start=FIRST, end=FIRST + timedelta(weeks=20))
    early = evaluate_version(store.lake, registry, settings, first, window, champion=first)
    assert early.comparison is None and early.in_sample_rows == early.rows > 0 and early.metrics["auc_pr"] > 0
    assert registry.alias_version(name, CHAMPION) == first  # evaluating moved nothing
