"""Every error eoembed raises on purpose.

One root, :class:`EoembedError`, so callers can catch everything of ours at once; each
user-facing error also subclasses the builtin it resembles (``ValueError`` for bad input,
``FileNotFoundError`` for missing weights, ...) so generic handlers keep working.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "CapabilityError",
    "ChecksumError",
    "ClusterUnavailableError",
    "CorruptExportError",
    "CorruptFileError",
    "DependencyNotFoundError",
    "EoembedError",
    "EoembedWarning",
    "ExportConflictError",
    "ExportLockedError",
    "ExportNotFoundError",
    "FormatLimitError",
    "HeadNotFoundError",
    "IncompleteExportWarning",
    "ModelArgumentError",
    "NoDataError",
    "OutputPathError",
    "ProductFileNotFoundError",
    "ProviderError",
    "ProviderUnavailableError",
    "RegionTooLargeError",
    "RemoteTaskError",
    "SpecError",
    "UnknownFormatError",
    "UnknownModelError",
    "UnknownProviderError",
    "UnsafeExportPathError",
    "UnsafeWeightsError",
    "WeightsNotFoundError",
]


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``known`` closest to ``name`` (difflib, ignoring case), best first."""
    import difflib

    by_folded: dict[str, str] = {}
    for k in known:
        by_folded.setdefault(str(k).casefold(), str(k))
    matches = difflib.get_close_matches(str(name).casefold(), list(by_folded), n=n, cutoff=0.6)
    return [by_folded[m] for m in matches]


def did_you_mean(names: Iterable[str]) -> str:
    """``"did you mean 'a' or 'b'?"`` for the names given, or ``""`` for none."""
    shown = [repr(n) for n in names]
    if not shown:
        return ""
    alternatives = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"did you mean {alternatives}?"


def _allowed_text(allowed: Iterable[Any] | str | None) -> str:
    if allowed is None:
        return ""
    if isinstance(allowed, str):
        return f"; allowed: {allowed}"
    return "; allowed: " + ", ".join(repr(a) for a in allowed)


def _suggested(close: Iterable[str], known: list[str]) -> str:
    """``"; did you mean 'x'? (known: ...)"``, or ``"; allowed: ..."`` with nothing close."""
    close = tuple(close)
    if not close:
        return _allowed_text(known)
    return f"; {did_you_mean(close)} (known: {', '.join(map(repr, known))})"


class EoembedError(Exception):
    """Root of every error eoembed raises on purpose."""


