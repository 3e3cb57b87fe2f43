"""When: a half-open date interval ``[start, end)``, by year or by range."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

from eoembed.errors import SpecError
from eoembed.specs._base import Spec

__all__ = ["DateLike", "TemporalSpec"]

DateLike: TypeAlias = str | dt.date | dt.datetime
"""``"2021"``, ``"2021-06"``, ``"2021-06-15"``, a ``date`` or a midnight ``datetime``."""

MIN_YEAR, MAX_YEAR = 1950, 2200
_PATTERN = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_date(field: str, value: Any) -> dt.date:
    """Parse a :data:`DateLike` to the first day it denotes; partial dates start the period."""
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0) or (value.tzinfo and value.utcoffset()):
            raise SpecError(field, value.isoformat(), allowed="a date or a UTC midnight datetime")
        value = value.date()
    if isinstance(value, dt.date):
        date = value
    elif isinstance(value, str):
        match = _PATTERN.match(value.strip())
        if not match:
            raise SpecError(field, value, allowed="'YYYY', 'YYYY-MM' or 'YYYY-MM-DD'")
        year, month, day = (int(g) if g else 1 for g in match.groups())
        try:
            date = dt.date(year, month, day)
        except ValueError as exc:
            raise SpecError(field, value, allowed="a real calendar date", reason=str(exc)) from None
    else:
        raise SpecError(field, value, allowed="a date, or a string 'YYYY[-MM[-DD]]'")
    if not MIN_YEAR <= date.year <= MAX_YEAR:
        raise SpecError(field, str(value), allowed=f"years {MIN_YEAR}..{MAX_YEAR}")
    return date


@dataclass(frozen=True)
class TemporalSpec(Spec):
    """A half-open interval of days ``[start, end)``.

    ``TemporalSpec.year(2021)`` is ``[2021-01-01, 2022-01-01)``;
    ``TemporalSpec.range("2021-06", "2021-08")`` is June and July.
    """

    start: str
    """First day included, ISO ``YYYY-MM-DD``."""
    end: str
    """First day excluded, ISO ``YYYY-MM-DD``."""

    def __post_init__(self) -> None:
        start = parse_date("TemporalSpec.start", self.start)
        end = parse_date("TemporalSpec.end", self.end)
        if end <= start:
            raise SpecError(
                "TemporalSpec.end", end.isoformat(),
                allowed=f"a date after start={start.isoformat()}",
                reason="the interval is half-open [start, end), so it would be empty",
            )
        object.__setattr__(self, "start", start.isoformat())
        object.__setattr__(self, "end", end.isoformat())

    @classmethod
    def year(cls, year: int) -> TemporalSpec:
        """The calendar year ``[year-01-01, year+1-01-01)``."""
        if isinstance(year, bool) or not isinstance(year, int):
            raise SpecError("TemporalSpec.year", year, allowed="an integer year")
        if not MIN_YEAR <= year < MAX_YEAR:
            raise SpecError("TemporalSpec.year", year, allowed=f"{MIN_YEAR}..{MAX_YEAR - 1}")
        return cls(f"{year:04d}-01-01", f"{year + 1:04d}-01-01")

    @classmethod
    def range(cls, start: DateLike, end: DateLike) -> TemporalSpec:
        """The half-open range ``[start, end)``; partial dates denote their first day."""
        return cls(
            parse_date("TemporalSpec.start", start).isoformat(),
            parse_date("TemporalSpec.end", end).isoformat(),
        )

    @property
    def start_date(self) -> dt.date:
        """``start`` as a date."""
        return dt.date.fromisoformat(self.start)

    @property
    def end_date(self) -> dt.date:
        """``end`` as a date (excluded)."""
        return dt.date.fromisoformat(self.end)

    def contains(self, start: dt.date, end: dt.date | None = None) -> bool:
        """Whether the day ``start`` (or all of ``[start, end)``) lies inside this interval."""
        if end is None:
            return self.start_date <= start < self.end_date
        return self.start_date <= start and end <= self.end_date

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"
