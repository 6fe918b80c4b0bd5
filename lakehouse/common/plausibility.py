"""Plausible values, as data: bounds a value must keep to be believed, set in each case's settings.

A value can have the right type and still be impossible: an invoice of 1e14, a date in 1800, a
usage day before the customer signed up. Each case's settings carry a `plausibility` section
(`Plausibility`), read by its schemas, with these defaults:

* ids: at most `max_id_length` characters (128), and the rest of the id rule (lakehouse.common.ids);
* amounts and units (the columns a schema marks as `quantity`): below `max_amount` (1e9);
* dates: not before `earliest_date` (1900-01-01) and, for the dates of facts (activity, tickets,
  invoices, sales, payments, labels), not before the calendar's start minus `history` (20 years);
  dates that may lie long before the data (a signup, an opening, a launch) keep only the floor;
* physical limits a schema declares for a column (`Column.limit`: session minutes at most 1,440 a day
  per seat);
* per column, `columns: {"table.column": {min: ..., max: ..., per: ...}}` replaces the schema's limit
  (a number for numbers, a date for dates), e.g. `{"usage_daily.logins": {max: 5000}}`.

Rules across tables (a fact not before the entity it belongs to, a label not before its ticket) are
`not_before` checks (lakehouse.common.table_rules) the case's loader runs once every table is valid;
`facts_before_entity: accept` takes a source whose time line is known to be incoherent as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import Field, field_validator

from lakehouse.common.durations import back, parse_duration
from lakehouse.common.section import Section

SECTION = "plausibility"


class Bound(Section):
    """The plausible range of one column, both ends included (a number for numbers, a date for dates).
    With `per`, the bounds are per unit of that column of the row's parent (minutes a day per seat)."""

    min: float | date | None = None
    max: float | date | None = None
    per: str | None = None


class Plausibility(Section):
    """What a value must keep to be believed (see the module docstring)."""

    max_id_length: int = Field(128, ge=1, le=1024)
    max_amount: float = Field(1e9, gt=0)
    earliest_date: date = date(1900, 1, 1)
    history: str = "20y"  # dates of facts are not before calendar.start minus this
    columns: dict[str, Bound] = Field(default_factory=dict)  # "table.column": its own bounds
    # Facts dated before the entity they belong to (usage before signup, a label before its ticket): refused,
    # unless a source's time line is known to be incoherent and is taken as it is.
    facts_before_entity: Literal["refuse", "accept"] = "refuse"

    @field_validator("history")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("columns")
    @classmethod
    def _dotted(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        for key in value:
            if key.count(".") != 1 or not all(key.split(".")):
                raise ValueError(f"{key!r}: name a column as `table.column`, e.g. `invoices.amount`")
        return value


@dataclass(frozen=True)
class Limits:
    """A case's plausibility section with what it is measured against (the calendar) and where it is set."""

    plausibility: Plausibility = Plausibility()
    calendar_start: date | None = None
    case: str | None = None

    @classmethod
    def of(cls, settings) -> Limits:
        """The limits of a case's settings object (its `plausibility` section, or the defaults)."""
        return cls(getattr(settings, SECTION, None) or Plausibility(), settings.calendar.start, settings.case)

    def where(self, dotted: str) -> str:
        """How a user moves a limit: the settings key (and its environment variable for plain fields)."""
        key = f"{SECTION}.{dotted}"
        if self.case is None:
            return f"`{key}` in the case's settings"
        if "." in dotted:
            return f"`{self.case}.settings.{key}` in the sources file"
        return f"`{self.case}.settings.{key}` (or LAKEHOUSE_{self.case.upper()}_{SECTION.upper()}__{dotted.upper()})"

    @property
    def earliest_fact(self) -> date:
        """The first plausible date of a fact: the floor, or the calendar's start minus `history` when later."""
        floor = self.plausibility.earliest_date
        return max(floor, back(self.calendar_start, self.plausibility.history)) if self.calendar_start else floor

    def bound(self, table: str, column) -> Bound | None:
        """The bounds of a column: the settings' own, else the schema's physical limit (`Column.limit`)."""
        return self.plausibility.columns.get(f"{table}.{column.name}") or column.limit

    def unknown_columns(self, schemas) -> list[str]:
        """`columns` keys that name no column of these schemas (a typo would otherwise be ignored)."""
        known = {f"{s.name}.{c.name}" for s in schemas for c in s.columns}
        return sorted(set(self.plausibility.columns) - known)


DEFAULT_LIMITS = Limits()
