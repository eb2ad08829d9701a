"""Prediction runtimes for a loaded XGBoost booster.

``XGBoostRuntime`` is the reference: xgboost's own ``inplace_predict``. ``TreeRuntime`` evaluates the
same trees with a handful of vectorised numpy gathers per tree level. It avoids xgboost's per-call
set-up, which dominates single-row and small-batch calls, and is only used after its answers were
checked against the reference at load time (see ``artifact.load_model``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np

SUPPORTED_OBJECTIVES = ("multi:softprob", "binary:logistic")


class Runtime(Protocol):
    name: str

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (rows, classes), for float32 rows of shape (rows, features)."""
        ...


class XGBoostRuntime:
    """xgboost's own prediction, the reference every other runtime is checked against."""

    name = "xgboost"

    def __init__(self, booster: Any, objective: str) -> None:
        self._booster = booster
        self._binary = objective == "binary:logistic"

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        out = np.asarray(self._booster.inplace_predict(rows, validate_features=False), dtype=np.float64)
        if self._binary:
            return np.column_stack([1.0 - out, out])
        return out.reshape(rows.shape[0], -1)


def _parse_base_score(text: str) -> np.ndarray:
    value = json.loads(text) if text.startswith("[") else [float(text)]
    return np.asarray(value, dtype=np.float64)


class TreeRuntime:
    """Every tree of the ensemble walked at once, one level per step, with numpy gathers.

    Nodes of all trees are stored in flat arrays. A leaf points to itself on both sides, so after
    ``depth`` steps every walk has reached its leaf. Child ``2*node + go_right`` is the next node.
    """

    name = "tree"

    def __init__(self, model_json: dict[str, Any]) -> None:
        learner = model_json["learner"]
        objective = learner["objective"]["name"]
        if objective not in SUPPORTED_OBJECTIVES:
            raise NotImplementedError(f"objective {objective} is not supported by the tree runtime")
        booster = learner["gradient_booster"]
        if booster.get("name") != "gbtree":
            raise NotImplementedError(f"booster {booster.get('name')} is not supported by the tree runtime")
        model = booster["model"]
        trees = model["trees"]
        params = learner["learner_model_param"]
        self._binary = objective == "binary:logistic"
        self.num_features = int(params["num_feature"])
        groups = 1 if self._binary else int(params["num_class"])
        base = _parse_base_score(params["base_score"])
        if self._binary:
            # binary:logistic stores base_score as a probability; trees add to its logit.
            p = float(base[0])
            base = np.asarray([np.log(p / (1.0 - p))]) if 0.0 < p < 1.0 else np.zeros(1)
        self._base = np.broadcast_to(base, (groups,)).astype(np.float64)

        roots, features, thresholds, children, leaves, defaults = [], [], [], [], [], []
        offset = 0
        depth = 0
        for tree in trees:
            if int(tree.get("tree_param", {}).get("size_leaf_vector", "1") or 1) > 1:
                raise NotImplementedError("vector-leaf trees (multi_strategy=multi_output_tree) are not supported")
            if any(int(t) != 0 for t in tree.get("split_type", [])):
                raise NotImplementedError("categorical splits are not supported by the tree runtime")
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
            is_leaf = left == -1
            own = np.arange(left.size, dtype=np.int64)
            pair = np.empty(2 * left.size, dtype=np.int64)
            pair[0::2] = np.where(is_leaf, own, left) + offset
            pair[1::2] = np.where(is_leaf, own, right) + offset
            roots.append(offset)
            features.append(np.where(is_leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
            thresholds.append(np.where(is_leaf, np.float32(np.inf), conditions))
            children.append(pair)
            leaves.append(np.where(is_leaf, conditions, np.float32(0)))
            defaults.append(np.asarray(tree["default_left"], dtype=bool))
            depth = max(depth, _depth(left, right))
            offset += left.size
        self.depth = depth
        self.num_trees = len(trees)
        self._roots = np.asarray(roots, dtype=np.intp)
        self._features = np.concatenate(features).astype(np.intp)
        self._thresholds = np.concatenate(thresholds).astype(np.float32)
        self._children = np.concatenate(children).astype(np.intp)
        self._leaves = np.concatenate(leaves).astype(np.float32)
        self._default_left = np.concatenate(defaults)
        tree_group = np.asarray(model.get("tree_info", [0] * len(trees)), dtype=np.intp)
        self._group_matrix = np.zeros((len(trees), groups), dtype=np.float64)
        self._group_matrix[np.arange(len(trees)), tree_group] = 1.0
        self._tree_group = tree_group
        # One row walks every tree with nodes numbered 2*node: the pair's child is then one take away
        # (``next[2*node + go_right]`` is already doubled) and node attributes are repeated per pair.
        self._roots2 = 2 * self._roots
        self._features2 = np.repeat(self._features, 2)
        self._thresholds2 = np.repeat(self._thresholds, 2)
        self._next2 = 2 * self._children
        self._leaves2 = np.repeat(self._leaves, 2)
        self._default_left2 = np.repeat(self._default_left, 2)

    def _margins_one(self, row: np.ndarray) -> np.ndarray:
        node = self._roots2
        missing = bool(np.isnan(row).any())
        for _ in range(self.depth):
            value = row.take(self._features2.take(node))
            go_right = value >= self._thresholds2.take(node)
            if missing:
                go_right = np.where(np.isnan(value), ~self._default_left2.take(node), go_right)
            node = self._next2.take(node + go_right)
        margin = np.bincount(self._tree_group, weights=self._leaves2.take(node), minlength=self._base.size)
        return (margin + self._base)[None, :]

    def margins(self, rows: np.ndarray) -> np.ndarray:
        count, width = rows.shape
        flat = np.ascontiguousarray(rows, dtype=np.float32).ravel()
        if count == 1:
            return self._margins_one(flat)
        row_base = (np.arange(count, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self._roots, (count, self._roots.size)).copy()
        has_missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            value = flat.take(self._features.take(node) + row_base)
            go_right = value >= self._thresholds.take(node)
            if has_missing:
                # A missing value follows the node's default direction; leaves stay put either way.
                go_right = np.where(np.isnan(value), ~self._default_left.take(node), go_right)
            node = self._children.take(2 * node + go_right)
        return self._leaves.take(node).astype(np.float64) @ self._group_matrix + self._base

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        margin = self.margins(rows)
        if self._binary:
            p = 1.0 / (1.0 + np.exp(-margin[:, 0]))
            return np.column_stack([1.0 - p, p])
        margin -= margin.max(axis=1, keepdims=True)
        np.exp(margin, out=margin)
        margin /= margin.sum(axis=1, keepdims=True)
        return margin


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    deepest = 0
    stack = [(0, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if left[node] != -1:
            stack.append((int(left[node]), level + 1))
            stack.append((int(right[node]), level + 1))
    return deepest
