"""Metrics in numpy, defined as scikit-learn defines them (the tests check they agree).

Regression: R2, RMSE, MAE. Classification: accuracy, macro F1 (over every class that occurs
in the truth or the prediction), per-class precision, recall, F1 and IoU, and mIoU.
Segmentation: per-class IoU, mIoU (mean over the classes that occur in the truth or the
prediction) and pixel accuracy, with the same per-class precision, recall and F1. Every function returns plain JSON
types, so a result goes straight into ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "PRIMARY",
    "classification_metrics",
    "confusion",
    "regression_metrics",
    "score",
    "segmentation_metrics",
]

PRIMARY = {"regression": "r2", "classification": "macro_f1", "segmentation": "miou"}
"""The metric each task's models are ranked by (higher is better)."""


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``r2`` (1 - SSE/SST; 0 for a constant truth, like scikit-learn), ``rmse``, ``mae``."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    err = t - p
    sse = float(np.sum(err**2))
    sst = float(np.sum((t - t.mean()) ** 2)) if len(t) else 0.0
    if sst > 0:
        r2 = 1.0 - sse / sst
    else:
        r2 = 1.0 if sse == 0 else 0.0
    return {
        "r2": r2,
        "rmse": float(np.sqrt(np.mean(err**2))) if len(t) else float("nan"),
        "mae": float(np.mean(np.abs(err))) if len(t) else float("nan"),
        "n": len(t),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray,
              labels: Sequence[Any]) -> np.ndarray:
    """Counts ``[i, j]`` of truth ``labels[i]`` predicted as ``labels[j]``."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    t = np.array([index[v] for v in np.asarray(y_true).ravel().tolist()], dtype=np.int64)
    p = np.array([index[v] for v in np.asarray(y_pred).ravel().tolist()], dtype=np.int64)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _labels(y_true: np.ndarray, y_pred: np.ndarray) -> list[Any]:
    seen = set(np.asarray(y_true).ravel().tolist()) | set(np.asarray(y_pred).ravel().tolist())
    return sorted(seen)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, 0 where ``b`` is 0 (scikit-learn's ``zero_division=0``)."""
    out: np.ndarray = np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)
    return out


def _per_class(cm: np.ndarray, labels: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and IoU of every class, from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    table = {
        "per_class_precision": _ratio(tp, predicted),
        "per_class_recall": _ratio(tp, actual),
        "per_class_f1": _ratio(2 * tp, predicted + actual),
        "per_class_iou": _ratio(tp, predicted + actual - tp),
    }
    return {name: {str(c): float(v) for c, v in zip(labels, values, strict=True)}
            for name, values in table.items()}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """``accuracy``, ``macro_f1``, ``miou`` and per-class scores, with the confusion matrix."""
    labels = _labels(y_true, y_pred)
    cm = confusion(y_true, y_pred, labels)
    tp = np.diag(cm).astype(np.float64)
    per_class = _per_class(cm, labels)
    f1 = np.array(list(per_class["per_class_f1"].values()))
    iou = np.array(list(per_class["per_class_iou"].values()))
    total = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1.mean()) if len(f1) else float("nan"),
        "miou": float(iou.mean()) if len(iou) else float("nan"),
        **per_class,
        "labels": labels,
        "confusion": cm.tolist(),
        "n": total,
    }


def segmentation_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """``per_class_iou``, ``miou`` and ``pixel_accuracy`` over labelled pixels.

    Args:
        y_true: the labels of every labelled pixel (pixels without a label left out).
        y_pred: the predictions at the same pixels.
    """
    labels = _labels(y_true, y_pred)
    cm = confusion(y_true, y_pred, labels)
    tp = np.diag(cm).astype(np.float64)
    per_class = _per_class(cm, labels)
    iou = np.array(list(per_class["per_class_iou"].values()))
    total = int(cm.sum())
    return {
        "miou": float(iou.mean()) if len(iou) else float("nan"),
        **per_class,
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "labels": labels,
        "confusion": cm.tolist(),
        "n": total,
    }


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """The metrics of ``task``."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    return segmentation_metrics(y_true, y_pred)
