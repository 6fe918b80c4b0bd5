"""Dagster's overhead on the churn graph at demo scale (2,000 customers).

    .venv/bin/python -m bench.platform_overhead [--runs 3] [--no-profile]

Each repetition runs the same work twice, each time in a fresh process on a fresh temp
home, alternating which goes first:
  (a) dagster: `demos.churn.run` on its own instance (`DagsterInstance.from_config` on a
      dir holding a copy of deploy/dagster.yaml), embedded resources, LAKEHOUSE_SCALE=2000.
  (b) direct: the same domain functions and the same dbt commands without Dagster
      (Dagster is never imported): generate_world + validate_frame + Lake.write_many;
      dbt build staging; dbt build churn_features over the same snapshot range; dbt build
      churn_labels; training-set query; train + log_model to a fresh local MLflow store;
      the gate; champion alias; scoring + checks of the same 26 weeks; CRM outbox upsert;
      monthly_performance and its check; the A/B ROI steps.
The timed part starts after the imports (reported apart) and ends with the last step.
Dagster's time is then split with its own event log: run and step start/end per run.
One extra Dagster run under cProfile (not in the medians) says where the rest goes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import (
    publish,
    ROOT,
    clean_env,
    header,
    load_average,
    markdown_table,
    median,
    run_worker,
    wait_for_quiet,
)

NAME = "platform_overhead"
MODULE = "bench.platform_overhead"
CUSTOMERS = 2000
GOAL_RATIO = 1.3
TIMEOUT_S = 15 * 60
PHASES = ("raw_and_staging", "features", "training", "scoring_and_crm", "reports")


def _home_env(home: Path) -> dict:
    return clean_env(LAKEHOUSE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), LAKEHOUSE_SCALE=str(CUSTOMERS))


# --- (a) through Dagster ------------------------------------------------------------------------


def _event_log_summary(instance) -> dict:
    """Where the wall time of the Dagster runs went, from the instance's own records."""
    runs = list(reversed(instance.get_runs()))
    run_s = step_s = 0.0
    events = 0
    by_step: dict[str, list[float]] = defaultdict(list)
    by_type: dict[str, int] = defaultdict(int)
    per_run = []
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        duration = (stats.end_time or 0) - (stats.start_time or 0)
        run_s += duration
        steps = instance.get_run_step_stats(run.run_id)
        steps_total = 0.0
        for st in steps:
            d = (st.end_time or 0) - (st.start_time or 0)
            steps_total += d
            by_step[st.step_key].append(d)
        step_s += steps_total
        logs = instance.all_logs(run.run_id)
        events += len(logs)
        for e in logs:
            by_type[e.dagster_event.event_type_value if e.dagster_event else "log_message"] += 1
        per_run.append({"steps": [s.step_key for s in steps], "run_s": duration, "steps_s": steps_total, "events": len(logs), "status": str(run.status)})
    return {
        "runs": len(runs),
        "events": events,
        "events_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "sum_run_s": run_s,
        "sum_step_s": step_s,
        "step_s_by_key": {k: {"count": len(v), "sum_s": sum(v)} for k, v in by_step.items()},
        "per_run": per_run,
    }


