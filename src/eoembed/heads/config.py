"""Training and comparison jobs as data: YAML files (or dicts) validated into ``train``/``compare``.

Same rules as export jobs (:mod:`eoembed.pipeline.config`, whose strict sections and error
messages this reuses): unknown keys fail with a suggestion, values are checked before any file
is read, and problems are one-line :class:`~eoembed.errors.SpecError` naming the key path.
Relative ``embeddings``, ``labels`` and ``out`` paths are relative to the YAML file
(:func:`eoembed.pipeline.config.job_paths`).

Example ``train.yaml`` (keys after ``out`` are optional and show their defaults)::

    embeddings: exports/sites     # an export folder
    labels: data/sites.csv        # CSV lon/lat, GeoJSON, GeoParquet... or a label raster
    value: land_fraction          # the label column (vector labels)
    task: regression              # regression | classification | segmentation
    out: heads/land
    model: null                   # which model of a multi-model export
    head: linear                  # linear | rf | gbm | knn | mlp | segmentation
    params: {}                    # the head's hyperparameters, e.g. {alpha: 10}
    split: {method: random, test_size: 0.25, block_size_m: 1000, seed: 0}
                                  # method: random | blocks | none | column:NAME |
                                  #   raster:PATH | box:MINX,MINY,MAXX,MAXY[,CRS]
    label_crs: EPSG:4326          # CRS of a CSV's lon/lat columns
    min_valid: 0.0                # drop samples with less imagery (valid_fraction; > 0 always)
    plots: true
    quiet: false

A compare job has the same keys, except ``embeddings`` is a list (folders, or
``{path, model}``) and there is no ``model``.

>>> from eoembed.heads import train
>>> from eoembed.heads.config import TrainConfig
>>> result = train(**TrainConfig.from_yaml("train.yaml").to_kwargs())  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from eoembed.errors import DependencyNotFoundError, SpecError
from eoembed.heads.splits import check_method
from eoembed.pipeline.config import _Section, _spec_error, job_paths

__all__ = ["CompareConfig", "ExportRef", "SplitConfig", "TrainConfig", "merge_job", "read_yaml"]

Task = Literal["regression", "classification", "segmentation"]


class SplitConfig(_Section):
    """``{method, test_size, block_size_m, seed}``; a bare string sets the method.

    ``test_size: 0`` trains on everything (no held-out metrics), like ``method: none``.
    """

    method: str = "random"
    test_size: float = Field(default=0.25, ge=0, lt=1)
    block_size_m: float = Field(default=1000.0, gt=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _method_only(cls, data: Any) -> Any:
        return {"method": data} if isinstance(data, str) else data

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        return check_method(value)


class _Job(_Section):
    """What train and compare jobs share."""

    labels: Path
    value: str = "value"
    task: Task = "regression"
    head: str = "linear"
    params: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    label_crs: str = "EPSG:4326"
    min_valid: float = Field(default=0.0, ge=0, le=1)
    out: Path | None = None
    plots: bool = True
    quiet: bool = False

    @field_validator("head")
    @classmethod
    def _head(cls, value: str) -> str:
        from eoembed.heads.base import list_heads

        known = list_heads()
        if value not in known:
            raise SpecError("head", value, allowed=known)
        return value

    def _common(self) -> dict[str, Any]:
        return {
            "labels": self.labels, "value": self.value, "task": self.task, "head": self.head,
            "params": dict(self.params), "split": self.split.method,
            "test_size": self.split.test_size, "block_size_m": self.split.block_size_m,
            "seed": self.split.seed, "label_crs": self.label_crs,
            "min_valid": self.min_valid, "out": self.out,
            "plots": self.plots,
        }


class TrainConfig(_Job):
    """A training job: the arguments of :func:`eoembed.heads.train`, as validated data."""

    embeddings: Path
    model: str | None = None

    @model_validator(mode="after")
    def _needs_out(self) -> Self:
        if self.out is None:
            raise SpecError("out", None, allowed="a folder for the head",
                            reason="a trained head is saved there")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Validate a job given as a dict, with command-line ``overrides`` applied."""
        try:
            return cls.model_validate(merge_job(data, overrides or {}))
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @classmethod
    def from_yaml(cls, path: str | Path,
                  overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Read a job file (its relative paths are relative to it)."""
        data = job_paths(read_yaml(path), path, ("embeddings", "labels", "out"))
        return cls.from_dict(data, overrides)

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`eoembed.heads.train`."""
        return {"embeddings": self.embeddings, "model": self.model, **self._common()}


class ExportRef(_Section):
    """One input of a comparison: an export folder and, optionally, one of its models."""

    path: Path
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _path_only(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str | Path) else data


class CompareConfig(_Job):
    """A comparison job: the arguments of :func:`eoembed.heads.compare`."""

    embeddings: list[ExportRef] = Field(min_length=1)
    head: str = "rf"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None = None) -> CompareConfig:
        """Validate a job given as a dict, with command-line ``overrides`` applied."""
        try:
            return cls.model_validate(merge_job(data, overrides or {}))
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @classmethod
    def from_yaml(cls, path: str | Path,
                  overrides: Mapping[str, Any] | None = None) -> CompareConfig:
        """Read a job file (its relative paths are relative to it)."""
        data = job_paths(read_yaml(path), path, ("labels", "out"))
        base = Path(os.path.abspath(Path(path).expanduser())).parent
        items = data.get("embeddings")
        if isinstance(items, list):
            data["embeddings"] = [
                str(base / Path(item).expanduser()) if isinstance(item, str) else
                {**item, "path": str(base / Path(str(item["path"])).expanduser())}
                if isinstance(item, Mapping) and "path" in item else item
                for item in items
            ]
        return cls.from_dict(data, overrides)

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`eoembed.heads.compare`."""
        entries: list[Any] = [(e.path, e.model) if e.model else e.path for e in self.embeddings]
        return {"embeddings": entries, **self._common()}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML job file as a dict.

    Raises:
        SpecError: an unreadable file, invalid YAML, or YAML that is not a mapping.
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - the export extra brings PyYAML
        raise DependencyNotFoundError("yaml", "export") from None
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError("config", str(path), allowed="a readable YAML job file",
                        reason=exc.strerror or type(exc).__name__) from None
    except UnicodeDecodeError as exc:
        raise SpecError("config", str(path), allowed="a UTF-8 YAML job file",
                        reason=f"byte {exc.object[exc.start]:#04x} at offset {exc.start} is "
                        "not UTF-8") from None
    except yaml.YAMLError as exc:
        raise SpecError("config", str(path), allowed="a YAML mapping of job keys",
                        reason=str(getattr(exc, "problem", None) or "not YAML")) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError("config", str(path), allowed="a YAML mapping of job keys",
                        reason=f"the file holds a {type(data).__name__}")
    return dict(data)


def merge_job(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with command-line ``overrides``: ``split`` and ``params`` merge key by key."""
    merged = dict(data)
    for key, value in overrides.items():
        if key in ("split", "params") and isinstance(value, Mapping):
            base = merged.get(key)
            base = {"method": base} if key == "split" and isinstance(base, str) else base
            merged[key] = {**(base if isinstance(base, Mapping) else {}), **value}
        else:
            merged[key] = value
    return merged
