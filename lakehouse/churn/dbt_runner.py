"""dbt run inside this process and kept warm: the project is parsed once per process (per project files and
environment) and every invocation runs against that parse through dbt's programmatic API (`dbtRunner`).

The dbt CLI spends about 4 s per invocation before its first SQL statement (interpreter start, imports, and
a full re-parse whenever the `--vars` change, which they do for every weekly partition); here the first
invocation of a process pays the imports and one parse (partial when an earlier process left dbt's parse
state for the same project and environment), the next ones the SQL and a few tens of milliseconds. The SQL
is dbt's own: the same models, tests and materializations as the CLI.

dbt-duckdb keeps its database open between invocations of one process; it is closed after each one, so that
this process's readers (`duckdb.connect(read_only=True)`) and other processes can open the warehouse.
Invocations of one process are serialized (dbt keeps global state).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
PARTIAL_PARSE = "partial_parse.msgpack"
# The structured events a caller gets (the rest stays in dbt's own log): node results, and errors.
RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})

_LOCK = threading.RLock()


@dataclass
class _Parse:
    """The project as parsed in this process: valid while its files and the environment variables the parse
    read (`Manifest.env_vars`, e.g. the lake's location in sources.yml) are unchanged."""

    project: tuple  # (project dir, profiles dir, files state)
    manifest: Any = None

    def valid_for(self, project: tuple) -> bool:
        return project == self.project and all(os.environ.get(k) == v for k, v in self.manifest.env_vars.items())


_PARSED: list[_Parse] = []  # the last parse of this process


@dataclass
class DbtInvocation:
    """One dbt command run in this process: its result events (as the CLI's JSON log lines) and errors."""

    args: list[str]
    target_path: Path
    success: bool = False
    events: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    parse_seconds: float = 0.0  # spent parsing the project first (0 when the process had it parsed)
    exception: BaseException | None = None

    def raise_on_error(self) -> DbtInvocation:
        if not self.success:
            detail = "\n".join(self.errors[-10:]) or repr(self.exception)
            raise DbtError(f"dbt {' '.join(self.args)} failed (log: {self.target_path / 'dbt.log'}):\n{detail}")
        return self


class DbtError(RuntimeError):
    """A dbt command that did not succeed, with dbt's error messages."""


def invoke(
    args: list[str],
    *,
    env: Mapping[str, str],
    target_path: Path,
    project_dir: Path = PROJECT_DIR,
    profiles_dir: Path = PROJECT_DIR,
    on_event: Callable[[dict], None] | None = None,
    write_json: bool = False,
) -> DbtInvocation:
    """Run `dbt <args>` here with `env` set for its duration (dbt reads the warehouse and lake paths from
    it), compiled SQL and logs in `target_path`; `on_event` sees each result or error event as it happens.
    The results come as events, so dbt's JSON artifacts (manifest.json, run_results.json: over half a second
    per invocation to write) are written only with `write_json`."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    invocation = DbtInvocation(list(args), Path(target_path))

    def collect(message) -> None:
        if message.info.name in RESULT_EVENTS or message.info.level == "error":
            event = msg_to_dict(message)
            if message.info.level == "error":
                invocation.errors.append(message.info.msg)
            invocation.events.append(event)
            if on_event is not None:
                on_event(event)

    location = ["--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir)]
    paths = ["--target-path", str(target_path), "--log-path", str(target_path)]
    if not write_json:
        paths.append("--no-write-json")
    with _LOCK, _environment(env):
        started = time.perf_counter()
        manifest = _parsed(project_dir, profiles_dir, location)
        invocation.parse_seconds = time.perf_counter() - started
        try:
            result = dbtRunner(manifest=manifest, callbacks=[collect]).invoke([*args, *location, *paths])
            invocation.success, invocation.exception = bool(result.success), result.exception
        finally:
            _release_warehouse()
        invocation.seconds = time.perf_counter() - started
    return invocation


def _parsed(project_dir: Path, profiles_dir: Path, location: list[str]):
    """The project's manifest, parsed once per process for this state of its files and its environment."""
    project = (str(project_dir), str(profiles_dir), _files_state(project_dir))
    if not (_PARSED and _PARSED[0].valid_for(project)):
        from dbt.cli.main import dbtRunner

        # One parse folder per environment (a project home): the next process finds dbt's partial-parse
        # state there and re-reads only what changed.
        environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("LAKEHOUSE_"))
        digest = hashlib.sha1(repr((project, environment)).encode()).hexdigest()[:10]
        parse_target = project_dir / "target" / f"parse-{digest}"
        prepared = project_dir / "target" / PARTIAL_PARSE  # left by `dagster-dbt project prepare-and-package`
        if prepared.exists() and not (parse_target / PARTIAL_PARSE).exists():
            parse_target.mkdir(parents=True, exist_ok=True)
            shutil.copy(prepared, parse_target / PARTIAL_PARSE)
        paths = ["--target-path", str(parse_target), "--log-path", str(parse_target)]
        result = dbtRunner().invoke(["parse", "--quiet", *location, *paths])
        if not result.success:
            raise DbtError(f"dbt could not parse {project_dir}: {result.exception}")
        _PARSED[:] = [_Parse(project, result.result)]
    return _PARSED[0].manifest


def _files_state(project_dir: Path) -> tuple:
    """What the parse depends on in the project: every source file's path, size and modification time."""
    files = [
        project_dir / "dbt_project.yml",
        *(project_dir / "models").rglob("*"),
        *(project_dir / "macros").rglob("*"),
    ]
    return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file()))


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        if environment is not None:
            environment.close()
        DuckDBConnectionManager._ENV = None


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
