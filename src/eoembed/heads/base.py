"""The head contract: a small model on frozen embeddings, saved with its config and provenance.

Like torchgeo's trainers and huggingface_hub's ``ModelHubMixin``: the public methods
(:meth:`Head.fit`, :meth:`Head.predict`, :meth:`Head.save`, :meth:`Head.load`) check inputs,
keep the bookkeeping (class labels, input size, config) and call small subclass hooks
(``_configure``, ``_fit``, ``_predict``, ``_save_weights``, ``_load_weights``). A head folder
holds ``config.json`` (everything needed to rebuild the head, plus the embedder it was
trained on) and one weights file: ``model.safetensors`` (torch heads) or ``model.skops``
(scikit-learn heads, loaded with an explicit list of trusted types; never plain pickle).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from eoembed._version import __version__
from eoembed.errors import CorruptFileError, EoembedError, HeadNotFoundError, SpecError

__all__ = [
    "CONFIG_FILE",
    "HEAD_FORMAT",
    "TASKS",
    "GridHead",
    "Head",
    "TabularHead",
    "head_class",
    "list_heads",
    "load_head",
    "register_head",
]

CONFIG_FILE = "config.json"
HEAD_FORMAT = 1
"""Version of the head folder layout, written to ``config.json``."""
TASKS = ("regression", "classification", "segmentation")

_REGISTRY: dict[str, type[Head]] = {}


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: make ``cls`` buildable by its :attr:`Head.kind` name."""
    _REGISTRY[cls.kind] = cls
    return cls


def _builtin() -> None:
    """Import the built-in heads (they register themselves), on first use only."""
    from eoembed.heads import mlp, segmentation, sklearn_heads  # noqa: F401


def list_heads() -> list[str]:
    """The registered head kinds."""
    _builtin()
    return sorted(_REGISTRY)


def head_class(kind: str) -> type[Head]:
    """The head class registered as ``kind``.

    Raises:
        SpecError: an unknown kind, listing the known ones.
    """
    _builtin()
    if kind not in _REGISTRY:
        raise SpecError("head", kind, allowed=sorted(_REGISTRY))
    return _REGISTRY[kind]


