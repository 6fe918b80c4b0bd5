"""Dagster's overhead on the churn graph at demo scale (2,000 customers).

    .venv/bin/python -m bench.platform_overhead [--runs 3] [--no-profile]

Each repetition runs the same work twice, each time in a fresh process on a fresh temp
home, alternating which goes first:
  (a) dagster: `demos.churn.run` on its own instance (`DagsterInstance.from_config` on a
      dir holding a copy of deploy/dagster.yaml), embedded resources, LAKEHOUSE_SCALE=2000.
  (b) direct: the same case functions the assets call (lakehouse/churn/pipeline.py, evaluation.py)
      and the same dbt commands run the same way (dbt in the process, parsed once:
      lakehouse/churn/dbt_runner.py), without Dagster (never imported), in the demo's order.
The timed part starts after the imports (reported apart) and ends with the last step; its wall time and
its CPU time (this process, every thread: steady where a busy machine stretches the wall time) are compared.
Dagster's time is then split with its own event log: run and step start/end per run.
One extra Dagster run under cProfile (not in the medians) says where the rest goes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from bench.common import (
    ROOT,
    clean_env,
    header,
    load_average,
    markdown_table,
    median,
    publish,
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
    env = clean_env(LAKEHOUSE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), LAKEHOUSE_SCALE=str(CUSTOMERS))
    # The OpenMP wait policy the code location sets on import (definitions.py), given to both modes: the direct
    # one never imports it, and with spinning threads its LightGBM training took 3 times as long on the busy cores.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


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
        per_run.append(
            {
                "steps": [s.step_key for s in steps],
                "run_s": duration,
                "steps_s": steps_total,
                "events": len(logs),
                "status": str(run.status),
            }
        )
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

    import definitions
    import demos.churn
    from lakehouse.churn.settings import ChurnSettings
    from lakehouse.churn.world import WorldConfig
    from lakehouse.common.registry import Registry
    from resources import LakehouseResource, default_resources

    definitions.defs()  # loads the code location as a deployment would
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    outcome = demos.churn.run(
        instance, resources, WorldConfig().end_date, log=lambda msg: marks.append((msg, time.perf_counter()))
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler:
        profiler.disable()
    ends = [m[1] for m in marks[1:]] + [t0 + wall]
    phases = {name: end - start for name, (_, start), end in zip(PHASES, marks, ends, strict=True)}
    result = {
        "imports_s": imports_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "phases_s": phases,
        "outcome": outcome,
        "event_log": _event_log_summary(instance),
        "check": _outputs(
            home, Registry(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", home / "mlflow" / "artifacts"), ChurnSettings()
        ),
    }
    if profiler:
        result["profile"] = _profile_summary(profiler, wall)
    return result


def _profile_summary(profiler, wall: float) -> dict:
    import pstats

    stats = pstats.Stats(profiler)
    by_package: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, func), (_, nc, tt, ct, _) in stats.stats.items():
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
        "tottime_by_package_s": dict(
            sorted(((k, round(v, 3)) for k, v in by_package.items()), key=lambda kv: -kv[1])[:30]
        ),
        "top_cumulative_dagster": [
            {"cum_s": round(c, 3), "self_s": round(t, 3), "calls": n, "function": f} for c, t, n, f in interesting
        ],
    }


# --- (b) without Dagster ---------------------------------------------------------------------------


def worker_direct(a) -> dict:
    """The steps of `demos.churn.run` through the same case functions the assets call, and dbt in this
    process as the dbt assets run it, in one process that never imports Dagster."""
    t = time.perf_counter()
    from lakehouse.churn import dbt_runner, pipeline
    from lakehouse.churn.crm import OutboxCrm
    from lakehouse.churn.schemas import RAW_TABLES
    from lakehouse.churn.settings import ChurnSettings
    from lakehouse.churn.world import WorldConfig, generate_world
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake
    from lakehouse.common.registry import Registry
    from lakehouse.common.schema import validate_frame
    from lakehouse.common.settings import configured_sources_path

    imports_s = time.perf_counter() - t
    home = Path(a.home)
    paths = LakehouseHome(home)
    store = pipeline.ChurnStore(Lake(str(paths.lake)), paths.warehouse)
    registry = Registry(paths.mlflow_uri, paths.mlflow_artifacts)
    world = WorldConfig()
    os.environ.setdefault(
        "LAKEHOUSE_CHURN_AB__SIMULATED_CONTACT_EFFECT", str(world.true_contact_effect)
    )  # as the demo does
    settings = ChurnSettings.load(configured_sources_path())
    steps: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = {}
    environment = {
        "LAKEHOUSE_WAREHOUSE": str(paths.warehouse),
        "LAKEHOUSE_LAKE_URL": str(paths.lake),
        "LAKEHOUSE_DBT_TARGET": "local",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }

    def dbt(select: str, **extra_vars) -> None:
        dbt_vars = json.dumps({**settings.dbt_vars(), **extra_vars})
        target = (
            dbt_runner.PROJECT_DIR / "target" / f"direct-{os.getpid()}-{select.replace(':', '_').replace(',', '_')}"
        )
        dbt_runner.invoke(
            ["build", "--vars", dbt_vars, "--select", select], env=environment, target_path=target
        ).raise_on_error()

    class step:
        def __init__(self, key):
            self.key = key

        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            steps[self.key] += time.perf_counter() - self.t

    t0, cpu0 = time.perf_counter(), time.process_time()
    keys = _snapshot_keys(world)

    p = time.perf_counter()
    with step("churn_raw"):
        generated = generate_world(world, progress=world.customers >= 10_000)
        today = date.today()
        pipeline.store_raw_tables(
            store, {s.name: validate_frame(generated[s.name], s, source="generator", today=today) for s in RAW_TABLES}
        )
    with step("churn_staging"):
        paths.root.mkdir(parents=True, exist_ok=True)
        dbt("tag:churn,tag:staging")
    phases["raw_and_staging"] = time.perf_counter() - p

    p = time.perf_counter()
    with step("churn_features"):
        end = (date.fromisoformat(keys[-1]) + timedelta(weeks=1)).isoformat()
        dbt("churn_features", snapshot_start=keys[0], snapshot_end=end)
    phases["features"] = time.perf_counter() - p

    p = time.perf_counter()
    with step("churn_labels"):
        dbt("churn_labels")
    gate = _direct_training(store, registry, settings, step)
    phases["training"] = time.perf_counter() - p

    p = time.perf_counter()
    with step("churn_scores"):
        model = pipeline.serving_model(registry, settings)
        for key in keys[-scored_weeks() :]:
            pipeline.score_week(store, model, key, settings)
    with step("crm_push"):
        records, _ = pipeline.crm_batch(store, keys[-1])
        OutboxCrm(paths.ops_db).upsert(records)
    phases["scoring_and_crm"] = time.perf_counter() - p

    p = time.perf_counter()
    with step("live_performance"):
        pipeline.live_performance(store, settings)
    with step("ab_test_roi"):
        pipeline.ab_test(store, settings, paths.reports)
    phases["reports"] = time.perf_counter() - p
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "imports_s": imports_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "phases_s": phases,
        "steps_s": dict(steps),
        "outcome": {"training_success": gate.passed, "latest_week": keys[-1], "feature_keys": keys},
        "dagster_imported": any(m == "dagster" or m.startswith("dagster.") for m in sys.modules),
        "check": _outputs(home, registry, settings),
    }


def _direct_training(store, registry, settings, step):
    """Training set, model, gate, promotion and the evaluation report, as the training steps of the demo."""
    from lakehouse.churn import evaluation, pipeline
    from lakehouse.common import promotion
    from lakehouse.common.registry import CHALLENGER, CHAMPION

    name = settings.registered_model_name
    with step("training_set"):
        pipeline.build_training_set(store)
    with step("model"):
        pipeline.train_challenger(store, registry, settings)
    with step("go_no_go_gate"):
        gate = pipeline.go_no_go(store, registry, settings)
        promotion.record(registry, gate)
    with step("champion_model"):
        promotion.promote(registry, name)
        promotion.history(registry, name)
    with step("model_evaluation"):
        challenger, champion = registry.alias_version(name, CHALLENGER), registry.alias_version(name, CHAMPION)
        evaluation.evaluate_version(store.lake, registry, settings, challenger, champion=champion)
    return gate


def _snapshot_keys(world) -> list[str]:
    """The weekly partition keys `demos.churn.run` scores: Mondays from the world's first full-lookback snapshot
    to its end."""
    keys, d = [], world.first_snapshot
    while d <= world.end_date:
        keys.append(d.isoformat())
        d += timedelta(weeks=1)
    return keys


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
    scores = (
        pl.scan_parquet(lake.glob("churn", "churn_scores", partitioned=True), hive_partitioning=False)
        .select(
            pl.len().alias("rows"),
            pl.col("score").sum().alias("score_sum"),
            pl.col("snapshot_date").n_unique().alias("weeks"),
        )
        .collect()
        .row(0, named=True)
    )
    roi = lake.read("churn", "ab_test_roi").row(0, named=True) if lake.exists("churn", "ab_test_roi") else {}
    raw_rows = {
        t: lake.read("churn", t).height for t in ("customers", "usage_daily", "support_tickets", "invoices", "renewals")
    }
    return {
        "raw_rows": raw_rows,
        "champion_version": version,
        "auc_pr": metrics.get("auc_pr"),
        "best_iteration": metrics.get("best_iteration"),
        "scored_rows": scores["rows"],
        "scored_weeks": scores["weeks"],
        "score_sum": round(scores["score_sum"], 6),
        "roi": roi.get("roi"),
        "live_performance_months": lake.read("churn", "live_performance").height
        if lake.exists("churn", "live_performance")
        else None,
    }


WORKERS = {"dagster": worker_dagster, "direct": worker_direct}


# --- orchestration ----------------------------------------------------------------------------------


def _match_step(step_key: str, direct_keys: list[str]) -> str | None:
    """Dagster step key -> the direct mode's step name (op names carry the `churn__` prefix)."""
    k = step_key.removeprefix("churn__")
    if k in direct_keys:
        return k
    for d in sorted(direct_keys, key=len, reverse=True):
        if k.endswith(d):
            return d
    return None


