"""The compiled trees give the libraries' probabilities (XGBoost: float32 splits and sums; LightGBM: float64,
its three kinds of missing values) on models like the cascade's layers, and anything they cannot reproduce
stays with the library."""

from dataclasses import dataclass

import lightgbm
import numpy as np
import pytest
import xgboost

from lakehouse.fraud.compiled_trees import CompiledTrees, NotCompilable, agreement, compiled_or_booster
from lakehouse.fraud.online import compiled


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 12)) * np.array([1, 10, 1000, 0.01] * 3)
    y = ((x[:, 0] + x[:, 1] / 10 + rng.normal(size=rows)) > 1).astype(int)
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values, so both default directions are learnt
    return x, y


@pytest.fixture(scope="module")
def booster() -> xgboost.Booster:
    x, y = _data(3000, 1)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.2, "nthread": 1, "seed": 3}
    return xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=60)


def test_probabilities_and_margins_are_xgboosts(booster):
    compiled = CompiledTrees.from_xgboost(booster)
    x, _ = _data(5000, 2)
    expected = booster.inplace_predict(x)
    assert np.max(np.abs(compiled.inplace_predict(x) - expected)) <= 1e-6
    margins = booster.inplace_predict(x[:500], predict_type="margin")
    assert [compiled.margin(row) for row in x[:500]] == margins.tolist()  # float32, exactly
    one = compiled.inplace_predict(x[:1])
    assert one.shape == (1,) and abs(float(one[0]) - float(expected[0])) <= 1e-6
    assert agreement(compiled, booster) <= 1e-6


def _lightgbm(x: np.ndarray, y: np.ndarray, **params) -> lightgbm.Booster:
    base = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "num_threads": 1, "seed": 3}
    return lightgbm.train(base | params, lightgbm.Dataset(x, label=y), num_boost_round=40)


@pytest.mark.parametrize(
    ("missing", "params"),
    [
        ("none (as the cascade trains it)", {}),
        ("NaN", {"use_missing": True}),
        ("zero", {"zero_as_missing": True}),
        ("no missing values at all", {"use_missing": False}),
    ],
)
def test_lightgbm_probabilities_are_lightgbms(missing, params):
    x, y = _data(3000, 6)
    if missing.startswith("none"):
        x = np.nan_to_num(x)  # the cascade trains on filled features: no node learns a missing direction
    booster = _lightgbm(x, y, **params)
    compiled = CompiledTrees.from_lightgbm(booster)
    rows, _ = _data(3000, 7)
    rows[::7, :4] = 0.0
    expected = booster.predict(rows, num_threads=1)
    assert np.max(np.abs(compiled.predict(rows, num_threads=1) - expected)) <= 1e-12, missing
    assert [compiled.margin(r) for r in rows[:300]] == booster.predict(rows[:300], raw_score=True).tolist()
    assert compiled_or_booster(booster) is not booster


def test_what_cannot_be_compiled_stays_with_the_library():
    x, y = _data(600, 4)
    softmax = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
        xgboost.DMatrix(x, label=y + (x[:, 2] > 0)),
        num_boost_round=5,
    )
    with pytest.raises(NotCompilable):
        CompiledTrees.from_xgboost(softmax)
    assert compiled_or_booster(softmax) is softmax
    categorical = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4},
        lightgbm.Dataset(np.abs(np.nan_to_num(x[:, :2])).round() % 5, label=y, categorical_feature=[0]),
        num_boost_round=5,
    )
    with pytest.raises(NotCompilable):
        CompiledTrees.from_lightgbm(categorical)
    assert compiled_or_booster(categorical) is categorical


@dataclass(frozen=True)
class _Calibrated:
    """A model-side wrapper around the booster (as a calibration would be)."""

    booster: object
    shift: float = 0.0

    def inplace_predict(self, x):
        return self.booster.inplace_predict(x) + self.shift


def test_layer3_is_compiled_inside_a_wrapper_too(booster):
    assert isinstance(compiled(booster), CompiledTrees)
    wrapped = compiled(_Calibrated(booster, 0.5))
    assert isinstance(wrapped.booster, CompiledTrees) and wrapped.shift == 0.5
    x, _ = _data(50, 5)
    assert np.max(np.abs(wrapped.inplace_predict(x) - (booster.inplace_predict(x) + 0.5))) <= 1e-6
