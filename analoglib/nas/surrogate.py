"""The AnalogNAS surrogate: boosted trees that rank architectures by their analog accuracy.

Three XGBoost models on the configuration features, as in Benmeziane et al. 2023: a pairwise
ranker (``rank:pairwise``) of the 1-day accuracy of the HWA-trained network, a regressor of the
accuracy variation over a month (AVM) and a regressor of the 1-day standard deviation over
programmings. Hyper-parameters are the released code's (gbtree, learning rate 0.1, depth 6,
110 trees, row subsample 0.75, column subsample 0.9) with the CPU ``hist`` tree method; the
ranker pairs every item with one random item of another label, which is what
``rank:pairwise`` did in the xgboost 1.x releases the code used.

``xgboost`` is an optional dependency: ``pip install -e ".[nas]"`` (``make env`` installs it).

References:
    Benmeziane et al. 2023; Kendall 1945; Järvelin & Kekäläinen 2002 (NDCG);
    ``docs/nas.md#surrogate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Surrogate", "kendall_tau", "ndcg_at_k"]


def kendall_tau(x: Any, y: Any, chunk: int = 512) -> float:
    """Kendall's tau-b between two score vectors (ties counted as in scipy's default).

    tau-b = (C - D) / sqrt((n0 - T_x)(n0 - T_y)) with C and D the concordant and discordant
    pairs, n0 = n(n-1)/2 and T_x, T_y the pairs tied in x or y. All pairs are compared in
    chunks of rows (O(n^2) work, O(chunk * n) memory; 15,625 items take about a second).

    Raises:
        ValueError: If the lengths differ or there are fewer than 2 items.
    """
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x and y have different lengths: {a.size} and {b.size}.")
    n = a.size
    if n < 2:
        raise ValueError(f"kendall_tau needs at least 2 items, got {n}.")
    concordance = 0.0  # C - D
    tied_x = tied_y = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # pairs (i, j) with i in the chunk and j > i: (rows, n) masks
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        sx = np.sign(a[None, :] - a[start:stop, None])
        sy = np.sign(b[None, :] - b[start:stop, None])
        concordance += float((sx * sy)[upper].sum())
        tied_x += int(((sx == 0) & upper).sum())
        tied_y += int(((sy == 0) & upper).sum())
    n0 = n * (n - 1) / 2
    denominator = np.sqrt((n0 - tied_x) * (n0 - tied_y))
    return float(concordance / denominator) if denominator > 0 else float("nan")


def ndcg_at_k(true: Any, predicted: Any, k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` items ranked by ``predicted``.

    The gain of an item is its ``true`` value minus the smallest true value (so every gain is
    >= 0); DCG = sum over ranks r = 1..k of gain / log2(r + 1), divided by the DCG of the ideal
    (true) order. 1 means the predicted top-k is the true top-k in the right order.
    """
    t = np.asarray(true, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true and predicted have different lengths: {t.size} and {p.size}.")
    k = min(int(k), t.size)
    if k < 1:
        raise ValueError(f"k = {k!r} is not allowed: expected an integer >= 1.")
    gain = t - t.min()
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((gain[np.argsort(-p, kind="stable")[:k]] * discount).sum())
    ideal = float((np.sort(gain)[::-1][:k] * discount).sum())
    return dcg / ideal if ideal > 0 else float("nan")


def _xgboost() -> Any:
    try:
        import xgboost
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the AnalogNAS surrogate needs xgboost: pip install -e ".[nas]" (or `make env`).'
        ) from err
    return xgboost


@dataclass
class Surrogate:
    """Ranker of 1-day accuracy plus AVM and standard-deviation regressors.

    Attributes:
        seed: Seed of the trees' row and column subsampling.
        n_estimators, max_depth, learning_rate, subsample, colsample_bytree: XGBoost settings
            (the released AnalogNAS code's).
        n_jobs: Threads per model (1 keeps several surrogates in parallel processes cheap).

    Example:
        >>> s = Surrogate(seed=0).fit(x, accuracy, avm, std)  # doctest: +SKIP
        >>> s.predict(x_new)  # columns score, avm, std  # doctest: +SKIP
    """

    seed: int = 0
    n_estimators: int = 110
    max_depth: int = 6
    learning_rate: float = 0.1
    subsample: float = 0.75
    colsample_bytree: float = 0.9
    n_jobs: int = 1
    models: dict[str, Any] = field(default_factory=dict, repr=False)

    def _settings(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "tree_method": "hist",
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
        }

    def fit(
        self,
        features: np.ndarray,
        accuracy: Any,
        avm: Any | None = None,
        std: Any | None = None,
    ) -> Surrogate:
        """Train the ranker on ``accuracy`` and, when given, the AVM and std regressors.

        Args:
            features: ``(n, d)`` configuration features (``space.encode``).
            accuracy: ``(n,)`` 1-day accuracies (only their order matters to the ranker).
            avm: ``(n,)`` accuracy variations over a month, or None.
            std: ``(n,)`` 1-day standard deviations, or None.

        Returns:
            ``self``.
        """
        xgb = _xgboost()
        x = np.asarray(features, dtype=float)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"features have shape {x.shape}: expected (n >= 2, d).")
        targets = {"score": accuracy, "avm": avm, "std": std}
        for name, target in targets.items():
            if target is not None and len(np.asarray(target)) != len(x):
                raise ValueError(
                    f"{name} has {len(np.asarray(target))} values for {len(x)} feature rows."
                )
        # "mean" pairs every item with one random item of another label, as rank:pairwise did
        # in the xgboost 1.x the released code used; xgboost 2's default ("topk") pairs only
        # within the top of the ranking and ranks the rest poorly (held-out tau 0.37 vs 0.61
        # on 1,000 bench cells).
        ranker = xgb.XGBRanker(
            objective="rank:pairwise",
            lambdarank_pair_method="mean",
            lambdarank_num_pair_per_sample=1,
            **self._settings(),
        )
        ranker.fit(x, np.asarray(accuracy, dtype=float), qid=np.zeros(len(x), dtype=int))
        self.models = {"score": ranker}
        for name in ("avm", "std"):
            if targets[name] is not None:
                regressor = xgb.XGBRegressor(objective="reg:squarederror", **self._settings())
                regressor.fit(x, np.asarray(targets[name], dtype=float))
                self.models[name] = regressor
        return self

    def predict(self, features: np.ndarray) -> pd.DataFrame:
        """Predictions, one row per feature row.

        Columns ``score`` (higher ranks higher; not an accuracy) and, if trained, ``avm`` and
        ``std``.
        """
        if not self.models:
            raise RuntimeError("the surrogate is not trained: call fit() first.")
        x = np.asarray(features, dtype=float)
        return pd.DataFrame({name: model.predict(x) for name, model in self.models.items()})