def _run_mode(
    root: Path, mode: str, rep: int, keep: bool, profile: bool = False, quiet_wait_s: float = 300, attempt: int = 0
) -> dict:
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
    return {
        **m.result,
        "mode": mode,
        "rep": rep,
        "process_s": m.wall_s,
        "process_cpu_s": m.cpu_s,
        "max_rss_bytes": m.max_rss_bytes,
        "load_average_before": load,
        "wait_for_quiet": quiet,
        "foreign_cpu_share": m.foreign_share,
    }


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
    p.add_argument(
        "--quiet-wait", type=float, default=300, help="max seconds to wait for an idle machine before each run"
    )
    p.add_argument(
        "--contention",
        type=float,
        default=0.10,
        help="repeat a pair when other processes used more than this share of the CPU",
    )
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
                    print(
                        f"[run {rep + 1}/{a.runs}] {mode:7s} {r['wall_s']:6.1f} s (+ imports {r['imports_s']:.1f} s), "
                        f"CPU {r['process_cpu_s']:.0f} s, peak RSS {r['max_rss_bytes'] / 2**20:.0f} MiB, "
                        f"other processes {r['foreign_cpu_share']:.0%} of the CPU",
                        flush=True,
                    )
                pair["contended"] = max(pair[m]["foreign_cpu_share"] for m in order)
                pair["attempt"] = attempt
                if pair["contended"] <= a.contention or attempt == a.max_retries:
                    break
                discarded.append({m: {k: pair[m][k] for k in ("wall_s", "foreign_cpu_share")} for m in order})
                print(f"[run {rep + 1}/{a.runs}] contended: repeating the pair", flush=True)
            pair["order"] = list(order)
            pair["ratio"] = pair["dagster"]["wall_s"] / pair["direct"]["wall_s"]
            pair["cpu_ratio"] = pair["dagster"]["cpu_s"] / pair["direct"]["cpu_s"]
            pair["same_outputs"] = pair["dagster"]["check"] == pair["direct"]["check"]
            pair["same_snapshots"] = (
                pair["dagster"]["outcome"]["feature_keys"] == pair["direct"]["outcome"]["feature_keys"]
            )
            pair["decomposition"] = _decompose(pair["dagster"])
            reps.append(pair)
            print(
                f"[run {rep + 1}/{a.runs}] ratio {pair['ratio']:.2f}; same outputs: {pair['same_outputs']}", flush=True
            )
        payload["repetitions"] = reps
        payload["discarded_contended_pairs"] = discarded
        payload["median"] = _medians(reps)
        if not a.no_profile:
            print("[profile] one more Dagster run under cProfile (not in the medians) ...", flush=True)
            prof = _run_mode(root, "dagster", a.runs, a.keep, profile=True, quiet_wait_s=a.quiet_wait)
            payload["profile_run"] = {
                "wall_s": prof["wall_s"],
                "profile": prof["profile"],
                "decomposition": _decompose(prof),
            }
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
    for figures in steps.values():
        figures["dagster_step_s"] = median(figures.pop("dagster_values", []))
    dec = [r["decomposition"] for r in reps]
    return {
        "dagster_wall_s": median([d["wall_s"] for d in dag]),
        "direct_wall_s": median([d["wall_s"] for d in dire]),
        "ratio": median([r["ratio"] for r in reps]),
        "ratio_of_medians": median([d["wall_s"] for d in dag]) / median([d["wall_s"] for d in dire]),
        "dagster_cpu_s": median([d["cpu_s"] for d in dag]),
        "direct_cpu_s": median([d["cpu_s"] for d in dire]),
        "cpu_ratio": median([r["cpu_ratio"] for r in reps]),
        "foreign_cpu_share": median([r["contended"] for r in reps]),
        "dagster_imports_s": median([d["imports_s"] for d in dag]),
        "direct_imports_s": median([d["imports_s"] for d in dire]),
        "dagster_process_s": median([d["process_s"] for d in dag]),
        "direct_process_s": median([d["process_s"] for d in dire]),
        "dagster_process_cpu_s": median([d["process_cpu_s"] for d in dag]),
        "direct_process_cpu_s": median([d["process_cpu_s"] for d in dire]),
        "dagster_max_rss_bytes": median([d["max_rss_bytes"] for d in dag]),
        "direct_max_rss_bytes": median([d["max_rss_bytes"] for d in dire]),
        "phases_s": {
            ph: {
                "dagster": median([d["phases_s"].get(ph) for d in dag]),
                "direct": median([d["phases_s"].get(ph) for d in dire]),
            }
            for ph in PHASES
        },
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
        ["mode", "wall (s)", "CPU (s)", "imports (s)", "process incl. start (s)", "process CPU (s)", "peak RSS (MiB)"],
        [
            [
                "dagster (demos.churn.run)",
                m["dagster_wall_s"],
                m["dagster_cpu_s"],
                m["dagster_imports_s"],
                m["dagster_process_s"],
                m["dagster_process_cpu_s"],
                round(m["dagster_max_rss_bytes"] / 2**20),
            ],
            [
                "direct (no Dagster)",
                m["direct_wall_s"],
                m["direct_cpu_s"],
                m["direct_imports_s"],
                m["direct_process_s"],
                m["direct_process_cpu_s"],
                round(m["direct_max_rss_bytes"] / 2**20),
            ],
            [
                f"ratio dagster/direct (goal < {payload['goal_ratio']})",
                f"{m['ratio']:.2f} ({'met' if m['ratio'] < payload['goal_ratio'] else 'MISSED'})",
                f"{m['cpu_ratio']:.2f}",
                "-",
                "-",
                "-",
                "-",
            ],
        ],
    )
    phases = markdown_table(
        ["phase", "dagster (s)", "direct (s)", "difference (s)"],
        [[ph, v["dagster"], v["direct"], (v["dagster"] or 0) - (v["direct"] or 0)] for ph, v in m["phases_s"].items()],
    )
    steps = markdown_table(
        ["step", "dagster step (s, event log)", "direct (s)", "difference (s)"],
        [
            [k, v.get("dagster_step_s"), v["direct_s"], (v.get("dagster_step_s") or 0) - (v["direct_s"] or 0)]
            for k, v in m["steps_s"].items()
        ],
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
        f"### Platform overhead, churn graph at {payload['customers']:,} customers "
        f"(median of {payload['runs']} runs; load average at start {payload['load_average_at_start']}, "
        f"other processes {m['foreign_cpu_share']:.0%} of the CPU)\n\n{head}\n\n"
        f"#### Per phase of demos.churn.run\n\n{phases}\n\n#### Per step\n\n{steps}\n\n"
        f"#### Dagster decomposition\n\n{dec}"
    )
    prof = payload.get("profile_run")
    if prof:
        top = list(prof["profile"]["tottime_by_package_s"].items())[:12]
        text += "\n\n#### cProfile of one Dagster run: self time by package (s)\n\n" + markdown_table(
            ["package", "self time (s)"], [[k, v] for k, v in top]
        )
    text += f"\n\nOutputs identical in both modes (model, scores, ROI): {m['all_outputs_identical']}"
    return text


if __name__ == "__main__":
    sys.exit(main())
