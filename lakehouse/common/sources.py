"""Where a user's data is, and how its files map onto a case's raw tables: the sources file.

One YAML file, named by `LAKEHOUSE_SOURCES`, configures every case's source once; runs,
schedules, sensors and backfills all read it through the `sources` resource. A case that is
not listed runs on its synthetic generator. Example (paths are relative to the file):

```yaml
fraud:
  folder: ../shared/realdata/fraud
  tables:
    transactions:
      file: transactions.parquet
      columns:                          # our column: their column, or a rule
        tx_id: transaction_id
        ts: transaction_time_utc
        customer_id: ssn
        channel: {value: online}        # a constant for a column the file lacks
        amount_eur: amount
        is_fraud: {sql: "is_fraud = 1"} # a DuckDB SQL expression over their columns
      filter: "split != 'after_test'"   # keep only these rows
  settings:                             # the case's production settings (lakehouse/<case>/settings.py)
    calendar: {start: 2020-01-01}
```

A column rule is their column's name, or a mapping with exactly one of `from` (their
column), `value` (a constant) or `sql` (an expression), and optionally `format` (strptime
format of their dates), `timezone` (their naive times are local to this zone; stored in
UTC), `scale` (a multiplier: cents to units) and `map` (value renames). A table may instead
be a whole `sql` query over the folder's files, each a view named after its file name
(`feature_usage.parquet` -> `feature_usage`). The mapped rows then go through the table's
schema like any file: nothing is loaded unless every rule passes.
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import polars as pl
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lakehouse.common.conversion import examples
from lakehouse.common.ids import shown
from lakehouse.common.schema import (
    DATA_SUFFIXES,
    InputDataError,
    TableSchema,
    found_columns,
    reader_detail,
    validate_frame,
)
from lakehouse.common.section import Section

CASES = ("churn", "forecast", "fraud", "triage")
SOURCES_ENV = "LAKEHOUSE_SOURCES"


class SourcesError(ValueError):
    """The sources file itself is wrong (not the data it points to)."""


class ColumnRule(Section):
    from_: str | None = Field(None, alias="from")
    value: Any = None
    sql: str | None = None
    format: str | None = None
    timezone: str | None = None
    scale: float | None = None
    map: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnRule:
        origins = [name for name in ("from_", "value", "sql") if getattr(self, name) is not None]
        if len(origins) != 1:
            raise ValueError("a column rule needs exactly one of `from`, `value` or `sql`")
        if self.value is not None and (self.format or self.scale or self.map or self.timezone):
            raise ValueError("`value` is a constant: `format`, `timezone`, `scale` and `map` do not apply")
        return self

    def expression(self) -> str:
        if self.value is not None:
            return literal(self.value)
        expr = self.sql if self.sql is not None else quote(self.from_)
        if self.map:
            cases = " ".join(
                f"WHEN CAST({expr} AS VARCHAR) = {literal(str(k))} THEN {literal(v)}" for k, v in self.map.items()
            )
            expr = f"(CASE {cases} ELSE {expr} END)"
        if self.format:
            expr = f"try_strptime(CAST({expr} AS VARCHAR), {literal(self.format)})"
        if self.timezone:
            expr = f"(({expr})::TIMESTAMP AT TIME ZONE {literal(self.timezone)}) AT TIME ZONE 'UTC'"
        if self.scale is not None:
            expr = f"(TRY_CAST({expr} AS DOUBLE) * {self.scale!r})"
        return expr

    @property
    def origin(self) -> str:
        if self.from_ is not None:
            return f"their column '{self.from_}'"
        return f"the constant {self.value!r}" if self.value is not None else f"the expression `{self.sql}`"


# DuckDB read_csv options a mapping may set, for file and `sql:` tables alike. Options that drop or pad rows
# silently (ignore_errors, null_padding) are not among them: a row that cannot be read is an error.
CSV_OPTIONS = {
    "delim": "the field separator, e.g. '|' or ';'",
    "sep": "the same as delim",
    "quote": "the quote character",
    "escape": "the escape character",
    "header": "whether the first line names the columns (default true)",
    "nullstr": "text read as a missing value, e.g. NA, or a list of them",
    "skip": "lines skipped before the header",
    "comment": "a character that starts a comment line",
    "decimal_separator": "e.g. ','",
    "dateformat": "strptime format of the dates",
    "timestampformat": "strptime format of the times",
    "encoding": "utf-8, utf-16 or latin-1",
    "new_line": "the line terminator",
}


class TableSource(Section):
    file: str | None = None  # relative to the case folder; a glob reads several files as one
    csv: dict[str, Any] = Field(default_factory=dict)  # read options of its CSV files, e.g. {delim: "|", nullstr: NA}
    columns: dict[str, str | ColumnRule] | None = None
    filter: str | None = None
    sql: str | None = None
    rows_outside_selection: Literal["refuse", "skip"] = "refuse"

    @field_validator("columns")
    @classmethod
    def _rules(cls, columns):
        if columns is None:
            return None
        return {
            ours: ColumnRule.model_validate({"from": rule}) if isinstance(rule, str) else rule
            for ours, rule in columns.items()
        }

    @field_validator("csv")
    @classmethod
    def _csv_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(CSV_OPTIONS))
        if unknown:
            close = {u: difflib.get_close_matches(u, CSV_OPTIONS, n=1) for u in unknown}
            hints = "".join(f" (`{u}`: did you mean `{c[0]}`?)" for u, c in close.items() if c)
            raise ValueError(
                f"unknown CSV option(s) {', '.join(unknown)}{hints}; allowed: {', '.join(sorted(CSV_OPTIONS))}"
            )
        return options

    @model_validator(mode="after")
    def _file_or_sql(self) -> TableSource:
        if self.sql and (self.file or self.columns or self.filter):
            raise ValueError("a table given by `sql` takes no `file`, `columns` or `filter`: put them in the query")
        return self


class CaseSource(Section):
    folder: Path
    tables: dict[str, TableSource] = Field(default_factory=dict)
    ignore: tuple[str, ...] = ()  # files of the folder that are no table of the case
    settings: dict[str, Any] = Field(default_factory=dict)
    origin: str = ""  # the sources file and the case's key, for messages

    def table(self, name: str) -> TableSource:
        return self.tables.get(name) or TableSource()

    def data_files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)

    def file_for(self, name: str) -> Path | None:
        """The file a table reads, None when the folder has none (an absent optional table)."""
        spec = self.table(name)
        if spec.file:
            matches = sorted(self.folder.glob(spec.file))
            if not matches:
                raise InputDataError(
                    str(self.folder / spec.file),
                    name,
                    None,
                    f"no file matches `{spec.file}` ({self.origin}.tables.{name}.file)",
                )
            return matches[0] if len(matches) == 1 else self.folder / spec.file
        found = [
            self.folder / f"{name}{suffix}" for suffix in DATA_SUFFIXES if (self.folder / f"{name}{suffix}").is_file()
        ]
        if len(found) > 1:
            raise InputDataError(
                str(self.folder), name, None, f"both {found[0].name} and {found[1].name} exist; keep only one"
            )
        return found[0] if found else None

    def check_no_misnamed_files(self, tables: list[str]) -> None:
        """A data file whose name is close to a table's, but is not that table's file, is refused: a typo
        would otherwise look like an absent optional table."""
        claimed = {p.resolve() for name in tables if (p := self.file_for(name)) is not None and p.is_file()}
        for path in self.data_files():
            if path.resolve() in claimed or path.name in self.ignore or path.stem in self.ignore:
                continue
            close = difflib.get_close_matches(path.stem, tables, n=1, cutoff=0.75)
            if close and path.stem not in tables:
                raise InputDataError(
                    str(path),
                    close[0],
                    None,
                    f"this file looks like a misnamed '{close[0]}' table; rename it to {close[0]}{path.suffix}, "
                    f"map it with `{self.origin}.tables.{close[0]}.file`, or list it under `{self.origin}.ignore`",
                )


class Sources(Section):
    path: Path
    churn: CaseSource | None = None
    forecast: CaseSource | None = None
    fraud: CaseSource | None = None
    triage: CaseSource | None = None
    errors: dict[str, str] = Field(default_factory=dict)  # case -> why its section is refused

    def case(self, name: str) -> CaseSource | None:
        """The case's source, None when the file does not list it; SourcesError when its section is wrong (the
        other cases stay usable)."""
        if name not in CASES:
            raise KeyError(name)
        if name in self.errors:
            raise SourcesError(self.errors[name])
        return getattr(self, name)


def load_sources(path: str | Path) -> Sources:
    path = Path(path).resolve()
    stat = path.stat() if path.is_file() else None
    if stat is None:
        raise SourcesError(f"{path}: the sources file ({SOURCES_ENV}) does not exist or is not a file")
    return _load(str(path), stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: str, _mtime: int) -> Sources:
    """The whole file, parsed once; each case's section validated on its own, so one wrong section refuses that
    case only. A file that cannot be read or parsed refuses every case."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SourcesError(f"{path}: not valid YAML{where}: {shown(problem, 80)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesError(f"{path}: the sources file cannot be read as UTF-8 text ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise SourcesError(f"{path}: expected a mapping of case names ({', '.join(CASES)}) to sources")
    cases, errors = {}, {}
    for key, body in raw.items():
        case = key if key in CASES else next(iter(difflib.get_close_matches(str(key), CASES, n=1)), None)
        if case is None:
            raise SourcesError(f"{path}: unknown case {shown(key)}; the cases are {', '.join(CASES)}")
        try:
            if case != key:
                raise SourcesError(f"{shown(key, 30)} is no case (did you mean `{case}`?); the cases are {list(CASES)}")
            cases[case] = _case_section(path, case, body)
        except SourcesError as exc:
            errors[case] = f"{path}: {exc}"
    return Sources.model_validate({"path": path, **cases, "errors": errors})


def _case_section(path: str, case: str, body: Any) -> dict:
    """One case's section, checked: a mapping with a folder that exists, and keys the sources file knows."""
    if not isinstance(body, dict):
        raise SourcesError(f"`{case}` must be a mapping with `folder`, `tables`, `settings`; got {type(body).__name__}")
    if "folder" not in body:
        raise SourcesError(f"`{case}.folder` is missing: the folder that holds the case's files")
    folder = (Path(path).parent / str(body["folder"])).resolve()
    if not folder.is_dir():
        raise SourcesError(f"`{case}.folder` {shown(str(folder), 120)} is not a folder")
    section = {**body, "folder": folder, "origin": f"{Path(path).name}: {case}"}
    try:
        CaseSource.model_validate(section)
    except ValidationError as exc:
        raise SourcesError(validation_problems(exc, CaseSource, case)) from None
    return section


def validation_problems(exc: ValidationError, model: type[BaseModel], prefix: str) -> str:
    """A pydantic error as a user reads it: each wrong key with its dotted path under `prefix`, what is wrong,
    and for an unknown key the keys allowed there (a typo's close match first)."""
    found: dict[str, list[dict]] = {}
    for error in exc.errors():
        loc = [str(p) for p in error["loc"] if not _UNION_BRANCH.match(str(p))]
        found.setdefault(".".join(loc), []).append({**error, "loc": loc})
    problems = []
    for dotted, errors in found.items():
        # Of a union's branches, report what the user most likely meant: not "should be a string".
        meant = [e for e in errors if not e["type"].endswith("_type")] or errors
        if all(e["type"].endswith("_type") for e in meant) and any(k.startswith(f"{dotted}.") for k in found):
            continue  # the value was meant as the mapping whose own error follows
        for error in meant[:1]:
            problems.append(_problem(error, model, ".".join(p for p in (prefix, dotted) if p)))
    shown_problems = problems[:5]
    more = len(problems) - len(shown_problems)
    return "; ".join(shown_problems) + (f"; and {more} more" if more > 0 else "")


# Steps of an error's location that name a union branch or a validator, not a key of the file.
_UNION_BRANCH = re.compile(r"^(function-[\w-]+\[.*\]|str|int|float|bool|date|datetime|list\[.*\]|dict\[.*\]|[A-Z]\w*)$")


def _problem(error: dict, model: type[BaseModel], key: str) -> str:
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(model, error["loc"][:-1])
        close = difflib.get_close_matches(error["loc"][-1], allowed, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return f"`{key}`: unknown key{hint}; allowed here: {', '.join(allowed) or 'none'}"
    value = error.get("input")
    got = f" (got {shown(value)})" if not isinstance(value, dict | list) and error["type"] != "value_error" else ""
    return f"`{key}`: {error['msg'].removeprefix('Value error, ')}{got}"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys a model accepts at a path of field names and mapping keys, best effort."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if get_origin(current) is dict:  # `part` is a mapping's key: go to its values' type
            current = get_args(current)[1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fields = current.model_fields
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = field.annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items() if name != "origin")
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `str | Model` -> the mapping or model among them."""
    if get_origin(annotation) is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return annotation
    for arg in get_args(annotation):
        if get_origin(arg) is dict or (isinstance(arg, type) and issubclass(arg, BaseModel)):
            return arg
    return annotation


def configured_sources() -> Sources | None:
    """The sources file named by LAKEHOUSE_SOURCES, or None (every case on its generator)."""
    path = os.environ.get(SOURCES_ENV)
    return load_sources(path) if path else None


# --------------------------------------------------------------------------- reading


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _reader(path: Path, csv: dict[str, Any], all_text: bool) -> str:
    """The DuckDB read of one file: CSV with the mapping's options (every column as text when the schema does the
    typing), Parquet as it is."""
    target = literal(str(path))
    if path.suffix.lower() == ".csv":
        options = {"header": True, **({"all_varchar": True} if all_text else {}), **csv}
        rendered = ", ".join(f"{k} = {literal(v)}" for k, v in options.items())
        return f"read_csv({target}, {rendered})"
    return f"read_parquet({target}, union_by_name = true)"


class MappedTable:
    """One table of a user's source, mapped onto our column names (not yet validated)."""

    def __init__(self, frame: pl.DataFrame, label: str, ignored: list[str], origins: dict[str, str]):
        self.frame = frame
        self.label = label  # the file (and mapping) the rows come from, for errors
        self.ignored = ignored  # their columns no rule reads
        self.origins = origins  # our column -> where it came from


def read_mapped(source: CaseSource, name: str) -> MappedTable | None:
    """The rows of table `name` as the mapping makes them, or None when the folder has no such table."""
    import duckdb

    spec = source.table(name)
    with duckdb.connect() as con:
        if spec.sql:
            label = f"{source.origin}.tables.{name}.sql"
            for path in source.data_files():
                reader = _reader(path, spec.csv, all_text=False)
                _run(con, f"CREATE VIEW {quote(path.stem)} AS SELECT * FROM {reader}", f"{path} ({label})", name, None)
            return MappedTable(_run(con, spec.sql, label, name, None), label, [], {})
        path = source.file_for(name)
        if path is None:
            return None
        csv_text = spec.columns is None
        relation = f"(SELECT * FROM {_reader(path, spec.csv, all_text=csv_text)})"
        if spec.filter:
            relation = f"(SELECT * FROM {relation} WHERE {spec.filter})"
        label = str(path) + (f" (rows kept by `{source.origin}.tables.{name}.filter`)" if spec.filter else "")
        if spec.columns is None:
            return MappedTable(_run(con, f"SELECT * FROM {relation}", label, name, None), label, [], {})
        theirs = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        missing = [r.from_ for r in spec.columns.values() if r.from_ is not None and r.from_ not in theirs]
        if missing:
            raise InputDataError(
                label,
                name,
                missing[0],
                f"the mapping reads column(s) {missing} that the file lacks; it has {found_columns(theirs)}"
                + _hint(missing[0], theirs),
            )
        rules = {ours: rule for ours, rule in spec.columns.items()}
        select = [f"{rule.expression()} AS {quote(ours)}" for ours, rule in rules.items()]
        checked = [ours for ours, rule in rules.items() if rule.format or rule.scale is not None]
        select += [
            f"{quote(rules[ours].from_ or '')} AS {quote('__raw__' + ours)}" for ours in checked if rules[ours].from_
        ]
        frame = _run(con, f"SELECT {', '.join(select)} FROM {relation}", label, name, None)
        for ours in checked:
            raw = "__raw__" + ours
            if raw not in frame.columns:
                continue
            failed = frame.with_row_index("row").filter(pl.col(raw).is_not_null() & pl.col(ours).is_null())
            if failed.height:
                how = f"the format {rules[ours].format!r}" if rules[ours].format else "a number"
                raise InputDataError(
                    label,
                    name,
                    ours,
                    f"{failed.height} value(s) of their column '{rules[ours].from_}' cannot be read as {how}: "
                    + examples(failed[raw].unique(maintain_order=True).to_list()),
                    failed.select("row", pl.col(raw).alias(rules[ours].from_)),
                )
        frame = frame.drop([c for c in frame.columns if c.startswith("__raw__")])
        used = {r.from_ for r in rules.values() if r.from_} | {
            c for c in theirs if any(c in (r.sql or "") for r in rules.values())
        }
        return MappedTable(
            frame, label, [c for c in theirs if c not in used], {ours: r.origin for ours, r in rules.items()}
        )


class LoadedTable:
    """A table of a user's source, mapped and validated against its schema."""

    def __init__(self, frame: pl.DataFrame, mapped: MappedTable):
        self.frame = frame
        self.label = mapped.label
        self.ignored = mapped.ignored


def load_table(
    source: CaseSource, schema: TableSchema, *, today: date, optional: tuple[str, ...] = (), required: bool = True
) -> LoadedTable | None:
    """Map and validate one table. Columns named in `optional` may be absent (the features they feed are
    then left out); an absent table is an error when `required`, else None."""
    mapped = read_mapped(source, schema.name)
    if mapped is None:
        if required:
            raise InputDataError(
                str(source.folder),
                schema.name,
                None,
                f"no input file; expected {schema.name}.parquet or {schema.name}.csv, "
                f"or `{source.origin}.tables.{schema.name}.file`",
            )
        return None
    present = set(mapped.frame.columns)
    effective = (
        schema.restricted([c.name for c in schema.columns if c.name not in optional or c.name in present])
        if optional
        else schema
    )
    try:
        frame = validate_frame(mapped.frame, effective, source=mapped.label, today=today)
    except InputDataError as exc:
        origin = mapped.origins.get(exc.column or "")
        if origin is None:
            raise
        raise InputDataError(
            exc.file, exc.table, f"{exc.column}, from {origin}", exc.reason, exc.rows, exc.show_columns
        ) from None
    return LoadedTable(frame, mapped)


def _run(con, sql: str, label: str, table: str, column: str | None) -> pl.DataFrame | None:
    """Run `sql` (its rows, None for a statement); a DuckDB error is the mapping's, named with its table."""
    import duckdb

    try:
        relation = con.sql(sql)
        return relation.pl() if relation is not None else None
    except duckdb.Error as exc:
        raise InputDataError(label, table, column, f"the mapping cannot be applied: {reader_detail(exc)}") from None


def _hint(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
