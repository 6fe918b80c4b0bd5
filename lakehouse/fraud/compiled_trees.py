"""Layer 3's XGBoost model scored one payment at a time without XGBoost's per-call cost.

`Booster.inplace_predict` costs ~0.3-0.5 ms of CPU for one row (array interface, proxy matrix,
predictor set-up), whatever the model; the trees themselves take a few microseconds. Here the
trees are laid out as flat arrays, every tree descends one level per step together (numpy over
the trees), and the leaves are added in tree order in float32 from the base margin, as
XGBoost's CPU predictor does: the same splits (`x < threshold` in float32, missing values to
the default side) and probabilities equal to XGBoost's within float32 rounding of the sigmoid.

Only what the cascade trains is compiled (gbtree, binary logistic, one output, numerical
splits); anything else raises `NotCompilable`, and `compiled_or_booster` then keeps XGBoost.
Every compilation is checked against `inplace_predict` on random rows (with missing values)
before it is used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import xgboost

log = logging.getLogger(__name__)
AGREEMENT = 1e-6  # largest difference from XGBoost's probability accepted by the self-check
_LOGISTIC = ("binary:logistic", "reg:logistic")


class NotCompilable(ValueError):
    """The model uses something this layout does not reproduce."""


@dataclass(frozen=True, eq=False)
class CompiledTrees:
    """Flat arrays of every node; a leaf points to itself, so a descent of `depth` steps ends on leaves."""

    feature: np.ndarray  # int: the split's feature (0 on leaves)
    threshold: np.ndarray  # float32
    left: np.ndarray  # int: global index of the child taken when x < threshold
    right: np.ndarray
    missing_left: np.ndarray  # bool: where a missing value goes
    leaf_value: np.ndarray  # float32 (0 on inner nodes)
    roots: np.ndarray  # int: the root of every tree
    depth: int
    base_margin: np.float32
    num_features: int

    @classmethod
    def from_booster(cls, booster: xgboost.Booster) -> CompiledTrees:
        learner = json.loads(booster.save_raw("json"))["learner"]
        objective = learner["objective"]["name"]
        gbm = learner["gradient_booster"]
        params = learner["learner_model_param"]
        if objective not in _LOGISTIC or gbm["name"] != "gbtree" or int(params.get("num_target", 1)) != 1:
            raise NotCompilable(f"{objective} / {gbm['name']}: only one-output logistic gbtree models are compiled")
        trees = gbm["model"]["trees"]
        if any(t.get("categories_nodes") for t in trees) or any(any(t.get("split_type", [])) for t in trees):
            raise NotCompilable("categorical splits are not compiled")
        base = float(params["base_score"].strip("[]"))
        offsets = np.cumsum([0] + [len(t["left_children"]) for t in trees])
        left, right, feature, threshold, missing, value = [], [], [], [], [], []
        depth = 0
        for offset, tree in zip(offsets, trees, strict=False):
            lc, rc = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
            leaf = lc == -1
            own = offset + np.arange(lc.size)
            left.append(np.where(leaf, own, offset + lc))
            right.append(np.where(leaf, own, offset + rc))
            feature.append(np.where(leaf, 0, tree["split_indices"]))
            conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
            threshold.append(np.where(leaf, np.float32(0), conditions))
            missing.append(np.asarray(tree["default_left"], dtype=bool) & ~leaf)
            value.append(np.where(leaf, conditions, np.float32(0)))
            depth = max(depth, _depth(lc, rc))
        return cls(
            feature=np.concatenate(feature).astype(np.intp),
            threshold=np.concatenate(threshold).astype(np.float32),
            left=np.concatenate(left).astype(np.intp),
            right=np.concatenate(right).astype(np.intp),
            missing_left=np.concatenate(missing),
            leaf_value=np.concatenate(value).astype(np.float32),
            roots=offsets[:-1].astype(np.intp),
            depth=depth,
            base_margin=np.float32(np.log(base) - np.log1p(-base)),
            num_features=int(params["num_feature"]),
        )

    def margin(self, row: np.ndarray) -> np.float32:
        x = np.asarray(row, dtype=np.float32).reshape(-1)
        node = self.roots
        if np.isnan(x).any():
            for _ in range(self.depth):
                value = x[self.feature[node]]
                go_left = np.where(np.isnan(value), self.missing_left[node], value < self.threshold[node])
                node = np.where(go_left, self.left[node], self.right[node])
        else:
            for _ in range(self.depth):
                node = np.where(x[self.feature[node]] < self.threshold[node], self.left[node], self.right[node])
        # Sequential float32 sums from the base margin, in tree order (not numpy's pairwise sum).
        leaves = np.concatenate(([self.base_margin], self.leaf_value[node]))
        return np.cumsum(leaves, dtype=np.float32)[-1]

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the rows of `x`, like `xgboost.Booster.inplace_predict` (one row is the fast case)."""
        rows = np.atleast_2d(x)
        margins = np.array([self.margin(r) for r in rows], dtype=np.float32)
        return (np.float32(1) / (np.float32(1) + np.exp(-margins))).astype(np.float32)


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges on the longest path from the root."""
    level, frontier = 0, [0]
    while True:
        children = [c for n in frontier for c in (left[n], right[n]) if c != -1]
        if not children:
            return level
        level, frontier = level + 1, children


def agreement(compiled: CompiledTrees, booster: xgboost.Booster, rows: int = 200, seed: int = 0) -> float:
    """Largest difference between the compiled and XGBoost's probabilities on random rows (a tenth missing)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, size=(rows, compiled.num_features)) * rng.choice([1, 10, 1000], size=(rows, 1))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[: rows // 2] = np.abs(x[: rows // 2])
    expected = booster.inplace_predict(x, validate_features=False)
    return float(np.max(np.abs(compiled.inplace_predict(x) - expected)))


def compiled_or_booster(booster: xgboost.Booster):
    """The compiled trees when they reproduce the booster on the self-check, else the booster itself."""
    try:
        compiled = CompiledTrees.from_booster(booster)
        gap = agreement(compiled, booster)
    except NotCompilable as exc:
        log.warning("layer 3 scored by XGBoost: %s", exc)
        return booster
    if not gap <= AGREEMENT:
        log.warning("layer 3 scored by XGBoost: the compiled trees differ by %.3g on the self-check", gap)
        return booster
    return compiled
