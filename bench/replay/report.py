"""The timeline of a replay: every run, every alert with the fault it matches (or "false alert"), the champion
history with each gate's figures, freshness per SLA, pool slots held at the end, wall time; as JSON and as tables."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import polars as pl

from bench.common import header, markdown_table
from bench.replay.scenario import Fault

CHANGE_TAG = "lakehouse/source_change"


def origin_kind(run: dict) -> str:
    """schedule, sensor, catch-up (a late period loaded), reload (a corrected period), retry, bootstrap."""
    origin = run["origin"]
    if origin.startswith("retry"):
        return "retry"
    if run.get("change") == "arrived late":
        return "catch-up"
    if run.get("change"):
        return "reload"
    return origin.split(":", 1)[0]


def collect(replay) -> dict:
    """Everything the report needs, read from the instance, the alert table and the registry (engine still open)."""
    engine, scenario = replay.engine, replay.scenario
    runs = engine.runs()
    for run in runs:
        record = engine.instance.get_run_by_id(run["run_id"])
        run["change"] = record.tags.get(CHANGE_TAG) if record else None
        run["kind"] = origin_kind(run)
    return {
        "runs": runs,
        "alerts": _alerts(replay),
        "freshness": _freshness(engine, runs),
        "champions": {name: champion_history(replay.home, name) for name in scenario.models()},
        "pool_slots_held": engine.pool_slots_held(),
        "case_figures": scenario.summary(),
    }


def _alerts(replay) -> list[dict]:
    from lakehouse.common.alerts import read_alerts

    rows = []
    for alert in read_alerts(replay.home / "ops.sqlite").iter_rows(named=True):
        raised = replay.alert_instants.get(alert["evaluation_id"])
        cleared = replay.clear_instants.get(alert["evaluation_id"])
        rows.append(
            {
                "check_name": alert["check_name"],
                "asset_key": alert["asset_key"],
                "partition": alert["partition"],
                "severity": alert["severity"],
                "raised": raised.isoformat() if raised else None,
                "cleared": cleared.isoformat() if cleared else None,
                "description": (alert["description"] or "")[:240],
                "evaluation_id": alert["evaluation_id"],
            }
        )
    return rows


def _freshness(engine, runs: list[dict]) -> list[dict]:
    """Each deadline's evaluation: the period it expected and whether it was there."""
    import dagster as dg

    rows = []
    for run in runs:
        if "_freshness_" not in run["job"] or run["status"] != "SUCCESS":
            continue
        for record in engine.instance.get_records_for_run(
            run["run_id"], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records:
            evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
            rows.append(
                {
                    "sla": run["job"].split("_freshness_", 1)[1],
                    "deadline": run["at"],
                    "period": run["partition"],
                    "met": evaluation.passed,
                    "description": evaluation.description,
                }
            )
    return rows


def champion_history(home, name: str) -> list[dict]:
    """Each version: trained until, gate verdict and figures, champion periods."""
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.promotion import GATE_VERDICT_TAG, Verdict, history
    from lakehouse.common.registry import Registry

    paths = LakehouseHome(home)
    registry = Registry(paths.mlflow_uri, paths.mlflow_artifacts)
    rows = []
    for version in history(registry, name).sort("version").iter_rows(named=True):
        tags = registry.client.get_model_version(name, str(version["version"])).tags
        verdict = Verdict.from_json(tags[GATE_VERDICT_TAG]) if GATE_VERDICT_TAG in tags else None
        rows.append(
            {
                **{k: version[k] for k in ("version", "trained_until", "gate", "champion_from", "champion_until")},
                "summary": version["gate_summary"],
                "floors": [
                    {"floor": f"{f.metric} {f.op} {f.threshold}", "value": f.value, "passed": f.passed}
                    for f in (verdict.floors if verdict else ())
                ],
                "comparisons": [
                    {
                        "against": c.against,
                        "metric": c.metric,
                        "challenger": c.challenger,
                        "other": c.other,
                        "interval": c.interval,
                        "status": c.status,
                        "worse": c.worse,
                    }
                    for c in (verdict.comparisons if verdict else ())
                ],
            }
        )
    return rows


def worse_promotions(history: list[dict]) -> list[int]:
    """Versions that became champion although a like-for-like comparison with the champion found them worse."""
    return [
        v["version"]
        for v in history
        if v["champion_from"] and any(c["worse"] and c["against"].startswith("champion") for c in v["comparisons"])
    ]


def judge(replay, data: dict) -> dict:
    """Match alerts and failed runs with the faults; the figures of issue 24's "done when"."""
    faults: list[Fault] = replay.scenario.faults
    standing = replay.scenario.standing
    alerts, runs = data["alerts"], data["runs"]
    for alert in alerts:
        raised = datetime.fromisoformat(alert["raised"]) if alert["raised"] else None
        fault = next((f for f in faults if raised and f.explains_alert(alert, raised)), None)
        if fault is not None:
            alert["fault"] = fault.name
        elif any(e.matches(alert) for e in standing):
            alert["fault"] = "standing (the data's)"
        else:
            alert["fault"] = "false alert"
    for run in runs:
        if run["status"] == "FAILURE":
            fault = next((f for f in faults if f.explains_run(run)), None)
            run["explained_by"] = fault.name if fault else None
    fault_rows = [_fault_row(replay, f, alerts, runs) for f in faults]
    failed = [r for r in runs if r["status"] == "FAILURE"]
    deadlines = data["freshness"]
    missed = [d for d in deadlines if not d["met"]]
    delayed = [d for d in missed if not _fault_covers(faults, d)]
    champions = data["champions"]
    return {
        "runs_total": len(runs),
        "runs_by_status": dict(Counter(r["status"] for r in runs)),
        "runs_by_origin": dict(Counter(r["kind"] for r in runs)),
        "failed_runs": len(failed),
        "unexplained_failed_runs": sum(1 for r in failed if not r.get("explained_by")),
        "alerts_total": len(alerts),
        "false_alerts": sum(1 for a in alerts if a["fault"] == "false alert"),
        "standing_alerts": sum(1 for a in alerts if a["fault"].startswith("standing")),
        "standing_reason": replay.scenario.standing_reason or None,
        "alerts_open_at_end": sum(1 for a in alerts if not a["cleared"]),
        "faults": fault_rows,
        "faults_detected_in_time": sum(1 for f in fault_rows if f["detected_in_time"]),
        "faults_cleared": sum(1 for f in fault_rows if f["cleared"]),
        "deadlines_evaluated": len(deadlines),
        "deadlines_missed": len(missed),
        "deadlines_missed_without_injected_delay": len(delayed),
        "worse_promotions": {name: worse_promotions(h) for name, h in champions.items()},
        "pool_slots_held_at_end": sum(data["pool_slots_held"].values()),
    }


def _fault_covers(faults: list[Fault], deadline: dict) -> bool:
    """A missed deadline explained by an injected fault (its alert is the fault's)."""
    alert = {"check_name": "freshness", "asset_key": None, "partition": deadline["period"]}
    at = datetime.fromisoformat(deadline["deadline"])
    return any(
        f.at <= at <= f.window_end
        and any(e.check == "freshness" and e.partition in (None, alert["partition"]) for e in f.alerts)
        for f in faults
    )


def _fault_row(replay, fault: Fault, alerts: list[dict], runs: list[dict]) -> dict:
    mine = [a for a in alerts if a["fault"] == fault.name]
    first = min((a["raised"] for a in mine), default=None)
    expected = bool(fault.alerts)
    in_time = not expected or (
        first is not None and fault.detect_by is not None and datetime.fromisoformat(first) <= fault.detect_by
    )
    cleared = not expected or not fault.clears or (bool(mine) and all(a["cleared"] for a in mine))
    return {
        "name": fault.name,
        "kind": fault.kind,
        "at": fault.at.isoformat(),
        "fixed_at": fault.fixed_at.isoformat() if fault.fixed_at else None,
        "what": fault.what,
        "reaction": fault.reaction,
        "alerts": len(mine),
        "first_alert": first,
        "detect_by": fault.detect_by.isoformat() if fault.detect_by else None,
        "detected_in_time": in_time,
        "cleared": cleared,
        "last_cleared": max((a["cleared"] for a in mine if a["cleared"]), default=None),
        "failed_runs_explained": sum(1 for r in runs if r.get("explained_by") == fault.name),
        "checks": fault.verify(replay) if fault.verify else {},
    }


def payload(replay, data: dict, verdict: dict) -> dict:
    scenario = replay.scenario
    return {
        **header(f"replay_{scenario.case}", 1),
        "case": scenario.case,
        "description": scenario.description,
        "span": {
            "start": scenario.start.isoformat(),
            "end": scenario.end.isoformat(),
            "days": round((scenario.end - scenario.start).total_seconds() / 86_400, 1),
            "planned_end": replay.planned_end.isoformat(),
            "complete": scenario.end == replay.planned_end,
        },
        "home": str(replay.home),
        "wall_s": round(replay.wall_s, 1),
        "load_average_at_start": replay.load_at_start,
        "load_average_1min_over_instants": _spread([i.load for i in replay.instants]),
        "instants": len(replay.instants),
        **verdict,
        "lake_checks": replay.lake_checks,
        **data,
    }


def _spread(values: list[float]) -> dict:
    return {"mean": round(sum(values) / len(values), 2), "max": max(values)} if values else {}


def render(result: dict) -> str:
    """The readable timeline: headline figures, runs by job, faults, alerts, champions, freshness."""
    lines = [
        f"replay {result['case']}: {result['span']['start'][:16]} .. {result['span']['end'][:16]} "
        f"({result['span']['days']} days{'' if result['span']['complete'] else ', SHORTER than planned: wall budget'}),"
        f" wall {result['wall_s'] / 60:.1f} min, load average at start {result['load_average_at_start']}, over the"
        f" instants {result['load_average_1min_over_instants']}",
        "",
        markdown_table(
            [
                "runs",
                "failed",
                "unexplained failed",
                "alerts",
                "false alerts",
                "open at end",
                "missed deadlines",
                "missed without injected delay",
                "pool slots held",
            ],
            [
                [
                    result["runs_total"],
                    result["failed_runs"],
                    result["unexplained_failed_runs"],
                    result["alerts_total"],
                    result["false_alerts"],
                    result["alerts_open_at_end"],
                    result["deadlines_missed"],
                    result["deadlines_missed_without_injected_delay"],
                    result["pool_slots_held_at_end"],
                ]
            ],
        ),
        "",
        _runs_table(result["runs"]),
        "",
        markdown_table(
            ["fault", "at", "alerts", "first alert", "due by", "in time", "cleared", "failed runs explained"],
            [
                [
                    f["name"],
                    f["at"][:16],
                    f["alerts"],
                    (f["first_alert"] or "-")[:16],
                    (f["detect_by"] or "-")[:16],
                    f["detected_in_time"],
                    f["cleared"],
                    f["failed_runs_explained"],
                ]
                for f in result["faults"]
            ],
        ),
        "",
        markdown_table(
            ["alert", "asset [partition]", "severity", "raised", "cleared", "fault"],
            [
                [
                    a["check_name"],
                    f"{a['asset_key']} [{a['partition'] or '-'}]",
                    a["severity"],
                    (a["raised"] or "-")[:16],
                    (a["cleared"] or "open")[:16],
                    a["fault"],
                ]
                for a in result["alerts"]
            ],
        ),
    ]
    for name, history in result["champions"].items():
        lines += [
            "",
            markdown_table(
                [f"{name} version", "trained until", "gate", "champion from", "until", "gate summary"],
                [
                    [
                        v["version"],
                        v["trained_until"],
                        v["gate"],
                        v["champion_from"],
                        v["champion_until"],
                        (v["summary"] or "")[:110],
                    ]
                    for v in history
                ],
            ),
        ]
    lines += ["", _freshness_table(result["freshness"])]
    return "\n".join(lines)


def _runs_table(runs: list[dict]) -> str:
    frame = pl.DataFrame(
        {
            "job": [r["job"] for r in runs],
            "kind": [r["kind"] for r in runs],
            "status": [r["status"] for r in runs],
            "seconds": [r["seconds"] for r in runs],
        },
        schema={"job": pl.String, "kind": pl.String, "status": pl.String, "seconds": pl.Float64},
    )
    if frame.is_empty():
        return "no run"
    summary = (
        frame.group_by("job", "kind")
        .agg(
            pl.len().alias("runs"),
            (pl.col("status") == "SUCCESS").sum().alias("succeeded"),
            (pl.col("status") == "FAILURE").sum().alias("failed"),
            pl.col("seconds").median().alias("median_s"),
        )
        .sort("job", "kind")
    )
    return markdown_table(summary.columns, [list(r) for r in summary.iter_rows()])


def _freshness_table(deadlines: list[dict]) -> str:
    if not deadlines:
        return "no deadline evaluated"
    frame = (
        pl.DataFrame(deadlines)
        .group_by("sla")
        .agg(pl.len().alias("deadlines"), pl.col("met").sum().alias("met"), (~pl.col("met")).sum().alias("missed"))
    )
    missed = [f"{d['sla']} {d['period']} (deadline {d['deadline'][:16]})" for d in deadlines if not d["met"]]
    return markdown_table(frame.columns, [list(r) for r in frame.sort("sla").iter_rows()]) + (
        "\nmissed: " + "; ".join(missed) if missed else ""
    )


def dumps(result: dict) -> str:
    return json.dumps(result, indent=1, default=str)