class SpecError(EoembedError, ValueError):
    """A spec field holds a value eoembed cannot use; raised before any I/O.

    Args:
        field: dotted name of the offending field, e.g. ``"BBox.minlat"``.
        value: the value that was given.
        allowed: what would have been accepted (values, or a sentence).
        reason: optional extra explanation.
    """

    def __init__(
        self,
        field: str,
        value: Any,
        allowed: Iterable[Any] | str | None = None,
        reason: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        detail = f": {reason}" if reason else ""
        super().__init__(f"invalid {field}={value!r}{detail}{_allowed_text(allowed)}")


class RegionTooLargeError(SpecError):
    """A region whose pixel grid exceeds the pixel budget; raised before any pixel is read.

    Reading it would allocate ``bands x pixels`` floats at once (a 10 x 10 degree box at 10 m
    is 12 billion pixels), so eoembed refuses it up front and says how to proceed.
    """


class UnknownProviderError(EoembedError, ValueError):
    """A provider name that is not registered; ``close`` holds the nearest known names."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        known = sorted(known)
        self.close = tuple(close_names(name, known))
        super().__init__(f"unknown provider {name!r}{_suggested(self.close, known)}")


class UnknownModelError(EoembedError, ValueError):
    """A model id that is not registered; ``close`` holds the nearest known names.

    With close names the message suggests them and points to ``eoembed models`` instead of
    listing every id (there are dozens); with none it lists them.
    """

    def __init__(
        self, name: str, known: Iterable[str] | str, close: Iterable[str] = ()
    ) -> None:
        self.name = name
        self.close = tuple(close)
        if isinstance(known, str):
            hint = f"; {did_you_mean(self.close)}" if self.close else ""
            super().__init__(f"unknown model {name!r}{hint}{_allowed_text(known)}")
            return
        known = sorted(known)
        if self.close:
            super().__init__(
                f"unknown model {name!r}; {did_you_mean(self.close)} (`eoembed models` or "
                "eoembed.list_models() lists them all)"
            )
        else:
            super().__init__(f"unknown model {name!r}{_allowed_text(known)}")


class UnknownFormatError(EoembedError, ValueError):
    """An export format that is not registered; ``close`` holds the nearest known names."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        known = sorted(known)
        self.close = tuple(close_names(name, known))
        super().__init__(f"unknown export format {name!r}{_suggested(self.close, known)}")


class ExportConflictError(EoembedError, FileExistsError):
    """An export folder already holds results of a different request.

    Resuming would mix stale and fresh results, so eoembed refuses; the message names what
    changed and how to proceed (a new ``out``, or ``overwrite=True``).

    Args:
        message: the explanation.
        fields: the request fields that differ (``temporal.start``, ``format``, ...).
    """

    def __init__(self, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.fields: tuple[str, ...] = tuple(fields)


class ExportLockedError(EoembedError, BlockingIOError):
    """Another export is writing the same folder (it holds the folder's lock)."""


class ExportNotFoundError(EoembedError, FileNotFoundError):
    """A folder holds no eoembed export (no ``export.json``)."""


class CorruptExportError(EoembedError, OSError):
    """An export folder's files are damaged or edited.

    An unreadable ``export.json``, or data files missing or truncated; the message says how
    to repair it.
    """


class UnsafeExportPathError(CorruptExportError, PermissionError):
    """A path read from an export folder's files leads outside the folder; never followed."""


class ModelArgumentError(EoembedError, TypeError):
    """A model argument that the model does not take, or of the wrong type."""


class CapabilityError(EoembedError, ValueError):
    """A request a model or provider cannot serve (missing band, unsupported output...)."""


class FormatLimitError(CapabilityError):
    """An export format cannot hold this output (too many dimensions for its columns...)."""


class ProviderError(EoembedError):
    """A provider failed to deliver pixels."""


class NoDataError(ProviderError, LookupError):
    """No scene covers the region and time window asked for."""


class ProviderUnavailableError(ProviderError, ConnectionError):
    """A provider's service (a STAC API, ...) cannot be reached or keeps failing after retries.

    A ``ConnectionError`` too, so callers that retry later on outages catch it unchanged.
    """


class ProductFileNotFoundError(ProviderError, FileNotFoundError):
    """A published product's file (index, registry, map) is not where it was said to be."""


class ClusterUnavailableError(EoembedError, ConnectionError):
    """The Dask scheduler cannot be reached or went away; finished work is recorded."""


class RemoteTaskError(EoembedError, RuntimeError):
    """A region failed on a cluster worker; the message carries the worker's error."""


class DependencyNotFoundError(EoembedError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f'{module!r} is not installed; install it with: pip install "eoembed[{extra}]"'
        )


class WeightsNotFoundError(EoembedError, FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable; the message says how to get them."""


class CorruptFileError(EoembedError, OSError):
    """A file eoembed reads (weights, a head, a job file) is empty, truncated or not its format."""


class OutputPathError(EoembedError, OSError):
    """An output path eoembed cannot write: empty, under a file, in a missing or read-only folder.

    Checked before any work, so a long run never fails at its last step.
    """


class HeadNotFoundError(EoembedError, FileNotFoundError):
    """A folder that holds no eoembed head (its ``config.json`` or weights file is missing)."""


class ChecksumError(EoembedError, OSError):
    """A weights file does not match its pinned checksum."""


class UnsafeWeightsError(EoembedError, ValueError):
    """A checkpoint that holds more than tensors (pickled code); it is never executed."""


class EoembedWarning(UserWarning):
    """Root of every warning eoembed issues on purpose."""


class IncompleteExportWarning(EoembedWarning):
    """``load_export`` returns fewer results than the export asked for.

    Failed regions, or a run that did not finish; the message gives the counts.
    """
