"""Fraud at the seed's volume: one day of 2 M payments plus the history its windows need, through the batch path.

    python -m bench.fraud_volume          # 2 M payments a day: 31 days before the scored day, 30 of them for training
    python -m bench.fraud_volume --tx-per-day 200000 --history-days 5 --training-days 2   # a smaller run

Each step runs in its own process (its wall time and peak RSS from `os.wait4`, a watchdog at
`--rss-limit-gib` so that the shared machine stays usable; a step it stops is a measured outcome):

1. generate: the synthetic world at scale, one day at a time, streamed to one Parquet file per day (the user's
   files: history days, training days, the validation day, the scored day);
2. load: each file read, validated through the transactions schema and stored in the lake, one day at a time;
3. features: `batch_features` (the one batch execution of the registry) of each day, one process a day (the
   scored day first, then the training and validation days): the day's rows and every loaded day before it,
   scanned lazily (`before=`), of which only summaries are read, so a day's memory does not grow with the history;
4. rules: the layer-1 lists learnt from the training days (only the columns the lists read);
5. train: negatives down-sampled day by day (`cascade.max_legit_training_rows` in all, each kept row weighted by
   1 / its sampling rate), the cascade trained and calibrated on the full validation day;
6. score: the scored day's 2 M payments scored with their rules and evaluated (ROC AUC, AP, recall, precision,
   card precision @ 100, layer shares);
7. warm (with `--warm-days N`, N > 0): a private redis-server warmed with the payments of the N days before the
   scored day of the scored day's customers and merchants, timed, with Redis's memory.

Writes bench/results/fraud_volume.json (figures per step, machine, date, revision, load) and prints a table.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import GIB, clean_env, emit, header, markdown_table, publish, run_worker

NAME = "fraud_volume"
MODULE = "bench.fraud_volume"
SEED = 3


# --------------------------------------------------------------------------- the plan of a run


def plan(config: dict) -> dict[str, list[str]]:
    """The days of a run: the scored day (the world's last), the validation day before it, the training days
    before that, and the history days before those."""
    scored = date.fromisoformat(config["scored_day"])
    validation = scored - timedelta(days=1)
    training = [validation - timedelta(days=i) for i in range(config["training_days"], 0, -1)]
    first = scored - timedelta(days=config["history_days"])
    days = [first + timedelta(days=i) for i in range((scored - first).days + 1)]
    return {
        "all": [d.isoformat() for d in sorted(set(days) | set(training) | {validation, scored})],
        "training": [d.isoformat() for d in training],
        "validation": [validation.isoformat()],
        "scored": [scored.isoformat()],
    }


def settings_for(config: dict):
    from lakehouse.fraud.settings import FraudSettings

    days = plan(config)
    window = {"start": days["training"][0], "end": days["training"][-1]}
    return FraudSettings.load(None).with_(
        calendar={"start": days["all"][0]},
        windows={
            "train": window,
            "validation": {"start": days["validation"][0], "end": days["validation"][0]},
            "test": {"start": days["scored"][0], "end": days["scored"][0]},
        },
        cascade={"max_legit_training_rows": config["max_legit_training_rows"]},
    )


def world_for(config: dict):
    from lakehouse.fraud.world import FULL_SCALE_FRAUD_RATE, WorldConfig

    scored = date.fromisoformat(config["scored_day"])
    return WorldConfig(
        tx_per_day=config["tx_per_day"],
        days=len(plan(config)["all"]),
        end_date=scored + timedelta(days=1),
        seed=SEED,
        fraud_rate=FULL_SCALE_FRAUD_RATE,
    )


def _lake(home: Path):
    from lakehouse.common.lake import Lake

    return Lake(str(home / "lake"))


# --------------------------------------------------------------------------- steps (each in its own process)


def step_generate(home: Path, config: dict) -> dict:
    import polars as pl

    from lakehouse.fraud.world import build_entities, generate_day

    world = world_for(config)
    entities = build_entities(world)
    incoming = home / "incoming"
    rows, frauds, seconds = 0, 0, []
    for day in plan(config)["all"]:
        started = time.perf_counter()
        frame = generate_day(world, date.fromisoformat(day), entities)
        (incoming / day).mkdir(parents=True, exist_ok=True)
        frame.write_parquet(incoming / day / "transactions.parquet")
        rows, frauds = rows + frame.height, frauds + int(frame["is_fraud"].sum())
        seconds.append(time.perf_counter() - started)
        del frame
    size = sum(f.stat().st_size for f in incoming.rglob("*.parquet"))
    return {
        "days": len(seconds),
        "rows": rows,
        "frauds": frauds,
        "customers": world.customers,
        "merchants": world.merchants,
        "parquet_bytes": size,
        "seconds_per_day_median": sorted(seconds)[len(seconds) // 2],
        "polars": pl.__version__,
    }


def step_load(home: Path, config: dict) -> dict:
    import polars as pl

    from lakehouse.fraud.pipeline import store_transactions, validate_days

    settings = settings_for(config)
    lake, seconds, rows = _lake(home), [], 0
    for day in plan(config)["all"]:
        started = time.perf_counter()
        frame = pl.read_parquet(home / "incoming" / day / "transactions.parquet")
        valid = validate_days({day: frame}, settings, source=f"incoming/{day}", today=date.today())
        rows += store_transactions(lake, valid)["rows"]
        seconds.append(time.perf_counter() - started)
        del frame, valid
    return {"days": len(seconds), "rows": rows, "seconds_per_day_median": sorted(seconds)[len(seconds) // 2]}


def _scan_days(lake, days: list[str]):
    """The transactions of these days as one lazy scan of their files."""
    import polars as pl

    from lakehouse.fraud.pipeline import DAY, TRANSACTIONS

    files = [
        f for d in days for f in sorted(glob.glob(f"{lake.partition_url('fraud', TRANSACTIONS, (DAY, d))}/*.parquet"))
    ]
    return pl.scan_parquet(files, hive_partitioning=False)


RULE_INPUTS = "rule_inputs"  # bench table: the merchant rule's two features for every payment of a training day


def _training_index(config: dict, day: str) -> int | None:
    training = plan(config)["training"]
    return training.index(day) if day in training else None


def step_features(home: Path, config: dict, day: str) -> dict:
    """One day's features from its rows and summaries of every loaded day before it. A training day gets its
    negatives down-sampled first (`cascade.max_legit_training_rows` over the training days, each kept row
    weighted by 1 / its sampling rate, every fraud kept), and the features of the sample only, its day's other
    rows serving as context; and the merchant rule's two features for all its rows, which the rules learn from."""

    from lakehouse.fraud.features_batch import batch_features
    from lakehouse.fraud.features_registry import registry_for
    from lakehouse.fraud.model import SAMPLE_WEIGHT, sample_rows
    from lakehouse.fraud.pipeline import FEATURES, read_transactions
    from lakehouse.fraud.rules import merchant_rule_features

    lake, registry = _lake(home), registry_for(settings_for(config))
    earlier = [d for d in lake.partitions("fraud", "transactions", "day") if d < day]
    before = _scan_days(lake, earlier) if earlier else None
    started = time.perf_counter()
    tx = read_transactions(lake, [day])
    read_s = time.perf_counter() - started
    index, out = _training_index(config, day), {}
    if index is None:
        features = batch_features(tx, registry, before=before)
    else:
        per_day = max(1, config["max_legit_training_rows"] // config["training_days"])
        sample = sample_rows(tx.select("tx_id", "is_fraud"), per_day, index)
        features = batch_features(tx, registry, before=before, targets=sample["tx_id"]).join(
            sample.select("tx_id", SAMPLE_WEIGHT), on="tx_id"
        )
        rule_started = time.perf_counter()
        inputs = batch_features(tx, registry, before=before, names=merchant_rule_features(registry))
        lake.write(
            inputs.select("tx_id", "is_fraud", *merchant_rule_features(registry)), "fraud", RULE_INPUTS, ("day", day)
        )
        out = {
            "sampled_rows": sample.height,
            "sampled_frauds": int(sample["is_fraud"].sum()),
            "represented": round(float(sample[SAMPLE_WEIGHT].sum())),
            "rule_features_s": round(time.perf_counter() - rule_started, 1),
        }
    features_s = time.perf_counter() - started - read_s
    lake.write(features, "fraud", FEATURES, ("day", day))
    return {
        "day": day,
        "rows": tx.height,
        "featured_rows": features.height,
        "days_before": len(earlier),
        "read_s": round(read_s, 1),
        "features_s": round(features_s, 1),
        "write_s": round(time.perf_counter() - started - read_s - features_s, 1),
        "features": len([c for c in features.columns if c in registry.names]),
        **out,
    }


def _with_rules(home: Path, config: dict, days: list[str], lists):
    from lakehouse.fraud.features_registry import registry_for
    from lakehouse.fraud.pipeline import FEATURES, read_transactions, with_rules

    lake, settings = _lake(home), settings_for(config)
    features = lake.read_partitions("fraud", FEATURES, "day", days)
    return with_rules(features, read_transactions(lake, days), lists, registry_for(settings), settings)


def step_rules(home: Path, config: dict) -> dict:
    """The lists from the training days, reading only the columns they learn from (30 days of 297 features would
    not fit in memory; the lists read two of them)."""
    import polars as pl

    from lakehouse.fraud.features_registry import registry_for
    from lakehouse.fraud.pipeline import RULE_LISTS
    from lakehouse.fraud.rules import build_lists, merchant_rule_features

    lake, settings, days = _lake(home), settings_for(config), plan(config)["training"]
    registry = registry_for(settings)
    files = [
        f for d in days for f in sorted(glob.glob(f"{lake.partition_url('fraud', RULE_INPUTS, ('day', d))}/*.parquet"))
    ]
    features = pl.scan_parquet(files).select("tx_id", "is_fraud", *merchant_rule_features(registry)).collect()
    raw = _scan_days(lake, days).select("tx_id", "is_fraud", "channel", "payee_iban", "ip", "country").collect()
    lists = build_lists(raw, features, registry, settings)
    lake.write(lists.as_frame(), "fraud", RULE_LISTS)
    return {"training_days": len(days), "rows": features.height, **lists.summary()}


def step_train(home: Path, config: dict) -> dict:
    """The cascade on the training days' samples (negatives down-sampled day by day when their features were
    computed, each kept row weighted back) and the full validation day; saved in the home for the scoring step."""
    import polars as pl

    from lakehouse.fraud.features_registry import registry_for
    from lakehouse.fraud.model import train
    from lakehouse.fraud.pipeline import read_rules, split_of

    lake, settings, days = _lake(home), settings_for(config), plan(config)
    lists = read_rules(lake)
    started = time.perf_counter()
    samples = [_with_rules(home, config, [day], lists) for day in days["training"]]
    sampled_s = time.perf_counter() - started
    validation = _with_rules(home, config, days["validation"], lists)
    data = pl.concat([*samples, validation.with_columns(sample_weight=pl.lit(1.0))], how="diagonal_relaxed")
    split = split_of(days["training"] + days["validation"] + days["scored"], settings)
    started = time.perf_counter()
    cascade = train(data, split, registry_for(settings), settings, lists)
    cascade.save(home / "cascade")
    trained = sum(s.height for s in samples)
    return {
        "training_rows_sampled": trained,
        "training_frauds": int(sum(s["is_fraud"].sum() for s in samples)),
        "population_represented": round(float(sum(s["sample_weight"].sum() for s in samples))),
        "validation_rows": validation.height,
        "sampling_and_rules_s": round(sampled_s, 1),
        "fit_s": round(time.perf_counter() - started, 1),
        "calibration": cascade.calibration,
        "band": cascade.band,
        "layer3_validation_share": cascade.band_search.get("validation_traffic_share"),
    }


def step_score(home: Path, config: dict) -> dict:
    from lakehouse.fraud.model import Cascade, evaluate, score_rows

    settings, day = settings_for(config), plan(config)["scored"]
    cascade = Cascade.load(home / "cascade")
    started = time.perf_counter()
    data = _with_rules(home, config, day, cascade.lists)
    rules_s = time.perf_counter() - started
    scored = score_rows(cascade, data)
    scored_s = time.perf_counter() - started - rules_s
    m = evaluate(scored, cascade, 1, settings).metrics()
    keys = ("transactions", "frauds", "roc_auc", "average_precision", "recall", "precision", "card_precision_at_k")
    return {
        "features_and_rules_s": round(rules_s, 1),
        "scoring_s": round(scored_s, 1),
        "evaluation_s": round(time.perf_counter() - started - rules_s - scored_s, 1),
        **{k: m[k] for k in keys},
        "layer3_share": m["layer3_share"],
        "rules_only_recall": m["baseline_recall"],
        "rules_only_precision": m["baseline_precision"],
        "mean_probability": float(scored["score"].mean()),
        "fraud_rate": float(scored["is_fraud"].mean()),
    }


def step_warm(home: Path, config: dict, lookback: int) -> dict:
    """The store warmed with the payments of the `lookback` days before the scored day of its customers and
    merchants."""
    import polars as pl
    import redis

    from lakehouse.common.local_servers import RedisServer
    from lakehouse.fraud.features_registry import registry_for
    from lakehouse.fraud.online import warm_store
    from lakehouse.fraud.pipeline import read_transactions

    settings, scored = settings_for(config), date.fromisoformat(plan(config)["scored"][0])
    lake = _lake(home)
    days = [(scored - timedelta(days=i)).isoformat() for i in range(max(lookback, 1), 0, -1)]
    today = read_transactions(lake, [scored.isoformat()])
    history = read_transactions(lake, days).filter(
        pl.col("customer_id").is_in(today["customer_id"].unique().implode())
        | pl.col("merchant_id").is_in(today["merchant_id"].unique().implode())
    )
    with RedisServer() as server:
        # redis-py's 5 s default read timeout is shorter than a pipeline of 2,000 updates on a busy machine.
        client = redis.Redis.from_url(server.url, socket_timeout=None)
        started = time.perf_counter()
        applied = warm_store(client, history, registry_for(settings), settings.serving)
        seconds = time.perf_counter() - started
        memory = int(client.info("memory")["used_memory"])
        client.close()
    return {
        "days_of_history": len(days),
        "payments": history.height,
        "applied": applied,
        "seconds": round(seconds, 1),
        "payments_per_s": round(applied / seconds) if seconds else None,
        "redis_used_memory_bytes": memory,
    }


def worker(step: str, home: Path, config: dict, extra: dict) -> dict:
    if step == "features":
        return step_features(home, config, extra["day"])
    if step == "warm":
        return step_warm(home, config, extra["lookback"])
    return {
        "generate": step_generate,
        "load": step_load,
        "rules": step_rules,
        "train": step_train,
        "score": step_score,
    }[step](home, config)


# --------------------------------------------------------------------------- the run


def _measure(step: str, home: Path, config: dict, workdir: Path, limit: int, timeout: float, **extra) -> dict:
    tag = "-".join([step, *(str(extra[k]) for k in ("day", "lookback") if k in extra)])
    args = ["--worker", step, "--home", str(home), "--config", json.dumps(config), "--extra", json.dumps(extra)]
    measured = run_worker(
        MODULE, args, env=clean_env(), workdir=workdir, tag=tag, rss_limit_bytes=limit, timeout_s=timeout
    )
    outcome = {
        "step": tag,
        "ok": measured.ok,
        "wall_s": round(measured.wall_s, 1),
        "peak_rss_gib": round(measured.max_rss_bytes / GIB, 2),
        "cpu_s": round(measured.cpu_s, 1),
        "foreign_cpu_share": round(measured.foreign_share, 2),
        **measured.result,
    }
    if not measured.ok:
        outcome["stopped"] = measured.killed or f"exit {measured.returncode}: {measured.log_tail[-600:]}"
    print(json.dumps(outcome), flush=True)
    with open(workdir / STEPS_FILE, "a") as log:
        log.write(json.dumps(outcome) + "\n")
    return outcome


STEPS_FILE = "steps.jsonl"  # every measured outcome of the runs in this home, in order (what --resume reads)


def _earlier(workdir: Path) -> list[dict]:
    path = workdir / STEPS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _features_summary(days: list[dict]) -> dict:
    """The features of several days (one process each) as one step: totals, the slowest and largest day, and
    each day's wall time and peak RSS."""
    walls = sorted(d["wall_s"] for d in days)
    return {
        "step": f"features ({len(days)} days: the training days' samples and the full validation day, a process each)",
        "ok": all(d["ok"] for d in days),
        "wall_s": round(sum(walls), 1),
        "peak_rss_gib": max(d["peak_rss_gib"] for d in days),
        "cpu_s": round(sum(d["cpu_s"] for d in days), 1),
        "wall_s_per_day_median": walls[len(walls) // 2],
        "wall_s_per_day_max": walls[-1],
        "per_day": {d.get("day", d["step"]): [d["wall_s"], d["peak_rss_gib"], d.get("days_before")] for d in days},
        "per_day_fields": ["wall_s", "peak_rss_gib", "days_before"],
        **({"failed": [d for d in days if not d["ok"]]} if not all(d["ok"] for d in days) else {}),
    }


def run(config: dict, home: Path, limit: int, timeout: float, resume: bool = False) -> dict:
    """Every step in order. With `resume`, generate and load are not run again when an earlier run in this home
    completed them (their outcomes are reported from it); every other step is measured again."""
    workdir = home / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    days = plan(config)
    earlier = _earlier(workdir) if resume else []
    steps = []
    for step in ("generate", "load"):
        done = [e for e in earlier if e["step"] == step and e["ok"]]
        if done:
            steps.append({**done[-1], "run": "an earlier run in the same home (--resume)"})
            continue
        steps.append(_measure(step, home, config, workdir, limit, timeout))
        if not steps[-1]["ok"]:
            return {"plan": _plan_summary(days), "steps": steps}
    scored = _measure("features", home, config, workdir, limit, timeout, day=days["scored"][0])
    scored["step"] = "features (scored day)"
    steps.append(scored)
    fit = [
        _measure("features", home, config, workdir, limit, timeout, day=d)
        for d in days["training"] + days["validation"]
    ]
    steps.append(_features_summary(fit))
    if steps[-1]["ok"]:
        for step in ("rules", "train", "score"):
            if step == "score" and not (scored["ok"] and steps[-1]["ok"]):
                break
            steps.append(_measure(step, home, config, workdir, limit, timeout))
        if config["warm_days"]:
            steps.append(_measure("warm", home, config, workdir, limit, timeout, lookback=config["warm_days"]))
    brief = ("step", "ok", "wall_s", "peak_rss_gib", "cpu_s", "foreign_cpu_share", "days_before", "stopped", "note")
    attempts = [
        {k: e[k] for k in brief if k in e} for e in earlier if e["step"] not in ("generate", "load") or not e["ok"]
    ]
    return {"plan": _plan_summary(days), "steps": steps, **({"earlier_attempts": attempts} if attempts else {})}


def _plan_summary(days: dict) -> dict:
    return {k: (v if len(v) <= 3 else f"{v[0]} .. {v[-1]} ({len(v)} days)") for k, v in days.items()}


def render(payload: dict) -> str:
    rows = [
        [s["step"], "yes" if s["ok"] else s.get("stopped", "no")[:60], s["wall_s"], s["peak_rss_gib"]]
        for s in payload["steps"]
    ]
    return markdown_table(["step", "completed", "wall s", "peak RSS GiB"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tx-per-day", type=int, default=2_000_000)
    parser.add_argument("--history-days", type=int, default=31, help="days loaded before the scored day")
    parser.add_argument("--training-days", type=int, default=30)
    parser.add_argument("--max-legit-training-rows", type=int, default=400_000)
    parser.add_argument("--warm-days", type=int, default=0, help="days of payments warmed into Redis (0: no warm-up)")
    parser.add_argument("--scored-day", default="2026-11-22")
    parser.add_argument("--rss-limit-gib", type=float, default=22.0)
    parser.add_argument("--step-timeout-s", type=float, default=3 * 3600)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the home (several GB at full scale)")
    parser.add_argument("--resume", action="store_true", help="reuse generate and load of an earlier run in --home")
    parser.add_argument("--worker")
    parser.add_argument("--config")
    parser.add_argument("--extra", default="{}")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        emit(args.out, worker(args.worker, args.home, json.loads(args.config), json.loads(args.extra)))
        return 0
    config = {
        "tx_per_day": args.tx_per_day,
        "history_days": args.history_days,
        "training_days": args.training_days,
        "max_legit_training_rows": args.max_legit_training_rows,
        "warm_days": args.warm_days,
        "scored_day": args.scored_day,
    }
    home = args.home or Path(tempfile.mkdtemp(prefix="fraud-volume-"))
    payload = {**header(NAME, 1), "config": config, "rss_limit_gib": args.rss_limit_gib}
    try:
        payload.update(run(config, home, int(args.rss_limit_gib * GIB), args.step_timeout_s, args.resume))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return publish(NAME, payload, render)


if __name__ == "__main__":
    sys.exit(main())
