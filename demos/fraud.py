"""Fraud demo: daily transactions, features, lists, cascade, gate, champion, a warmed feature
store, then one live day of traffic through the decision service and its monitoring checks.

Redis: LAKEHOUSE_REDIS_URL when set, otherwise a private redis-server for the demo's duration.
"""

import asyncio
import os
import time
from datetime import date, datetime
from pathlib import Path

import dagster as dg

from demos import latest_metadata, range_tags


def run(instance: dg.DagsterInstance, resources: dict, log=print, live_transactions: int | None = None) -> dict:
    """The fraud graph in the order the schedules would run it, then a live day through the service."""
    from lakehouse.common.local_servers import RedisServer
    from resources import RedisResource

    private = None if os.environ.get("LAKEHOUSE_REDIS_URL") else RedisServer().start()
    redis_url = private.url if private is not None else os.environ["LAKEHOUSE_REDIS_URL"]
    try:
        resources = {**resources, "redis": RedisResource(url=redis_url)}
        return _run(instance, resources, redis_url, log, live_transactions)
    finally:
        if private is not None:
            private.stop()


def _run(instance, resources, redis_url, log, live_transactions):
    from assets.fraud import ASSETS, CHECKS
    from lakehouse.fraud.world import WorldConfig

    world = WorldConfig.from_env()
    days = world.day_keys

    def materialize(selection, **kwargs):
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **kwargs,
        )

    log(f"fraud 1/5 {len(days)} days of transactions ({days[0]} .. {days[-1]}), ~{world.tx_per_day:,}/day, one run")
    ingest = materialize("key:fraud/transactions", tags=range_tags(days[0], days[-1]))
    log("fraud 2/5 features, layer-1 rules, cascade training, promotion gate, champion, its rules to Redis")
    training = materialize(
        "key:fraud/transaction_features or key:fraud/rule_lists or key:fraud/model or key:fraud/champion_model "
        "or key:fraud/rule_lists_online"
    )
    log("fraud 2b/5 batch scores of the test days and their evaluation report")
    materialize("key:fraud/scores", tags=range_tags(days[-3], days[-1]))
    materialize("key:fraud/evaluation")
    log("fraud 3/5 warm the Redis feature store from the lake")
    materialize("key:fraud/online_features")
    live_day = world.end_date.isoformat()
    log(f"fraud 4/5 live traffic of {live_day} through POST /fraud/decisions (in-process app, stream consumers inline)")
    started = time.perf_counter()
    live = asyncio.run(_live_day(redis_url, world, live_day, live_transactions))
    live["seconds"] = time.perf_counter() - started
    log(f"fraud 5/5 decision log {live_day} and its monitoring checks")
    monitored = materialize("key:fraud/decision_log", partition_key=live_day)
    evaluations = monitored.get_asset_check_evaluations()
    return {
        "ingest_success": ingest.success,
        "training_success": training.success,
        "live_day": live_day,
        "live": live,
        "checks": {e.check_name: e.passed for e in evaluations},
        "drift_not_compared": sum(
            len(e.metadata["not_compared"].value.records) for e in evaluations if "not_compared" in e.metadata
        ),
    }


async def _live_day(redis_url: str, world, day: str, limit: int | None) -> dict:
    """POST one day of generated transactions to the app; wait until the consumers caught up."""
    import httpx

    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.fraud.api import FraudService
    from lakehouse.fraud.settings import FraudSettings
    from lakehouse.fraud.world import generate_day
    from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

    settings = ServingSettings(
        api_key="demo",
        home=LakehouseHome(Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve()),
        redis_url=redis_url,
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        cases=("fraud",),
    )
    # A replay of a past day: the service clock starts at its first minute and moves with the payments.
    fraud_settings = FraudSettings.load(configured_sources_path()).with_(
        consumers="inline", serving={"replay_from": datetime.fromisoformat(day), "future_tolerance_s": 86_400}
    )
    fraud = FraudService(settings, fraud_settings)
    app = create_app(settings, services=[fraud.case_service()])
    tx = generate_day(world, date.fromisoformat(day)).drop("is_fraud", "fraud_pattern")
    if limit:
        tx = tx.head(limit)
    counts = {"approve": 0, "review": 0, "block": 0}
    errors = degraded = 0
    async with app.router.lifespan_context(app):
        if fraud.decider is None:
            return {"requests": 0, "errors": tx.height, "decisions": counts, "degraded": 0}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://demo", headers={API_KEY_HEADER: "demo"}
        ) as client:
            for row in tx.iter_rows(named=True):
                body = {k: v for k, v in row.items() if v is not None} | {"ts": row["ts"].isoformat()}
                response = await client.post("/fraud/decisions", json=body)
                if response.status_code != 200:
                    errors += 1
                    continue
                out = response.json()
                counts[out["decision"]] += 1
                degraded += out["degraded"]
        while not await fraud.drained():
            await asyncio.sleep(0.05)
    return {"requests": tx.height, "errors": errors, "decisions": counts, "degraded": degraded}


