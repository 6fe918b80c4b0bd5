"""Production settings of a case: one typed object per case, apart from any generator.

A case's settings (calendar, frequency, horizons, evaluation windows, thresholds, unit
economics, vocabularies) come, from the highest priority down, from:

1. keyword arguments (tests, benchmarks);
2. environment variables `LAKEHOUSE_<CASE>_<FIELD>`, nested fields joined by `__`
   (`LAKEHOUSE_FRAUD_CALENDAR__START=2020-01-01`);
3. the `settings:` section of the case in the sources file;
4. the defaults, which are the seed's figures.

Production code reads them one way: `XSettings.load(sources_path)`, which the `sources` resource
calls with its own path (`sources.settings(XSettings)`), and which the code location calls with
the same path when it loads (partitions and schedule time zones). Both agree by construction.

The synthetic worlds never read these objects and production code never reads the
worlds' configuration: a demo is a source like any other, described by its own settings.
"""

from __future__ import annotations

import difflib
import os
from contextvars import ContextVar
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lakehouse.common.durations import back, forward, parse_duration, shift  # noqa: F401  (the settings' durations)
from lakehouse.common.ids import shown
from lakehouse.common.sources import SOURCES_ENV, Section, load_sources, validation_problems


class Calendar(Section):
    """The data's calendar: time partitions start at `start` (in `timezone`). Each case subclasses it with
    its own defaults, so a user who sets one field keeps the case's default for the other."""

    start: date
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)


def known_zone(name: str) -> str:
    """`name` if it is an IANA time zone this machine knows; else an error listing close matches."""
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "use an IANA name such as UTC or Europe/Paris"
        raise ValueError(f"unknown time zone {shown(name)}: {hint}") from None


class SettingsError(ValueError):
    """A case's settings are wrong: the message names the sources file (or environment variable), the case,
    the key, and what is allowed there."""


class Economics(Section):
    """Money in a case's reports is in this currency; `defaults` says whether anyone set the figures."""

    currency: str = "EUR"


class DateRange(Section):
    """Both ends included."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


Period = DateRange | str  # explicit dates, or a duration counted back from the end of the data


class EvaluationWindows(Section):
    """Train / validation / test periods, as dates or as durations back from the last day of data.

    Durations stack from the end: test is the last `test`, validation the `validation`
    before it, and training everything before that (after `warmup` at the start, and
    `gap` between periods, so that labels of one period never reach into the next).
    """

    test: Period
    validation: Period
    train: DateRange | None = None  # default: everything before validation
    warmup: str | None = None  # left out at the start of the data (features lack their history)
    gap: str | None = None

    @field_validator("test", "validation")
    @classmethod
    def _period(cls, value: Period) -> Period:
        if isinstance(value, str):
            parse_duration(value)
        return value

    @field_validator("warmup", "gap")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def resolve(self, first: date, last: date) -> dict[str, DateRange]:
        """Concrete train / validation / test ranges for data spanning first..last."""

        def before(day: date) -> date:  # the last day of the period that ends before `day`
            return (back(day, self.gap) if self.gap else day) - timedelta(days=1)

        test = (
            self.test
            if isinstance(self.test, DateRange)
            else DateRange.model_construct(start=back(last, self.test) + timedelta(days=1), end=last)
        )
        if isinstance(self.validation, DateRange):
            validation = self.validation
        else:
            end = before(test.start)
            validation = DateRange.model_construct(start=back(end, self.validation) + timedelta(days=1), end=end)
        start = forward(first, self.warmup) if self.warmup else first
        train = self.train or DateRange.model_construct(start=start, end=before(validation.start))
        windows = {"train": train, "validation": validation, "test": test}
        for name, window in windows.items():
            if window.end < window.start:
                raise ValueError(
                    f"evaluation window '{name}' is empty for data from {first} to {last}: shorten the other windows"
                )
        return windows


# The sources file `CaseSettings.load` reads; unset, a direct construction reads LAKEHOUSE_SOURCES.
_SOURCES_PATH: ContextVar[str | None] = ContextVar("sources_path")


def configured_sources_path() -> str | None:
    """The sources file the environment names (LAKEHOUSE_SOURCES), or None: every case on its generator."""
    return os.environ.get(SOURCES_ENV) or None


class SourcesFileSettings(PydanticBaseSettingsSource):
    """The `settings:` section of the case in the sources file (`CaseSettings.load`'s, else LAKEHOUSE_SOURCES)."""

    def __init__(self, settings_cls: type[BaseSettings], case: str):
        super().__init__(settings_cls)
        self.case = case

    def get_field_value(self, field, field_name):  # the whole section is returned by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _SOURCES_PATH.get(configured_sources_path())
        if not path:
            return {}
        source = load_sources(path).case(self.case)
        return dict(source.settings) if source else {}


class CaseSettings(BaseSettings):
    """Base of every case's settings object (see the module docstring for where values come from)."""

    case: ClassVar[str]
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid", frozen=True)

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(self._explained(exc)) from None

    @classmethod
    def _explained(cls, exc: ValidationError) -> str:
        """Where the wrong settings come from (the sources file, or environment variables) and what is wrong."""
        path = _SOURCES_PATH.get(configured_sources_path())
        prefix = cls.model_config["env_prefix"]
        environment = sorted(k for k in os.environ if k.startswith(prefix))
        origin = f"{path}: " if path else ""
        if environment:
            origin += f"(or the environment: {', '.join(environment[:5])}) "
        return f"{origin}the {cls.case} settings are refused: {validation_problems(exc, cls, f'{cls.case}.settings')}"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "case" in cls.__dict__:
            cls.model_config = {**cls.model_config, "env_prefix": f"LAKEHOUSE_{cls.case.upper()}_"}

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, SourcesFileSettings(settings_cls, cls.case))

    @classmethod
    def load(cls, sources_path: str | Path | None) -> Self:
        """The case's settings with `sources_path` as the sources file (None: no file): environment
        variables, then the file's `settings:` section, then the defaults. Read once per file version and
        environment; every asset, check, schedule, sensor and the serving app come through here."""
        resolved = str(Path(sources_path).resolve()) if sources_path else None
        mtime = Path(resolved).stat().st_mtime_ns if resolved and Path(resolved).is_file() else None
        prefix = cls.model_config["env_prefix"]
        environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefix)))
        return _load(cls, resolved, mtime, environment)

    def with_(self, **changes) -> CaseSettings:
        """A copy with some fields changed (validated like the original)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @classmethod
    def env_name(cls, dotted: str) -> str:
        """The environment variable that sets a (dotted) field, for error messages."""
        return cls.model_config["env_prefix"] + dotted.upper().replace(".", "__")

    @classmethod
    def where(cls, dotted: str) -> str:
        """How a user moves a setting: the sources file key or the environment variable."""
        return f"`{cls.case}.settings.{dotted}` in the sources file ({SOURCES_ENV}) or {cls.env_name(dotted)}"


Frequency = Literal["D", "W"]


@lru_cache(maxsize=64)
def _load(cls: type[CaseSettings], path: str | None, _mtime: int | None, _environment: tuple) -> CaseSettings:
    token = _SOURCES_PATH.set(path)
    try:
        return cls()
    finally:
        _SOURCES_PATH.reset(token)