def worker_dagster(a) -> dict:
    t = time.perf_counter()
    import dagster as dg

    import definitions  # noqa: F401  (loads the code location as a deployment would)
    import demos.churn
    from lakehouse.churn.config import SETTINGS, WorldConfig
    from lakehouse.common.registry import Registry
    from resources import LakehouseResource, default_resources

    imports_s = time.perf_counter() - t
    home = Path(a.home)
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
    marks: list[tuple[str, float]] = []
    profiler = None
    if a.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    outcome = demos.churn.run(instance, resources, WorldConfig().end_date, log=lambda msg: marks.append((msg, time.perf_counter())))
    wall = time.perf_counter() - t0
    if profiler:
        profiler.disable()
    ends = [m[1] for m in marks[1:]] + [t0 + wall]
    phases = {name: end - start for name, (_, start), end in zip(PHASES, marks, ends)}
    result = {
        "imports_s": imports_s,
        "wall_s": wall,
        "phases_s": phases,
        "outcome": outcome,
        "event_log": _event_log_summary(instance),
        "check": _outputs(home, Registry(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", home / "mlflow" / "artifacts"), SETTINGS),
    }
    if profiler:
        result["profile"] = _profile_summary(profiler, wall)
    return result


def _profile_summary(profiler, wall: float) -> dict:
    import pstats

    stats = pstats.Stats(profiler)
    by_package: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        path = filename.replace("\\", "/")
        if "site-packages/" in path:
            package = path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
        elif path.startswith(str(ROOT)):
            package = "project:" + path[len(str(ROOT)) + 1 :].split("/")[0].removesuffix(".py")
        elif filename == "~":
            package = "builtin " + func[:70]
        else:
            package = "stdlib"
        by_package[package] += tt
        rows.append((ct, tt, nc, f"{path.split('site-packages/')[-1]}:{line}({func})"))
    rows.sort(reverse=True)
    interesting = [r for r in rows if any(k in r[3] for k in ("dagster", "sqlalchemy", "sqlite3"))][:40]
    return {
        "note": "cProfile adds its own overhead: use for shares, not absolute times",
        "profiled_wall_s": wall,
        "tottime_by_package_s": dict(sorted(((k, round(v, 3)) for k, v in by_package.items()), key=lambda kv: -kv[1])[:30]),
        "top_cumulative_dagster": [{"cum_s": round(c, 3), "self_s": round(t, 3), "calls": n, "function": f} for c, t, n, f in interesting],
    }


# --- (b) without Dagster ---------------------------------------------------------------------------


def _snapshot_keys(world_end: date) -> list[str]:
    """The weekly partition keys `demos.churn.run` uses: Mondays from the first full-lookback
    snapshot to the end of the world (WeeklyPartitionsDefinition(start=first_snapshot, day_offset=1))."""
    from lakehouse.churn.config import WorldConfig

    first = WorldConfig.from_env().first_snapshot
    keys, d = [], first
    while d <= world_end:
        keys.append(d.isoformat())
        d += timedelta(weeks=1)
    return keys


def worker_direct(a) -> dict:
    t = time.perf_counter()
    import duckdb
    import polars as pl

    from bench.common import run_dbt
    from lakehouse.churn.config import CASE, SEED_AB_REFERENCE, SETTINGS, WorldConfig
    from lakehouse.churn.crm import OutboxCrm
    from lakehouse.churn.model import (
        LABEL,
        load_model,
        log_model,
        passes_gate,
        score,
        train,
    )
    from lakehouse.churn.monitoring import monthly_performance, scoring_checks
    from lakehouse.churn.roi import (
        analyse_ab_test,
        assign_arms,
        enrol_cohort,
        plot_ab_test,
        report_markdown,
        simulate_contact,
    )
    from lakehouse.churn.schemas import RAW_TABLES
    from lakehouse.churn.world import generate_world
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake
    from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
    from lakehouse.common.schema import validate_frame

    imports_s = time.perf_counter() - t
    home = Path(a.home)
    paths = LakehouseHome(home)
    lake = Lake(str(home / "lake"))
    registry = Registry(paths.mlflow_uri, paths.mlflow_artifacts)
    name = SETTINGS.registered_model_name
    steps: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = {}
    dbt_target = home / "dbt_target"  # one target dir, as a plain `dbt` user has

    def query(sql: str, params: list | None = None) -> pl.DataFrame:  # LakehouseResource.query
        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()

    def dbt(select: str, dbt_vars: dict | None = None) -> None:
        run_dbt("build", home, dbt_target, select=select, dbt_vars=dbt_vars, dagster_like=False)

    class step:
        def __init__(self, key):
            self.key = key

        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            steps[self.key] += time.perf_counter() - self.t

    t0 = time.perf_counter()
    world_end = WorldConfig().end_date
    keys = _snapshot_keys(world_end)

    # 1/5 raw tables and dbt staging
    p = time.perf_counter()
    with step("churn_raw"):
        world = WorldConfig.from_env()
        generated = generate_world(world, progress=world.customers >= 10_000)
        today = date.today()
        tables = {s.name: validate_frame(generated[s.name], s, source="generator", today=today) for s in RAW_TABLES}
        lake.write_many({(CASE, n, None): df for n, df in tables.items()})
    with step("churn_staging"):
        paths.root.mkdir(parents=True, exist_ok=True)
        dbt("tag:churn,tag:staging")
    phases["raw_and_staging"] = time.perf_counter() - p

    # 2/5 features over the whole snapshot range, one dbt run
    p = time.perf_counter()
    with step("churn_features"):
        end = (date.fromisoformat(keys[-1]) + timedelta(weeks=1)).isoformat()
        dbt("churn_features", {"snapshot_start": keys[0], "snapshot_end": end})
    phases["features"] = time.perf_counter() - p

    # 3/5 labels, training set, model, gate, champion
    p = time.perf_counter()
    with step("churn_labels"):
        dbt("churn_labels")
    with step("training_set"):
        df = query(
            f"""
            select f.*, l.{LABEL}, l.matured_30d
            from churn_features f
            join churn_labels l using (snapshot_date, customer_id)
            order by snapshot_date, customer_id
            """
        )
        lake.write(df, CASE, "training_set")
    with step("churn_model"):
        trained = train(lake.read(CASE, "training_set"), SETTINGS)
        version, _run_id = log_model(registry, trained, SETTINGS, run_name=f"churn-{datetime.now(UTC):%Y%m%d-%H%M%S}")
        last = trained.test_scores.filter(pl.col("snapshot_date") == pl.col("snapshot_date").max())
        lake.write(last.with_columns(model_version=pl.lit(version)), CASE, "reference_scores")
    with step("go_no_go_gate"):
        challenger = registry.alias_version(name, CHALLENGER)
        passed = passes_gate(registry.version_metrics(name, challenger), SETTINGS)
    with step("champion_model"):
        if passed:
            registry.alias_version(name, CHAMPION)
            registry.set_alias(name, CHAMPION, challenger)
    phases["training"] = time.perf_counter() - p

    # 4/5 weekly scoring of the last SCORED_WEEKS weeks, CRM push of the latest
    p = time.perf_counter()
    customers_setting = WorldConfig.from_env().customers
    for key in keys[-scored_weeks():]:
        with step("churn_scores"):  # the asset body, with its three checks
            features = query("select * from churn_features where snapshot_date = ? order by customer_id", [key])
            booster, model_version = load_model(registry, SETTINGS)
            batch = score(booster, features, SETTINGS, model_version=model_version)
            lake.write(batch.scores, CASE, "churn_scores", ("snapshot_date", key))
            batch.scores.group_by("risk_tier", "action").agg(customers=pl.len(), mean_score=pl.col("score").mean()).sort("mean_score", descending=True)
            reference = lake.read(CASE, "reference_scores")["score"].to_numpy()
            scoring_checks(batch, reference, customers_setting, SETTINGS)
    with step("crm_push"):
        scores = lake.read(CASE, "churn_scores", ("snapshot_date", keys[-1]))
        records = scores.rename({"customer_id": "external_id"}).with_columns(pl.col("snapshot_date").cast(pl.String)).to_dicts()
        OutboxCrm(paths.ops_db).upsert(records)
    phases["scoring_and_crm"] = time.perf_counter() - p

    # 5/5 live performance (+ its check) and the A/B ROI
    p = time.perf_counter()

    def scored_outcomes() -> pl.DataFrame:
        return query(
            f"""
            select s.snapshot_date, s.customer_id, s.score, s.model_version,
                   l.churned_30d, l.matured_30d, l.churned_90d, l.matured_90d
            from read_parquet('{lake.glob(CASE, "churn_scores", partitioned=True)}', hive_partitioning = false) s
            join churn_labels l using (snapshot_date, customer_id)
            """
        )

    with step("live_performance"):
        perf = monthly_performance(scored_outcomes())
        lake.write(perf, CASE, "live_performance")
    with step("churn_live_auc_pr"):
        perf = lake.read(CASE, "live_performance")
        if not perf.is_empty():
            perf.sort("month").row(-1, named=True)["auc_pr"] >= SETTINGS.min_live_auc_pr  # noqa: B015
    with step("ab_test_roi"):
        scored = scored_outcomes().filter(pl.col("matured_90d"))
        weeks = SETTINGS.ab_enrolment_weeks
        start = scored["snapshot_date"].max() - timedelta(weeks=weeks - 1)
        cohort = enrol_cohort(scored, threshold=SETTINGS.ab_high_risk_threshold, first_week=start, weeks=weeks)
        outcomes = cohort.select("customer_id", "churned_90d").with_columns(arm=assign_arms(cohort["customer_id"], SETTINGS.ab_salt))
        outcomes = simulate_contact(outcomes, WorldConfig.true_contact_effect, SETTINGS.ab_salt)
        result = analyse_ab_test(outcomes, ltv_eur=SETTINGS.ltv_eur, model_cost_eur_per_month=SETTINGS.model_cost_eur_per_month)
        paths.reports.mkdir(parents=True, exist_ok=True)
        plot_ab_test(result, paths.reports / "churn_ab_test.png")
        lake.write(pl.DataFrame([result.to_dict()]), CASE, "ab_test_roi")
        report_markdown(result, SEED_AB_REFERENCE)
    phases["reports"] = time.perf_counter() - p
    wall = time.perf_counter() - t0
    return {
        "imports_s": imports_s,
        "wall_s": wall,
        "phases_s": phases,
        "steps_s": dict(steps),
        "outcome": {"training_success": passed, "latest_week": keys[-1], "feature_keys": keys},
        "dagster_imported": any(m == "dagster" or m.startswith("dagster.") for m in sys.modules),
        "check": _outputs(home, registry, SETTINGS),
    }


def scored_weeks() -> int:
    """demos.churn.SCORED_WEEKS, read from the source: importing demos would import Dagster."""
    import ast

    tree = ast.parse((ROOT / "demos" / "churn.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SCORED_WEEKS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("SCORED_WEEKS not found in demos/churn.py")


def _outputs(home: Path, registry, settings) -> dict:
    """What both modes must agree on: same data, same model, same scores, same report."""
    import polars as pl

    from lakehouse.common.lake import Lake

    lake = Lake(str(home / "lake"))
    version = registry.alias_version(settings.registered_model_name, "champion")
    metrics = registry.version_metrics(settings.registered_model_name, version) if version else {}
    scores = pl.scan_parquet(lake.glob("churn", "churn_scores", partitioned=True), hive_partitioning=False).select(
        pl.len().alias("rows"), pl.col("score").sum().alias("score_sum"), pl.col("snapshot_date").n_unique().alias("weeks")
    ).collect().row(0, named=True)
    roi = lake.read("churn", "ab_test_roi").row(0, named=True) if lake.exists("churn", "ab_test_roi") else {}
    raw_rows = {t: lake.read("churn", t).height for t in ("customers", "usage_daily", "support_tickets", "invoices", "renewals")}
    return {
        "raw_rows": raw_rows,
        "champion_version": version,
        "auc_pr": metrics.get("auc_pr"),
        "best_iteration": metrics.get("best_iteration"),
        "scored_rows": scores["rows"],
        "scored_weeks": scores["weeks"],
        "score_sum": round(scores["score_sum"], 6),
        "roi": roi.get("roi"),
        "live_performance_months": lake.read("churn", "live_performance").height if lake.exists("churn", "live_performance") else None,
    }


WORKERS = {"dagster": worker_dagster, "direct": worker_direct}


# --- orchestration ----------------------------------------------------------------------------------


def _match_step(step_key: str, direct_keys: list[str]) -> str | None:
    """Dagster step key -> the direct mode's step name (op names carry the `churn__` prefix)."""
    k = step_key.removeprefix("churn__")
    if k in direct_keys:
        return k
    for d in sorted(direct_keys, key=len, reverse=True):
        if k.endswith(d) and d not in ("churn_model",):
            return d
    return None


def _run_mode(root: Path, mode: str, rep: int, keep: bool, profile: bool = False, quiet_wait_s: float = 300, attempt: int = 0) -> dict:
    home = root / f"{mode}-{rep}-{attempt}{'-profile' if profile else ''}"
    quiet = wait_for_quiet(quiet_wait_s)
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    load = load_average()
    args = ["--worker", mode, "--home", str(home)] + (["--profile"] if profile else [])
    m = run_worker(MODULE, args, env=_home_env(home), workdir=root, tag=home.name, timeout_s=TIMEOUT_S)
    if not m.ok:
        raise RuntimeError(f"{mode} run {rep} failed ({m.killed or m.returncode}):\n{m.log_tail}")
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return {**m.result, "mode": mode, "rep": rep, "process_s": m.wall_s, "process_cpu_s": m.cpu_s, "max_rss_bytes": m.max_rss_bytes,
            "load_average_before": load, "wait_for_quiet": quiet, "foreign_cpu_share": m.foreign_share}


def _decompose(d: dict) -> dict:
    ev = d["event_log"]
    return {
        "outside_runs_s": d["wall_s"] - ev["sum_run_s"],
        "in_runs_outside_steps_s": ev["sum_run_s"] - ev["sum_step_s"],
        "in_steps_s": ev["sum_step_s"],
        "runs": ev["runs"],
        "events": ev["events"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-profile", action="store_true", help="skip the extra cProfile'd Dagster run")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--workdir")
    p.add_argument("--quiet-wait", type=float, default=300, help="max seconds to wait for an idle machine before each run")
    p.add_argument("--contention", type=float, default=0.10, help="repeat a pair when other processes used more than this share of the CPU")
    p.add_argument("--max-retries", type=int, default=2)
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument("--home")
    p.add_argument("--out")
    p.add_argument("--profile", action="store_true")
    a = p.parse_args(argv)
    if a.worker:
        from bench.common import emit

        emit(a.out, WORKERS[a.worker](a))
        return 0

    payload = header(NAME, a.runs)
    payload.update({"customers": CUSTOMERS, "goal_ratio": GOAL_RATIO, "method": __doc__.strip()})
    root = Path(tempfile.mkdtemp(prefix="bench-platform-", dir=a.workdir))
    print(f"work dir: {root}", flush=True)
    reps = []
    try:
        discarded = []
        for rep in range(a.runs):
            order = ("dagster", "direct") if rep % 2 == 0 else ("direct", "dagster")
            for attempt in range(a.max_retries + 1):
                pair = {}
                for mode in order:
                    r = _run_mode(root, mode, rep, a.keep, quiet_wait_s=a.quiet_wait, attempt=attempt)
                    pair[mode] = r
                    print(f"[run {rep + 1}/{a.runs}] {mode:7s} {r['wall_s']:6.1f} s (+ imports {r['imports_s']:.1f} s), CPU {r['process_cpu_s']:.0f} s, "
                          f"peak RSS {r['max_rss_bytes'] / 2**20:.0f} MiB, other processes {r['foreign_cpu_share']:.0%} of the CPU", flush=True)
                pair["contended"] = max(pair[m]["foreign_cpu_share"] for m in order)
                pair["attempt"] = attempt
                if pair["contended"] <= a.contention or attempt == a.max_retries:
                    break
                discarded.append({m: {k: pair[m][k] for k in ("wall_s", "foreign_cpu_share")} for m in order})
                print(f"[run {rep + 1}/{a.runs}] contended: repeating the pair", flush=True)
            pair["order"] = list(order)
            pair["ratio"] = pair["dagster"]["wall_s"] / pair["direct"]["wall_s"]
            pair["same_outputs"] = pair["dagster"]["check"] == pair["direct"]["check"]
            pair["same_snapshots"] = pair["dagster"]["outcome"]["feature_keys"] == pair["direct"]["outcome"]["feature_keys"]
            pair["decomposition"] = _decompose(pair["dagster"])
            reps.append(pair)
            print(f"[run {rep + 1}/{a.runs}] ratio {pair['ratio']:.2f}; same outputs: {pair['same_outputs']}", flush=True)
        payload["repetitions"] = reps
        payload["discarded_contended_pairs"] = discarded
        payload["median"] = _medians(reps)
        # dagster-dbt runs `dbt --version` once per DbtCliResource instance, i.e. once per
        # dbt step (resources are initialised per run): its cost on this machine.
        from bench.common import DBT_EXECUTABLE, run_measured

        probes = [run_measured([DBT_EXECUTABLE, "--version"], env=clean_env()).wall_s for _ in range(3)]
        payload["dbt_version_subprocess_s"] = median(probes)
        if not a.no_profile:
            print("[profile] one more Dagster run under cProfile (not in the medians) ...", flush=True)
            prof = _run_mode(root, "dagster", a.runs, a.keep, profile=True, quiet_wait_s=a.quiet_wait)
            payload["profile_run"] = {"wall_s": prof["wall_s"], "profile": prof["profile"], "decomposition": _decompose(prof)}
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return publish(NAME, payload, render)


def _medians(reps: list[dict]) -> dict:
    dag = [r["dagster"] for r in reps]
    dire = [r["direct"] for r in reps]
    direct_steps = sorted({k for d in dire for k in d["steps_s"]})
    steps = {}
    for key in direct_steps:
        steps[key] = {"direct_s": median([d["steps_s"].get(key) for d in dire])}
    unmatched = defaultdict(list)
    for d in dag:
        per = defaultdict(float)
        for step_key, v in d["event_log"]["step_s_by_key"].items():
            name = _match_step(step_key, direct_steps)
            if name:
                per[name] += v["sum_s"]
            else:
                unmatched[step_key].append(v["sum_s"])
        for name, v in per.items():
            steps[name].setdefault("dagster_values", []).append(v)
    for name, s in steps.items():
        s["dagster_step_s"] = median(s.pop("dagster_values", []))
    dec = [r["decomposition"] for r in reps]
    return {
        "dagster_wall_s": median([d["wall_s"] for d in dag]),
        "direct_wall_s": median([d["wall_s"] for d in dire]),
        "ratio": median([r["ratio"] for r in reps]),
        "ratio_of_medians": median([d["wall_s"] for d in dag]) / median([d["wall_s"] for d in dire]),
        "dagster_imports_s": median([d["imports_s"] for d in dag]),
        "direct_imports_s": median([d["imports_s"] for d in dire]),
        "dagster_process_s": median([d["process_s"] for d in dag]),
        "direct_process_s": median([d["process_s"] for d in dire]),
        "dagster_process_cpu_s": median([d["process_cpu_s"] for d in dag]),
        "direct_process_cpu_s": median([d["process_cpu_s"] for d in dire]),
        "dagster_max_rss_bytes": median([d["max_rss_bytes"] for d in dag]),
        "direct_max_rss_bytes": median([d["max_rss_bytes"] for d in dire]),
        "phases_s": {ph: {"dagster": median([d["phases_s"].get(ph) for d in dag]), "direct": median([d["phases_s"].get(ph) for d in dire])} for ph in PHASES},
        "steps_s": steps,
        "unmatched_dagster_steps_s": {k: median(v) for k, v in unmatched.items()},
        "decomposition": {k: median([x[k] for x in dec]) for k in dec[0]},
        "all_outputs_identical": all(r["same_outputs"] for r in reps),
    }


def render(payload: dict) -> str:
    m = payload.get("median")
    if not m:
        return "no results"
    head = markdown_table(
        ["mode", "wall (s)", "imports (s)", "process incl. start (s)", "process CPU (s)", "peak RSS (MiB)"],
        [
            ["dagster (demos.churn.run)", m["dagster_wall_s"], m["dagster_imports_s"], m["dagster_process_s"], m["dagster_process_cpu_s"], round(m["dagster_max_rss_bytes"] / 2**20)],
            ["direct (no Dagster)", m["direct_wall_s"], m["direct_imports_s"], m["direct_process_s"], m["direct_process_cpu_s"], round(m["direct_max_rss_bytes"] / 2**20)],
            [f"ratio dagster/direct (goal < {payload['goal_ratio']})", f"{m['ratio']:.2f} ({'met' if m['ratio'] < payload['goal_ratio'] else 'MISSED'})", "-", "-", "-", "-"],
        ],
    )
    phases = markdown_table(
        ["phase", "dagster (s)", "direct (s)", "difference (s)"],
        [[ph, v["dagster"], v["direct"], (v["dagster"] or 0) - (v["direct"] or 0)] for ph, v in m["phases_s"].items()],
    )
    steps = markdown_table(
        ["step", "dagster step (s, event log)", "direct (s)", "difference (s)"],
        [[k, v.get("dagster_step_s"), v["direct_s"], (v.get("dagster_step_s") or 0) - (v["direct_s"] or 0)] for k, v in m["steps_s"].items()],
    )
    d = m["decomposition"]
    dec = markdown_table(
        ["where the Dagster wall time goes", "seconds"],
        [
            ["outside runs: materialize() job build, run creation/teardown", d["outside_runs_s"]],
            ["inside runs, between steps (planning, run/step events)", d["in_runs_outside_steps_s"]],
            ["inside steps (the work + per-step events, dbt log streaming)", d["in_steps_s"]],
            ["direct mode, the same work", m["direct_wall_s"]],
            ["runs / events written", f"{d['runs']:.0f} / {d['events']:.0f}"],
        ],
    )
    text = (
        f"### Platform overhead, churn graph at {payload['customers']:,} customers (median of {payload['runs']} runs)\n\n{head}\n\n"
        f"#### Per phase of demos.churn.run\n\n{phases}\n\n#### Per step\n\n{steps}\n\n#### Dagster decomposition\n\n{dec}"
    )
    prof = payload.get("profile_run")
    if prof:
        top = list(prof["profile"]["tottime_by_package_s"].items())[:12]
        text += "\n\n#### cProfile of one Dagster run: self time by package (s)\n\n" + markdown_table(["package", "self time (s)"], [[k, v] for k, v in top])
    if "dbt_version_subprocess_s" in payload:
        text += f"\n\n`dbt --version` subprocess (dagster-dbt `DbtCliResource._cli_version`, once per dbt step): {payload['dbt_version_subprocess_s']:.2f} s"
    text += f"\n\nOutputs identical in both modes (model, scores, ROI): {m['all_outputs_identical']}"
    return text


if __name__ == "__main__":
    sys.exit(main())
