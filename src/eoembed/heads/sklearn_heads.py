"""scikit-learn heads: linear/logistic, random forest, gradient boosting, k nearest neighbours.

Saved with skops (``model.skops``) and loaded with an explicit list of trusted types: a head
folder from elsewhere can hold only scikit-learn's own estimators, never code to run. Any type
outside :data:`TRUSTED_TYPES` makes :meth:`~eoembed.heads.base.Head.load` refuse the file with
:class:`~eoembed.errors.UnsafeWeightsError` before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from eoembed.errors import DependencyNotFoundError, SpecError, UnsafeWeightsError
from eoembed.heads.base import TabularHead, register_head

__all__ = [
    "TRUSTED_TYPES",
    "GradientBoostingHead",
    "KNNHead",
    "LinearHead",
    "RandomForestHead",
    "SklearnHead",
    "load_skops",
]

TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
)
"""Types beyond skops' default-trusted set that eoembed's own heads contain. Nothing else is
loaded: a file that needs more was not written by eoembed and may run code."""


def _sklearn() -> None:
    """Fail with the extra to install when scikit-learn or skops is missing."""
    try:
        import sklearn  # noqa: F401
        import skops  # noqa: F401
    except ImportError as exc:
        raise DependencyNotFoundError(exc.name or "scikit-learn", "learn") from None


def load_skops(path: Path, trusted: tuple[str, ...] = TRUSTED_TYPES) -> Any:
    """Load a skops file, trusting only skops' defaults and ``trusted``.

    Raises:
        UnsafeWeightsError: the file holds a type outside that list (named in the message).
    """
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise UnsafeWeightsError(
            f"{path} holds types eoembed does not trust ({', '.join(refused)}); it was not "
            "written by an eoembed head and is not loaded"
        )
    return sio.load(path, trusted=list(untrusted))


class SklearnHead(TabularHead):
    """A scikit-learn estimator (or pipeline) as a head; subclasses say which."""

    weights_file: ClassVar[str] = "model.skops"

    def _configure(self) -> None:
        _sklearn()
        self.model: Any = None

    def _estimator(self) -> Any:
        """A new, unfitted estimator for :attr:`task` and :attr:`params`."""
        raise NotImplementedError

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        # scikit-learn checks hyperparameters when fitting (since 1.2, this error class).
        from sklearn.utils._param_validation import InvalidParameterError

        self.model = self._estimator()
        try:
            self.model.fit(x, y)
        except InvalidParameterError as exc:
            raise SpecError(f"{self.kind}.params", self.params, reason=str(exc)) from None

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x))

    def _save_weights(self, path: Path) -> None:
        import skops.io as sio

        sio.dump(self.model, path)

    def _load_weights(self, path: Path) -> None:
        self.model = load_skops(path)


def _scaled(model: Any) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), model)


@register_head
class LinearHead(SklearnHead):
    """Ridge regression or logistic regression on standardised embeddings: the linear probe."""

    kind: ClassVar[str] = "linear"
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    defaults: ClassVar[dict[str, Any]] = {"alpha": 1.0, "C": 1.0, "max_iter": 1000}

    def _estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        p = self.params
        if self.task == "regression":
            return _scaled(Ridge(alpha=p["alpha"]))
        return _scaled(LogisticRegression(C=p["C"], max_iter=p["max_iter"],
                                          random_state=self.seed))


@register_head
class RandomForestHead(SklearnHead):
    """A random forest (the rs-embed paper's benchmark head)."""

    kind: ClassVar[str] = "rf"
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    defaults: ClassVar[dict[str, Any]] = {
        "n_estimators": 100, "max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt",
        "n_jobs": -1,
    }

    def _estimator(self) -> Any:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestRegressor if self.task == "regression" else RandomForestClassifier
        return cls(random_state=self.seed, **self.params)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        super()._fit(x, y)
        # Trees train in parallel, but predictions are summed in a fixed order: threads add
        # tree outputs in whatever order they finish, which changes the last bits.
        self.model.set_params(n_jobs=None)


@register_head
class GradientBoostingHead(SklearnHead):
    """Histogram gradient boosting, on the embeddings' first ``pca`` principal components.

    Trees split one dimension at a time, so on wide embeddings (hundreds of dimensions) a
    PCA first costs little accuracy and makes training about ten times faster: 100,000
    embeddings of dim 768 train in seconds (``benchmarks/heads_training.py``). ``pca=None``
    boosts on the raw dimensions.
    """

    kind: ClassVar[str] = "gbm"
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    defaults: ClassVar[dict[str, Any]] = {
        "pca": 64, "max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31,
        "l2_regularization": 0.0, "early_stopping": "auto",
    }

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.model = self._estimator(x.shape)
        self.model.fit(x, y)

    def _estimator(self, shape: tuple[int, ...] | None = None) -> Any:
        from sklearn.decomposition import PCA
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.pipeline import make_pipeline

        cls = (HistGradientBoostingRegressor if self.task == "regression"
               else HistGradientBoostingClassifier)
        params = {k: v for k, v in self.params.items() if k != "pca"}
        model = cls(random_state=self.seed, **params)
        components = self.params["pca"]
        if components is None or (shape is not None and int(components) >= shape[1]):
            return model
        if shape is not None:
            components = min(int(components), shape[0])
        return make_pipeline(PCA(int(components), svd_solver="randomized",
                                 random_state=self.seed), model)


@register_head
class KNNHead(SklearnHead):
    """k nearest neighbours on standardised embeddings (brute force: embeddings are wide)."""

    kind: ClassVar[str] = "knn"
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    defaults: ClassVar[dict[str, Any]] = {"n_neighbors": 5, "weights": "uniform",
                                          "metric": "euclidean", "n_jobs": -1}

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.model = self._estimator()
        k = min(int(self.params["n_neighbors"]), len(x))
        self.model.set_params(**{self.model.steps[-1][0] + "__n_neighbors": k})
        self.model.fit(x, y)

    def _estimator(self) -> Any:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        cls = KNeighborsRegressor if self.task == "regression" else KNeighborsClassifier
        return _scaled(cls(algorithm="brute", **self.params))