def report(instance: dg.DagsterInstance, home: Path, outcome: dict) -> bool:
    """Print the fraud results beside the seed's; True when the gate passed and every live request was decided."""
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.fraud.settings import FraudSettings
    from lakehouse.fraud.world import DEMO_FRAUD_RATE, WorldConfig

    settings = FraudSettings.load(configured_sources_path())
    world = WorldConfig.from_env()
    model = latest_metadata(instance, ["fraud", "model"])
    champion = latest_metadata(instance, ["fraud", "champion_model"])
    log_meta = latest_metadata(instance, ["fraud", "decision_log"])
    print(f"\n=== Fraud (seed case 3): {world.days} days x ~{world.tx_per_day:,} tx/day, seed {world.seed} ===")
    if world.fraud_rate == DEMO_FRAUD_RATE:
        print(
            f"demo scale: fraud rate raised to {DEMO_FRAUD_RATE:.1%} (seed 0.08 %) so the test days hold a few "
            "hundred frauds"
        )
    if model:
        s, currency = settings.reference, settings.economics.currency
        print(f"out-of-time test {model['split'].split('test ')[-1]}:")
        print(
            f"  rules only: recall {model['baseline_recall_pct']:.1f} %  precision "
            f"{model['baseline_precision_pct']:.1f} %   (seed {s.rules_recall:.0%} / {s.rules_precision:.0%})"
        )
        print(
            f"  cascade:    recall {model['recall_pct']:.1f} %  precision {model['precision_pct']:.1f} %   (seed "
            f"{s.cascade_recall:.0%} / {s.cascade_precision:.0%}); ROC AUC {model['roc_auc']:.4f}, average "
            f"precision {model['average_precision']:.4f} (layer 2 alone {model['layer2_only_average_precision']:.4f}"
            f", layer 3 alone {model['layer3_only_average_precision']:.4f}); one calibrated probability per payment"
        )
        print(
            f"  layer 1 blocks {model['layer1_block_share_pct']:.2f} % of traffic at precision "
            f"{model['layer1_precision_pct']:.1f} % (seed 15 % / 95 %)"
        )
        print(
            f"  layer 3 re-scores {model['layer3_share_pct']:.1f} % of traffic (seed 35 %), band {model['layer3_band']}"
            f" chosen on validation ({model['validation_frauds_below_band']} validation frauds below it, "
            f"{model['frauds_below_band']} test frauds); lift over layer 2 alone: average precision "
            f"{model['layer3_lift_average_precision']:+.4f}, recall {model['layer3_lift_recall_pct']:+.1f} pts, "
            f"precision {model['layer3_lift_precision_pct']:+.1f} pts"
        )
        print(
            f"  fraud caught per month: {model[f'fraud_caught_per_month_{currency}']:,.0f} {currency}; net gain over "
            f"rules only after system cost: {model[f'net_gain_per_month_{currency}']:,.0f} {currency} (economics: "
            f"{model['economics']})"
        )
    gate = settings.gate
    gate_ok = bool(outcome["training_success"] and champion.get("champion_version", "none") != "none")
    print(
        f"promotion gate (recall >= {gate.min_recall}, precision >= {gate.min_precision}, not worse than the "
        f"champion or the rules only beyond noise): "
        + (f"GO, champion v{champion['champion_version']}" if gate_ok else "NO-GO")
        + (f" ({champion['outcome']})" if champion.get("outcome") else "")
    )
    live = outcome["live"]
    print(
        f"live day {outcome['live_day']}: {live['requests']:,} requests in {live['seconds']:.1f} s, "
        f"{live['errors']} errors, {live['degraded']} degraded, decisions {live['decisions']}"
    )
    if log_meta:
        print(
            f"decision log: {log_meta['dagster/row_count']:,} rows; checks: "
            + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in outcome["checks"].items())
            + (
                f" (drift leaves out {n} features: the weekday, the categories' day history, and windows longer "
                "than the history before the reference)"
                if (n := outcome["drift_not_compared"])
                else ""
            )
        )
    return bool(
        gate_ok
        and live["requests"]
        and live["errors"] == 0
        and log_meta
        and log_meta["dagster/row_count"] == live["requests"]
    )
