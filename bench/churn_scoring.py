"""Weekly churn scoring at 15,000 and 1,000,000 customers: the dbt features of the Monday, then the scores.

    .venv/bin/python -m bench.churn_scoring [--runs 3] [--scales 15000:3,1000000:min]

Setup, not timed (each step in its own process):
  * train: a small world (default 2,000 customers, 3 years) -> lake -> dbt staging, every feature
    snapshot, labels -> training set -> `train_challenger` -> gate -> alias `champion`. Every scale
    scores with this one model.
  * per scale: `generate_world(WorldConfig(customers=N, years=Y))` -> the raw lake.

Timed, per scale and repetition, in one fresh process (a worker) doing what the weekly run does, with
dbt in the process as the dbt assets run it (lakehouse/churn/dbt_runner.py):
  1. dbt staging (the run's first dbt invocation: it pays the project's parse; reported apart);
  2. the previous Monday's features and scores (the process is now warm: dbt parsed, libraries loaded);
  3. timed, the Monday of the benchmark:
     (a) features: `dbt build --select churn_features` for [Monday, next Monday) (the model, an
         incremental delete+insert, and its 5 data tests);
     (b) scoring, as the `churn_scores` asset: the serving model from MLflow, `score_week` (read the
         snapshot from DuckDB, scores, tiers, SHAP reasons, the Parquet partition, the weekly checks).
     total = (a) + (b);
  4. the same SQL run directly: dbt's compiled SQL of (a) as one `create or replace table` in DuckDB,
     in the same process; direct total = that + (b).
Each stage's CPU seconds (this process, every thread) are recorded beside its wall time: on a busy machine
the wall time measures the wait for a core as much as the work; the CPU time does not (a stage whose work is
CPU-bound takes at most its CPU time on an idle machine).
A cold figure is also given: a second fresh process that scores the Monday without the warm-up
(imports, parse, features, scores), from its first line to its last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import (
    GIB,
    clean_env,
    header,
    load_average,
    markdown_table,
    median,
    publish,
    run_worker,
    wait_for_quiet,
    write_results,
)

NAME = "churn_scoring"
MODULE = "bench.churn_scoring"
COMPILED = Path("compiled/lakehouse/models/churn/features/churn_features.sql")
DIRECT_TABLE = "bench_features_direct"
GOALS = {
    "small_customers": 15_000,
    "small_budget_s": 5.0,
    "seed_budget_s": 120.0,  # the seed's scoring_latency_budget_s: < 2 minutes for 15,000
    "large_customers": 1_000_000,
    "large_budget_s": 180.0,
    "large_budget_rss_bytes": 8 * GIB,
}
# Safety limits for the shared machine (a kill is reported, not hidden).
RSS_LIMIT = 20 * GIB
TIMEOUT_S = 45 * 60


def snapshot_date() -> date:
    """The Monday of the scoring run: the last snapshot of the world (its end date)."""
    from lakehouse.churn.world import WorldConfig

    return WorldConfig().end_date


def shortest_years() -> float:
    """Shortest history whose last snapshot (and the Monday before it) has its whole 13-week lookback."""
    from lakehouse.churn.world import LOOKBACK_WEEKS, WorldConfig

    end = WorldConfig().end_date
    for days in range(LOOKBACK_WEEKS * 7 + 7, 420):
        years = days / 365
        cfg = WorldConfig(years=years)
        if cfg.first_snapshot <= end - timedelta(weeks=1) and cfg.start_date <= end - timedelta(
            weeks=LOOKBACK_WEEKS + 1
        ):
            return years
    raise RuntimeError("no history length found")


# --- workers (each runs in its own process) ---------------------------------------------------


class Home:
    """A benchmark home, seen without Dagster: the lake, the warehouse, dbt in this process."""

    def __init__(self, root: str | Path, tracking_uri: str | None = None):
        from lakehouse.churn.pipeline import ChurnStore
        from lakehouse.churn.settings import ChurnSettings
        from lakehouse.common.lake import Lake
        from lakehouse.common.registry import Registry
        from lakehouse.common.settings import configured_sources_path

        self.root = Path(root)
        self.store = ChurnStore(Lake(str(self.root / "lake")), self.root / "warehouse.duckdb")
        self.settings = ChurnSettings.load(configured_sources_path())
        uri = tracking_uri or f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"
        self.registry = Registry(uri, Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
        self.invocations = 0

    def dbt(self, select: str, snapshot: date | None = None):
        """`dbt build --select <select>` in this process, as DbtResource.invoke runs it."""
        from lakehouse.churn import dbt_runner

        window = (
            {"snapshot_start": snapshot.isoformat(), "snapshot_end": (snapshot + timedelta(days=7)).isoformat()}
            if snapshot
            else {}
        )
        dbt_vars = {**self.settings.dbt_vars(), **window}
        env = {
            "LAKEHOUSE_WAREHOUSE": str(self.store.warehouse),
            "LAKEHOUSE_LAKE_URL": str(self.root / "lake"),
            "LAKEHOUSE_DBT_TARGET": "local",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        self.invocations += 1
        target = self.root / "dbt_target" / f"{os.getpid()}-{self.invocations}"
        args = ["build", "--select", select, "--vars", json.dumps(dbt_vars)]
        return dbt_runner.invoke(args, env=env, target_path=target).raise_on_error()

    def score(self, snapshot: date) -> dict:
        """What the `churn_scores` asset does for one week: the serving model, then `score_week`."""
        from lakehouse.churn.pipeline import score_week, serving_model

        t, cpu = time.perf_counter(), time.process_time()
        model = serving_model(self.registry, self.settings)
        loaded = time.perf_counter() - t
        week = score_week(self.store, model, snapshot.isoformat(), self.settings)
        return {
            "scoring_s": time.perf_counter() - t,
            "scoring_cpu_s": time.process_time() - cpu,
            "load_model_s": loaded,
            "score_s": week.batch.seconds,
            "customers_scored": week.batch.scores.height,
            "model_version": week.model.version,
        }


def _timings(invocation) -> dict:
    """dbt's own node times (model, tests) from the invocation's result events."""
    nodes = {
        e["data"]["node_info"]["unique_id"]: float(e["data"].get("execution_time") or 0.0) for e in invocation.events
    }
    return {
        "dbt_model_s": sum(v for k, v in nodes.items() if k.startswith("model.")),
        "dbt_tests_s": sum(v for k, v in nodes.items() if k.startswith("test.")),
        "dbt_tests": sum(k.startswith("test.") for k in nodes),
    }


def worker_generate(a) -> dict:
    from lakehouse.churn.schemas import RAW_TABLES
    from lakehouse.churn.settings import CASE
    from lakehouse.churn.world import WorldConfig, generate_world
    from lakehouse.common.lake import Lake
    from lakehouse.common.schema import validate_frame

    cfg = WorldConfig(customers=a.customers, years=a.years, seed=a.seed)
    t0 = time.perf_counter()
    tables = generate_world(cfg)
    generated = time.perf_counter() - t0
    if a.validate:
        tables = {s.name: validate_frame(tables[s.name], s, source="generator", today=date.today()) for s in RAW_TABLES}
    Lake(str(Path(a.home) / "lake")).write_many({(CASE, name, None): df for name, df in tables.items()})
    return {
        "customers_config": a.customers,
        "years": a.years,
        "start_date": cfg.start_date,
        "end_date": cfg.end_date,
        "rows": {k: v.height for k, v in tables.items()},
        "generate_s": generated,
    }


def worker_train(a) -> dict:
    """Train the one model every scale scores with, and promote it through its gate."""
    import polars as pl

    from lakehouse.churn.pipeline import build_training_set, go_no_go, train_challenger
    from lakehouse.common import promotion

    home = Home(a.home, a.tracking_uri)
    for select in ("tag:churn,tag:staging", "churn_features", "churn_labels"):
        home.dbt(select)
    training_set = build_training_set(home.store)
    challenger = train_challenger(home.store, home.registry, home.settings)
    promotion.record(home.registry, go_no_go(home.store, home.registry, home.settings))
    promoted = promotion.promote(home.registry, home.settings.registered_model_name, challenger.version)
    if not promoted.moved:
        raise SystemExit(f"the benchmark world's model did not pass its gate: {promoted.message}")
    return {
        "training_rows": training_set.height,
        "snapshots": training_set["snapshot_date"].n_unique(),
        "matured_rows": training_set.filter(pl.col("matured_30d")).height,
        "model_version": challenger.version,
        "metrics": challenger.trained.metrics,
        "num_trees": challenger.trained.booster.num_trees(),
    }


def worker_week(a) -> dict:
    """Steps 1-4 of the method (warm), or with --cold the Monday alone in a fresh process."""
    started = time.perf_counter()
    import duckdb

    from lakehouse.churn import dbt_runner  # noqa: F401  (imports are part of the cold figure)
    from lakehouse.churn.pipeline import score_week  # noqa: F401

    home = Home(a.home, a.tracking_uri)
    monday = date.fromisoformat(a.snapshot)
    result: dict = {"imports_s": time.perf_counter() - started}
    if a.cold:
        t = time.perf_counter()
        invocation = home.dbt("churn_features", monday)
        result.update(features_dbt_s=time.perf_counter() - t, parse_s=invocation.parse_seconds, **home.score(monday))
        result["cold_total_s"] = time.perf_counter() - started
        return result
    staging = home.dbt("tag:churn,tag:staging")
    result.update(staging_first_invocation_s=staging.seconds, parse_s=staging.parse_seconds)
    home.dbt("churn_features", monday - timedelta(weeks=1))
    home.score(monday - timedelta(weeks=1))
    t, cpu = time.perf_counter(), time.process_time()
    features = home.dbt("churn_features", monday)
    result["features_dbt_s"] = time.perf_counter() - t
    result["features_dbt_cpu_s"] = time.process_time() - cpu
    result.update(_timings(features))
    result.update(home.score(monday))
    sql = (features.target_path / COMPILED).read_text()
    with duckdb.connect(str(home.store.warehouse)) as con:
        t, cpu = time.perf_counter(), time.process_time()
        con.execute(f"create or replace table {DIRECT_TABLE} as {sql}").fetchall()
        result["features_direct_sql_s"] = time.perf_counter() - t
        result["features_direct_sql_cpu_s"] = time.process_time() - cpu
        result["features_rows_direct"] = con.sql(f"select count(*) from {DIRECT_TABLE}").fetchall()[0][0]
        result["duckdb_threads"] = con.sql("select current_setting('threads')").fetchall()[0][0]
        con.execute(f"drop table {DIRECT_TABLE}")
    result["total_s"] = result["features_dbt_s"] + result["scoring_s"]
    result["total_direct_sql_s"] = result["features_direct_sql_s"] + result["scoring_s"]
    result["dbt_overhead_s"] = result["features_dbt_s"] - result["features_direct_sql_s"]
    result["total_cpu_s"] = result["features_dbt_cpu_s"] + result["scoring_cpu_s"]
    result["total_direct_sql_cpu_s"] = result["features_direct_sql_cpu_s"] + result["scoring_cpu_s"]
    return result


WORKERS = {"generate": worker_generate, "train": worker_train, "week": worker_week}


# --- orchestration ----------------------------------------------------------------------------


def _env(home: Path) -> dict:
    env = clean_env(LAKEHOUSE_HOME=str(home))
    # The OpenMP wait policy a Dagster step process has (definitions.py sets it on import; these workers do not
    # import it): LightGBM's threads sleep rather than spin while they wait on busy cores.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _run(root: Path, tag: str, worker: str, args: list[str], env: dict):
    m = run_worker(
        MODULE,
        ["--worker", worker, *args],
        env=env,
        workdir=root,
        tag=tag,
        timeout_s=TIMEOUT_S,
        rss_limit_bytes=RSS_LIMIT,
    )
    if not m.ok:
        raise RuntimeError(f"{tag} failed ({m.killed or f'exit {m.returncode}'}):\n{m.log_tail}")
    return m


def _measure(root: Path, home: Path, customers: int, rep: int, common: list[str], quiet_wait_s: float) -> dict:
    env = _env(home)
    quiet = wait_for_quiet(quiet_wait_s)
    warm = _run(root, f"week-{customers}-{rep}", "week", ["--home", str(home), *common], env)
    cold = _run(root, f"cold-{customers}-{rep}", "week", ["--home", str(home), "--cold", *common], env)
    return {
        "rep": rep,
        "wait_for_quiet": quiet,
        "foreign_cpu_share": {"warm": warm.foreign_share, "cold": cold.foreign_share},
        "contended": max(warm.foreign_share, cold.foreign_share),
        **warm.result,
        "warm_process_s": warm.wall_s,
        "peak_rss_bytes": warm.max_rss_bytes,
        "cold": {**cold.result, "process_s": cold.wall_s, "peak_rss_bytes": cold.max_rss_bytes},
        "cold_total_s": cold.result["cold_total_s"],
    }


MEDIAN_KEYS = (
    "features_dbt_s",
    "dbt_model_s",
    "dbt_tests_s",
    "dbt_overhead_s",
    "features_direct_sql_s",
    "load_model_s",
    "score_s",
    "scoring_s",
    "total_s",
    "total_direct_sql_s",
    "features_dbt_cpu_s",
    "features_direct_sql_cpu_s",
    "scoring_cpu_s",
    "total_cpu_s",
    "total_direct_sql_cpu_s",
    "cold_total_s",
    "staging_first_invocation_s",
    "parse_s",
    "imports_s",
    "peak_rss_bytes",
)


def _goals(scale: dict) -> list[dict]:
    med, n = scale["median"], scale["customers_config"]
    if n == GOALS["small_customers"]:
        return [
            {"goal": "15,000 customers in < 5 s", "measured_s": med["total_s"], "met": med["total_s"] < 5.0},
            {"goal": "seed: < 2 minutes for 15,000", "measured_s": med["total_s"], "met": med["total_s"] < 120.0},
        ]
    if n == GOALS["large_customers"]:
        ok_t, ok_m = med["total_s"] < GOALS["large_budget_s"], med["peak_rss_bytes"] < GOALS["large_budget_rss_bytes"]
        return [
            {
                "goal": "1,000,000 customers in < 3 min within 8 GiB",
                "measured_s": med["total_s"],
                "measured_peak_rss_gib": med["peak_rss_bytes"] / GIB,
                "met": ok_t and ok_m,
            }
        ]
    return []


def _scale(root: Path, customers: int, years: float, a, common: list[str]) -> dict:
    home = root / f"home-{customers}"
    home.mkdir(parents=True)
    scale: dict = {"customers_config": customers, "years": years}
    print(f"[setup {customers:,}] generating the world ({years:.3f} years) ...", flush=True)
    gen = _run(
        root,
        f"generate-{customers}",
        "generate",
        ["--home", str(home), "--customers", str(customers), "--years", str(years), "--seed", str(a.seed)],
        _env(home),
    )
    scale["setup"] = {**gen.result, "generate_process_s": gen.wall_s, "generate_peak_rss_bytes": gen.max_rss_bytes}
    runs, discarded = [], []
    for rep in range(a.runs):
        for attempt in range(a.max_retries + 1):
            r = _measure(root, home, customers, rep, common, a.quiet_wait)
            r["attempt"] = attempt
            if r["contended"] <= a.contention or attempt == a.max_retries:
                break
            discarded.append(r)
            print(f"[{customers:,} run {rep + 1}] contended ({r['contended']:.0%} of the CPU): repeating", flush=True)
        runs.append(r)
        print(
            f"[{customers:,} run {rep + 1}/{a.runs}] total {r['total_s']:.2f} s (dbt {r['features_dbt_s']:.2f}, "
            f"same SQL directly {r['features_direct_sql_s']:.2f}, scoring {r['scoring_s']:.2f}), "
            f"CPU {r['total_cpu_s']:.2f} s; "
            f"cold process {r['cold_total_s']:.2f} s; other processes {r['contended']:.0%} of the CPU",
            flush=True,
        )
    scale.update(runs=runs, discarded_contended_runs=discarded, customers_scored=runs[-1]["customers_scored"])
    scale["median"] = {k: median([r[k] for r in runs]) for k in MEDIAN_KEYS}
    scale["median"]["foreign_cpu_share"] = median([r["contended"] for r in runs])
    scale["goals"] = _goals(scale)
    if not a.keep:
        shutil.rmtree(home, ignore_errors=True)
    return scale


def _parse_scales(text: str) -> list[tuple[int, float]]:
    scales = []
    for part in text.split(","):
        n, _, y = part.partition(":")
        scales.append((int(n), shortest_years() if y in ("", "min") else float(y)))
    return scales


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scales", default="15000:3,1000000:min", help="customers:years,... ('min': shortest history)")
    p.add_argument("--train-customers", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", help="parent folder for the temporary homes (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary homes")
    p.add_argument("--quiet-wait", type=float, default=300, help="max seconds to wait for an idle machine per run")
    p.add_argument("--contention", type=float, default=0.10, help="repeat a run when others used more of the CPU")
    p.add_argument("--max-retries", type=int, default=2)
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument("--out")
    p.add_argument("--home")
    p.add_argument("--customers", type=int)
    p.add_argument("--years", type=float, default=3.0)
    p.add_argument("--validate", action="store_true", help="validate the generated tables (the training world)")
    p.add_argument("--snapshot")
    p.add_argument("--tracking-uri")
    p.add_argument("--cold", action="store_true")
    a = p.parse_args(argv)
    if a.worker:
        from bench.common import emit

        emit(a.out, WORKERS[a.worker](a))
        return 0

    snapshot = snapshot_date()
    payload = header(NAME, a.runs)
    payload.update({"snapshot_date": snapshot.isoformat(), "goals": GOALS, "method": __doc__.strip()})
    root = Path(tempfile.mkdtemp(prefix="bench-churn-scoring-", dir=a.workdir))
    print(f"work dir: {root}", flush=True)
    try:
        train_home = root / "train"
        tracking_uri = f"sqlite:///{train_home / 'mlflow' / 'mlflow.db'}"
        common = ["--snapshot", snapshot.isoformat(), "--tracking-uri", tracking_uri]
        env = _env(train_home)
        print(f"[setup] training the model on {a.train_customers:,} customers ...", flush=True)
        world = ["--home", str(train_home), "--customers", str(a.train_customers), "--seed", str(a.seed)]
        _run(root, "train-world", "generate", [*world, "--validate"], env)
        trained = _run(root, "train", "train", ["--home", str(train_home), "--tracking-uri", tracking_uri], env)
        payload["model"] = {**trained.result, "process_s": trained.wall_s}
        payload["scales"] = []
        for customers, years in _parse_scales(a.scales):
            try:
                payload["scales"].append(_scale(root, customers, years, a, common))
            except RuntimeError as e:
                payload["scales"].append({"customers_config": customers, "years": years, "error": str(e)[-3000:]})
                print(f"[{customers:,}] FAILED: {str(e)[:500]}", flush=True)
            write_results(NAME, payload)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    payload["load_average_at_end"] = load_average()
    return publish(NAME, payload, render)


def render(payload: dict) -> str:
    rows = []
    for s in payload["scales"]:
        if "median" not in s:
            rows.append([f"{s['customers_config']:,}", "failed"] + ["-"] * 13)
            continue
        m = s["median"]
        rows.append(
            [
                s["customers_scored"],
                m["features_dbt_s"],
                m["dbt_model_s"],
                m["dbt_tests_s"],
                m["features_direct_sql_s"],
                m["scoring_s"],
                m["total_s"],
                m["total_direct_sql_s"],
                m["total_cpu_s"],
                m["total_direct_sql_cpu_s"],
                m["cold_total_s"],
                f"{m['foreign_cpu_share']:.0%}",
                f"{m['peak_rss_bytes'] / GIB:.2f}",
                "; ".join(f"{g['goal']}: {'met' if g['met'] else 'MISSED'}" for g in s["goals"]),
            ]
        )
    table = markdown_table(
        [
            "customers scored",
            "features, dbt in process (s)",
            "of which model (s)",
            "of which data tests (s)",
            "same SQL directly (s)",
            "scoring (s)",
            "total (s)",
            "total with the SQL directly (s)",
            "total, CPU (s)",
            "total with the SQL directly, CPU (s)",
            "cold process, imports to scores (s)",
            "other processes' share of the CPU",
            "peak RSS (GiB)",
            "goals",
        ],
        rows,
    )
    return (
        f"### Weekly churn scoring (median of {payload['runs']} runs, snapshot {payload['snapshot_date']}, "
        f"load average at start {payload['load_average_at_start']}, at end {payload['load_average_at_end']})"
        f"\n\n{table}"
    )


if __name__ == "__main__":
    sys.exit(main())
