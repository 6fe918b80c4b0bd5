"""The cascade's tree models scored one payment at a time without the libraries' per-call cost.

`xgboost.Booster.inplace_predict` costs ~0.3-0.5 ms of CPU for one row (array interface, proxy
matrix, predictor set-up) and `lightgbm.Booster.predict` ~0.07 ms in a tight loop but several
times that between other work (measured in the service's decision loop); the trees themselves
take microseconds. Here the trees are flat arrays: every node's way for the row is computed at
once (numpy over the nodes), the trees descend together one gather per level, and the leaves
are summed in tree order from the base score, as each library's predictor does:

* XGBoost: `x < threshold` in float32, a missing value to the node's default side, float32 sums
  from the base margin;
* LightGBM: `x <= threshold` in float64, a missing value to the default side where the node
  says so (else read as 0), zero to the default side on "zero as missing" nodes, float64 sums.

Probabilities then equal the library's within the rounding of the final sigmoid. Only what the
cascade trains is compiled (one-output logistic models, numerical splits, no linear or averaged
trees); anything else raises `NotCompilable`, and `compiled_or_booster` keeps the library's
booster. Every compilation is checked against the booster on random rows (missing values and
zeros included) before it is used.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import lightgbm
import numpy as np
import xgboost

log = logging.getLogger(__name__)
AGREEMENT = 1e-6  # largest difference from the library's probability accepted by the self-check
_XGB_LOGISTIC = ("binary:logistic", "reg:logistic")
_LGB_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| below it is zero for "zero as missing" nodes


class NotCompilable(ValueError):
    """The model uses something this layout does not reproduce."""


@dataclass(frozen=True, eq=False)
class CompiledTrees:
    """Flat arrays of every node; a leaf points to itself, so a descent of `depth` steps ends on leaves."""

    library: str  # "xgboost" or "lightgbm": how a split compares and what a missing value does
    feature: np.ndarray  # int: the split's feature (0 on leaves)
    threshold: np.ndarray  # float32 (XGBoost) or float64 (LightGBM)
    left: np.ndarray  # int: global index of the child taken when the comparison holds
    right: np.ndarray
    default_left: np.ndarray  # bool: where a missing value goes (on the nodes that treat it as missing)
    nan_missing: np.ndarray  # bool: NaN goes to the default side (elsewhere, LightGBM reads NaN as 0)
    zero_missing: np.ndarray  # bool: zero goes to the default side (LightGBM "zero as missing")
    leaf_value: np.ndarray  # 0 on inner nodes
    roots: np.ndarray  # int: the root of every tree
    depth: int
    base: float  # base margin (XGBoost); 0 for LightGBM, whose first tree carries its initial score
    num_features: int

    @classmethod
    def from_xgboost(cls, booster: xgboost.Booster) -> CompiledTrees:
        learner = json.loads(booster.save_raw("json"))["learner"]
        objective = learner["objective"]["name"]
        gbm = learner["gradient_booster"]
        params = learner["learner_model_param"]
        if objective not in _XGB_LOGISTIC or gbm["name"] != "gbtree" or int(params.get("num_target", 1)) != 1:
            raise NotCompilable(f"{objective} / {gbm['name']}: only one-output logistic gbtree models are compiled")
        trees = gbm["model"]["trees"]
        if any(t.get("categories_nodes") for t in trees) or any(any(t.get("split_type", [])) for t in trees):
            raise NotCompilable("categorical splits are not compiled")
        nodes = []
        for tree in trees:
            leaf = [c == -1 for c in tree["left_children"]]
            nodes.append(
                [
                    _Node(
                        feature=0 if is_leaf else tree["split_indices"][i],
                        threshold=0.0 if is_leaf else tree["split_conditions"][i],
                        left=-1 if is_leaf else tree["left_children"][i],
                        right=-1 if is_leaf else tree["right_children"][i],
                        default_left=bool(tree["default_left"][i]),
                        nan_missing=True,
                        zero_missing=False,
                        value=tree["split_conditions"][i] if is_leaf else 0.0,
                    )
                    for i, is_leaf in enumerate(leaf)
                ]
            )
        base = float(params["base_score"].strip("[]"))
        margin = np.float32(np.log(base) - np.log1p(-base))
        return cls._of("xgboost", nodes, float(margin), int(params["num_feature"]), np.float32)

    @classmethod
    def from_lightgbm(cls, booster: lightgbm.Booster) -> CompiledTrees:
        model = booster.dump_model()
        if (
            model.get("num_class", 1) != 1
            or model.get("num_tree_per_iteration", 1) != 1
            or model.get("average_output")
            or not str(model.get("objective", "")).startswith("binary sigmoid:1")
            or booster.params.get("linear_tree")
        ):
            raise NotCompilable(f"LightGBM {model.get('objective')}: only one-output binary models are compiled")
        nodes = [_lightgbm_nodes(tree["tree_structure"]) for tree in model["tree_info"]]
        return cls._of("lightgbm", nodes, 0.0, model["max_feature_idx"] + 1, np.float64)

    @classmethod
    def _of(cls, library: str, trees: list[list[_Node]], base: float, num_features: int, dtype) -> CompiledTrees:
        offsets = np.cumsum([0] + [len(t) for t in trees])
        flat = [n for t in trees for n in t]
        own = np.arange(len(flat))
        tree_offset = np.repeat(offsets[:-1], [len(t) for t in trees])
        is_leaf = np.array([n.left == -1 for n in flat])
        column = lambda name: np.array([getattr(n, name) for n in flat])  # noqa: E731
        return cls(
            library=library,
            feature=column("feature").astype(np.intp),
            threshold=column("threshold").astype(dtype),
            left=np.where(is_leaf, own, tree_offset + column("left")).astype(np.intp),
            right=np.where(is_leaf, own, tree_offset + column("right")).astype(np.intp),
            default_left=column("default_left").astype(bool) & ~is_leaf,
            nan_missing=column("nan_missing").astype(bool),
            zero_missing=column("zero_missing").astype(bool) & ~is_leaf,
            leaf_value=column("value").astype(dtype),
            roots=offsets[:-1].astype(np.intp),
            depth=max(_depth(t) for t in trees),
            base=base,
            num_features=num_features,
        )

    def margin(self, row: np.ndarray) -> float:
        dtype = np.float32 if self.library == "xgboost" else np.float64
        x = np.asarray(row, dtype=dtype).reshape(-1)
        # Every node's way for this row at once, then the descent is one gather per level.
        following = np.where(self._goes_left(x), self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = following[node]
        # Sequential sums from the base, in tree order (not numpy's pairwise sum), in the library's precision.
        leaves = np.concatenate((np.array([self.base], dtype=dtype), self.leaf_value[node]))
        return float(np.cumsum(leaves, dtype=dtype)[-1])

    def _goes_left(self, x: np.ndarray) -> np.ndarray:
        value = x[self.feature]
        if self.library == "xgboost":
            below = value < self.threshold
            return np.where(np.isnan(value), self.default_left, below) if np.isnan(x).any() else below
        if not self.zero_missing.any() and not np.isnan(x).any():
            return value <= self.threshold
        nan = np.isnan(value)
        value = np.where(nan & ~self.nan_missing, 0.0, value)  # NaN reads as 0 unless the node has NaN missing
        to_default = (self.nan_missing & nan) | (self.zero_missing & (np.abs(value) <= _LGB_ZERO))
        return np.where(to_default, self.default_left, value <= self.threshold)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(x)
        if rows.shape[0] == 1 and self.library == "lightgbm":  # the service's case: no array of margins
            return np.array([1.0 / (1.0 + math.exp(-self.margin(rows[0])))])
        margins = np.array([self.margin(r) for r in rows])
        if self.library == "xgboost":
            margins = margins.astype(np.float32)
            return (np.float32(1) / (np.float32(1) + np.exp(-margins))).astype(np.float32)
        return 1.0 / (1.0 + np.exp(-margins))

    def inplace_predict(self, x: np.ndarray, **_) -> np.ndarray:
        """As `xgboost.Booster.inplace_predict` (probabilities)."""
        return self.probabilities(x)

    def predict(self, x: np.ndarray, **_) -> np.ndarray:
        """As `lightgbm.Booster.predict` (probabilities; thread settings do not apply)."""
        return self.probabilities(x)


@dataclass(frozen=True)
class _Node:
    feature: int
    threshold: float
    left: int  # index in its tree, -1 on a leaf
    right: int
    default_left: bool
    nan_missing: bool
    zero_missing: bool
    value: float


def _lightgbm_nodes(root: dict) -> list[_Node]:
    """A LightGBM tree (nested dicts) as a list of nodes, the root first."""
    nodes: list[_Node | None] = []

    def add(node: dict) -> int:
        index = len(nodes)
        nodes.append(None)
        if "leaf_value" in node:
            nodes[index] = _Node(0, 0.0, -1, -1, False, False, False, node["leaf_value"])
            return index
        if node.get("decision_type") != "<=":
            raise NotCompilable(f"LightGBM split {node.get('decision_type')!r}: only numerical splits are compiled")
        left, right = add(node["left_child"]), add(node["right_child"])
        missing = node.get("missing_type", "None")
        nodes[index] = _Node(
            node["split_feature"],
            node["threshold"],
            left,
            right,
            bool(node["default_left"]),
            missing == "NaN",
            missing == "Zero",
            0.0,
        )
        return index

    add(root)
    return nodes


def _depth(nodes: list[_Node]) -> int:
    """Edges on the longest path from the root (node 0)."""
    level, frontier = 0, [0]
    while True:
        children = [c for n in frontier for c in (nodes[n].left, nodes[n].right) if c != -1]
        if not children:
            return level
        level, frontier = level + 1, children


def _reference(booster, x: np.ndarray) -> np.ndarray:
    if isinstance(booster, xgboost.Booster):
        return booster.inplace_predict(x, validate_features=False)
    return booster.predict(x, num_threads=1)


def agreement(compiled: CompiledTrees, booster, rows: int = 300, seed: int = 0) -> float:
    """Largest difference between the compiled and the library's probabilities on random rows (a tenth of the
    values missing, a tenth zero, at scales from 0.01 to 1000)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, size=(rows, compiled.num_features)) * rng.choice([0.01, 1, 10, 1000], size=(rows, 1))
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.1] = np.nan
    x[: rows // 2] = np.abs(x[: rows // 2])
    return float(np.max(np.abs(compiled.probabilities(x) - _reference(booster, x))))


def compiled_or_booster(booster):
    """The compiled trees of an XGBoost or LightGBM booster when they reproduce it on the self-check, else the
    booster itself."""
    try:
        if isinstance(booster, xgboost.Booster):
            compiled = CompiledTrees.from_xgboost(booster)
        elif isinstance(booster, lightgbm.Booster):
            compiled = CompiledTrees.from_lightgbm(booster)
        else:
            return booster
        gap = agreement(compiled, booster)
    except NotCompilable as exc:
        log.warning("scored by the library: %s", exc)
        return booster
    if not gap <= AGREEMENT:
        log.warning("scored by the library: the compiled trees differ by %.3g on the self-check", gap)
        return booster
    return compiled