def _jsonable(value: Any) -> Any:
    """Numpy scalars as Python ones, so class labels and params go into JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


class Head(ABC):
    """A model trained on frozen embeddings for one task.

    Args:
        task: ``regression``, ``classification`` or ``segmentation``.
        seed: seeds every random choice of the head, so training is repeatable.
        **params: the head's hyperparameters (see each head's :attr:`defaults`); unknown
            names fail, naming the ones allowed.
    """

    kind: ClassVar[str]
    """Registry name, e.g. ``"linear"``."""
    tasks: ClassVar[tuple[str, ...]]
    """The tasks this head can learn."""
    input_mode: ClassVar[str]
    """``"vector"`` (one embedding per sample) or ``"grid"`` (``(dim, h, w)`` per sample)."""
    weights_file: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, task: str, *, seed: int = 0, **params: Any) -> None:
        if task not in self.tasks:
            raise SpecError("task", task, allowed=self.tasks,
                            reason=f"head {self.kind!r} does not learn it")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise SpecError(f"{self.kind}.params", unknown[0], allowed=sorted(self.defaults))
        self.task = task
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.classes: list[Any] | None = None
        """Class labels (classification, segmentation), in the order of the model's outputs."""
        self.input_dim: int | None = None
        self.info: dict[str, Any] = {}
        """Provenance saved with the head: embedder, labels, split, metrics..."""
        self._configure()

    # -- hooks -------------------------------------------------------------------------------

    def _configure(self) -> None:  # noqa: B027  (optional hook)
        """Build what the head needs from :attr:`params` (called by ``__init__``)."""

    @abstractmethod
    def _save_weights(self, path: Path) -> None:
        """Write the fitted model to ``path`` (:attr:`weights_file` in the head folder)."""

    @abstractmethod
    def _load_weights(self, path: Path) -> None:
        """Read what :meth:`_save_weights` wrote."""

    # -- shared ------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return self.input_dim is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise SpecError("head", self.kind, reason="not fitted: call fit() or load() first")

    def _check_dim(self, dim: int) -> None:
        if self.input_dim is not None and dim != self.input_dim:
            raise SpecError("embedding dim", dim, allowed=[self.input_dim],
                            reason=f"the head was trained on {self.input_dim}-d embeddings")

    def _encode(self, y: np.ndarray) -> np.ndarray:
        """Class labels -> indices into :attr:`classes` (set on first call, from ``y``)."""
        if self.classes is None:
            self.classes = [_jsonable(c) for c in np.unique(y)]
            if len(self.classes) < 2:
                raise SpecError("labels", self.classes, allowed="at least two classes",
                                reason="classification needs two or more classes to learn")
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[_jsonable(v)] for v in np.ravel(y)], dtype=np.int64).reshape(
            np.shape(y)
        )

    def _decode(self, index: np.ndarray) -> np.ndarray:
        """Indices into :attr:`classes` -> class labels."""
        assert self.classes is not None
        decoded: np.ndarray = np.asarray(self.classes)[index]
        return decoded

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this head, as JSON (written to ``config.json``)."""
        return {
            "format": HEAD_FORMAT,
            "kind": self.kind,
            "task": self.task,
            "seed": self.seed,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "classes": self.classes,
            "input_dim": self.input_dim,
            "input_mode": self.input_mode,
            "weights_file": self.weights_file,
            "eoembed_version": __version__,
            **self.info,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and the weights file to ``directory`` (created if needed).

        Both files are written under temporary names and renamed, so a folder never holds a
        config that does not match its weights.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / self.weights_file
        tmp = directory / f".tmp-{self.weights_file}"
        self._save_weights(tmp)
        os.replace(tmp, weights)
        config_tmp = directory / f".tmp-{CONFIG_FILE}"
        config_tmp.write_text(json.dumps(self.config(), indent=2, default=str), encoding="utf-8")
        os.replace(config_tmp, directory / CONFIG_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild a head saved with :meth:`save` (any registered kind when called on Head).

        Raises:
            HeadNotFoundError: no ``config.json`` or weights file in ``directory``.
            CorruptFileError: a config or weights file that is not valid (empty, truncated).
            SpecError: a config of another kind than ``cls``, or of a newer format.
            UnsafeWeightsError: scikit-learn weights holding types that are not trusted.
        """
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise HeadNotFoundError(
                f"{directory} holds no eoembed head ({CONFIG_FILE} is missing); give a folder "
                "written by eoembed train"
            )
        config = _read_config(path)
        if int(config.get("format", 0)) > HEAD_FORMAT:
            raise SpecError("format", config.get("format"), allowed=[HEAD_FORMAT],
                            reason="written by a newer eoembed")
        target = head_class(str(config.get("kind")))
        if not issubclass(target, cls):
            raise SpecError("kind", config.get("kind"), reason=f"not a {cls.__name__}")
        try:
            head = target(config["task"], seed=config.get("seed", 0), **config.get("params", {}))
        except (KeyError, TypeError) as exc:
            raise CorruptFileError(f"{path} is not a head config ({type(exc).__name__}: {exc})"
                                   ) from None
        head.classes = config.get("classes")
        head.input_dim = config.get("input_dim")
        known = set(head.config())
        head.info = {k: v for k, v in config.items() if k not in known}
        weights = directory / target.weights_file
        if not weights.is_file():
            raise HeadNotFoundError(f"{weights} is missing")
        try:
            head._load_weights(weights)
        except EoembedError:
            raise
        except Exception as exc:  # noqa: BLE001  (any reader failure means an unreadable file)
            raise CorruptFileError(
                f"{weights} is not a readable {target.__name__} weights file (empty or "
                f"truncated?): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        return head

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(task={self.task!r}, {state}, params={self.params})"


class TabularHead(Head):
    """A head on one embedding vector per sample: ``X`` is ``(n, dim)``."""

    input_mode: ClassVar[str] = "vector"

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit on float32 ``x`` and targets (float regression values, or class indices)."""

    @abstractmethod
    def _predict(self, x: np.ndarray) -> np.ndarray:
        """Predict float values (regression) or class indices (classification)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        """Learn ``y`` from embeddings ``x`` ``(n, dim)``."""
        x = self._matrix(x)
        y = np.asarray(y)
        if len(y) != len(x):
            raise SpecError("labels", len(y), allowed=[len(x)], reason="one label per embedding")
        if len(x) < 2:
            raise SpecError("samples", len(x), allowed="at least 2")
        self.input_dim = None
        self.classes = None
        target = self._encode(y) if self.task == "classification" else y.astype(np.float64)
        self._fit(x, target)
        self.input_dim = int(x.shape[1])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted values (regression) or class labels (classification) for ``x``."""
        self._check_fitted()
        x = self._matrix(x)
        if len(x) == 0:
            return np.empty(0, dtype=np.float64 if self.task == "regression" else object)
        out = self._predict(x)
        return self._decode(out) if self.task == "classification" else out.astype(np.float64)

    def _matrix(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise SpecError("embeddings", f"shape {x.shape}", allowed="(n, dim) vectors")
        self._check_dim(int(x.shape[1]))
        if not np.isfinite(x).all():
            raise SpecError("embeddings", "NaN or inf values",
                            reason="drop rows with missing embeddings first")
        return x


class GridHead(Head):
    """A head on patch grids: each sample is ``(dim, h, w)`` with an ``(h*f, w*f)`` label map.

    ``f`` (:attr:`upsample`) is how many label pixels one embedding cell spans per side; it is
    fixed at fit time from the data and saved, so predictions come out at label resolution.
    """

    input_mode: ClassVar[str] = "grid"
    ignore_index: ClassVar[int] = -1
    """Label value of pixels without a label (nodata, outside the label raster)."""

    @property
    def upsample(self) -> int:
        """Label pixels per embedding cell, per side."""
        return int(self.params.get("upsample") or 1)

    @abstractmethod
    def _fit(self, grids: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
        """Fit on float32 grids and int64 label maps (class indices; -1 = no label)."""

    @abstractmethod
    def _predict(self, grids: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Class-index maps ``(h*f, w*f)``, one per grid."""

    def fit(self, grids: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> Self:
        """Learn label maps from grids (``labels[i]`` is ``upsample`` times ``grids[i]``)."""
        grids = [self._grid(g) for g in grids]
        if len(labels) != len(grids) or not grids:
            raise SpecError("labels", len(labels), allowed=[len(grids)],
                            reason="one label map per grid, and at least one")
        f = self.upsample
        valid = np.concatenate([np.ravel(lab)[np.ravel(lab) != self.ignore_index]
                                for lab in labels])
        self.classes = None
        self.input_dim = None
        self._encode(valid)
        encoded = []
        for grid, lab in zip(grids, labels, strict=True):
            lab = np.asarray(lab)
            if lab.shape != (grid.shape[1] * f, grid.shape[2] * f):
                raise SpecError("label map", f"shape {lab.shape}",
                                allowed=[(grid.shape[1] * f, grid.shape[2] * f)],
                                reason=f"{f} label pixels per embedding cell")
            index = np.full(lab.shape, self.ignore_index, dtype=np.int64)
            mask = lab != self.ignore_index
            index[mask] = self._encode(lab[mask])
            encoded.append(index)
        self._fit(grids, encoded)
        self.input_dim = int(grids[0].shape[0])
        return self

    def predict(self, grids: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Class-label maps at label resolution, one per grid."""
        self._check_fitted()
        return [self._decode(m) for m in self._predict([self._grid(g) for g in grids])]

    def _grid(self, grid: np.ndarray) -> np.ndarray:
        grid = np.nan_to_num(np.asarray(grid, dtype=np.float32))
        if grid.ndim != 3:
            raise SpecError("embeddings", f"shape {grid.shape}", allowed="(dim, h, w) grids")
        self._check_dim(int(grid.shape[0]))
        return grid


def load_head(directory: str | Path) -> Head:
    """The head saved in ``directory``, whatever its kind (see :meth:`Head.load`)."""
    return Head.load(directory)


def _read_config(path: Path) -> dict[str, Any]:
    """A head's ``config.json`` as a dict, or a CorruptFileError saying what is wrong."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path} is not a head config (empty or truncated?): {exc}"
                               ) from None
    if not isinstance(config, dict):
        raise CorruptFileError(f"{path} is not a head config (a {type(config).__name__}, not "
                               "a JSON object)")
    return config
