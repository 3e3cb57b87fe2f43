"""Model arguments: explicit, typed, validated; never environment variables.

Each embedder declares a frozen dataclass of options; unknown names and wrong types are
errors that list what the model takes, and the parsed options are recorded in the metadata.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from eoembed.errors import ModelArgumentError

__all__ = ["EmbedderOptions"]

O = TypeVar("O", bound="EmbedderOptions")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, __import__("types").UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple | list)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return isinstance(value, origin or hint)


@dataclasses.dataclass(frozen=True)
class EmbedderOptions:
    """Base for per-model options; subclasses add typed fields with defaults."""

    ADDED_LATER: typing.ClassVar[frozenset[str]] = frozenset()
    """Options added after exports were first fingerprinted, whose defaults change nothing."""

    @classmethod
    def parse(cls, model_id: str, kwargs: Mapping[str, Any]) -> typing.Self:
        """Build options from keyword arguments, rejecting unknown names and wrong types."""
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            allowed = ", ".join(sorted(fields)) or "none"
            raise ModelArgumentError(
                f"model {model_id!r} takes no argument {unknown[0]!r}; its arguments: {allowed}"
            )
        for name, value in kwargs.items():
            if not _matches(value, hints[name]):
                raise ModelArgumentError(
                    f"model {model_id!r} argument {name}={value!r} must be {hints[name]}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ModelArgumentError(
                    f"model {model_id!r} argument {name}={value!r} must be a finite number"
                )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        options = cls(**values)
        options.validate(model_id)
        return options

    def validate(self, model_id: str) -> None:
        """Check value ranges; raise ModelArgumentError naming the argument."""

    def check_input(self, model_id: str, height: int, width: int) -> None:
        """Refuse an input grid of ``height`` x ``width`` pixels these options cannot embed.

        Called for every region when the request is planned, before any I/O, and again on the
        pixels themselves; the default takes any size.
        """

    def read_bands(self) -> tuple[str, ...]:
        """Band names these options ask to read instead of the card's; empty: the card's.

        Only models whose card's ``band_rule`` is ``"any"`` offer such an option.
        """
        return ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def request_dict(self) -> dict[str, Any]:
        """The options as they enter export fingerprints.

        Fields in :attr:`ADDED_LATER` are left out while they hold their default (which gives
        the numbers earlier versions gave), so adding an option does not mark every earlier
        export stale.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in self.to_dict().items()
                if not (k in self.ADDED_LATER and getattr(self, k) == defaults[k])}

