"""What every spec shares: JSON round-trip and a stable fingerprint.

Specs are frozen dataclasses, so they are hashable and can key caches; ``to_dict`` gives
plain JSON types tagged with the spec's type name, and ``fingerprint`` hashes that canonical
JSON, so two equal specs fingerprint the same in any process on any machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar, Self, TypeVar

from eoembed.errors import SpecError

S = TypeVar("S", bound="Spec")

_SPEC_TYPES: dict[str, type[Spec]] = {}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that gets hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(obj: Any) -> str:
    """Hex sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


class Spec:
    """Mixin for frozen dataclass specs: ``to_dict``/``from_dict`` and ``fingerprint``."""

    type_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        _SPEC_TYPES[cls.__name__] = cls

    def _fields_to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, tagged with ``"type"``."""
        return {"type": self.type_name, **self._fields_to_json()}

    def canonical_dict(self) -> dict[str, Any]:
        """The form that is hashed (:attr:`fingerprint`, export ids, cache keys).

        The same as :meth:`to_dict` unless a spec renames what it records: hashes must never
        change, or earlier exports and caches would no longer be found.
        """
        return self.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a spec from :meth:`to_dict` output (validation runs again)."""
        data = dict(data)
        tag = data.pop("type", cls.type_name)
        target = _SPEC_TYPES.get(tag)
        if target is None or not issubclass(target, cls):
            raise SpecError(f"{cls.__name__}.type", tag, allowed=[cls.type_name])
        names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"{target.__name__} field", unknown[0], allowed=sorted(names))
        return target(**data)

    @property
    def fingerprint(self) -> str:
        """Stable sha256 hex of the canonical JSON form (:meth:`canonical_dict`)."""
        return sha256_hex(self.canonical_dict())


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild any spec from its tagged dict."""
    tag = data.get("type")
    target = _SPEC_TYPES.get(str(tag))
    if target is None:
        raise SpecError("type", tag, allowed=sorted(_SPEC_TYPES))
    return target.from_dict(data)


def check_finite(field: str, value: Any) -> float:
    """Return ``value`` as a finite float or raise a SpecError naming ``field``."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, value, allowed="a finite number")
    if not math.isfinite(value):
        raise SpecError(field, value, allowed="a finite number")
    return float(value)


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a SpecError."""
    if value not in allowed:
        raise SpecError(field, value, allowed=allowed)
    return str(value)
