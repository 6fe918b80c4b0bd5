"""`python -m bench.replay --case <case>`: one case's replay (bench/replay/__init__.py)."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from bench.common import ROOT, utc_now, write_results
from bench.replay import report
from bench.replay.replay import Replay

CASES = {
    "fraud": ("bench.replay.fraud", "FraudReplay"),
    "forecast": ("bench.replay.forecast", "ForecastReplay"),
    "churn": ("bench.replay.churn", "ChurnReplay"),
    "triage": ("bench.replay.triage", "TriageReplay"),
}


def scenario(case: str, days: int | None, faults: bool):
    module, name = CASES[case]
    cls = getattr(importlib.import_module(module), name)
    return cls(**({"days": days} if days else {}), faults=faults)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--days", type=int, help="a shorter span (a slice: results are not written)")
    parser.add_argument("--no-faults", action="store_true", help="no injected fault (a slice)")
    parser.add_argument("--slice", action="store_true", help="the case's CI slice (fraud: a day, a poisoned file)")
    parser.add_argument(
        "--wall-minutes", type=float, help="start no simulated instant after this (the span played is then shorter)"
    )
    parser.add_argument(
        "--judge", type=Path, help="judge a written timeline again with the scenario's current faults (no replay)"
    )
    parser.add_argument("--home", type=Path, help="the replay's home (default .lakehouse/replay/<case>, kept)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the daemon and the code server on the way out
    if args.judge:
        result = rejudge(args.judge)
        args.judge.write_text(report.dumps(result) + "\n")
        print(report.render(result))
        return _status(result)
    home = args.home or ROOT / ".lakehouse" / "replay" / args.case  # beside the demo home: ignored, make clean
    if args.slice:
        played = importlib.import_module(CASES[args.case][0]).ci_slice()
    else:
        played = scenario(args.case, args.days, not args.no_faults)
    replay = Replay(played, home, wall_budget_s=args.wall_minutes * 60 if args.wall_minutes else None)
    replay.run()
    result = report.payload(replay, replay.data, report.judge(replay, replay.data))
    print(report.render(result))
    if args.days is None and not args.no_faults and not args.slice:
        print(f"results: {write_results(f'replay_{args.case}', result).relative_to(ROOT)}")
    else:
        (home / "replay.json").write_text(report.dumps(result))
        print(f"slice results: {home / 'replay.json'}")
    print(f"home kept: {home}")
    print(f"  LAKEHOUSE_HOME={home} DAGSTER_HOME={home}/dagster LAKEHOUSE_SOURCES={home}/sources.yaml make ui")
    return _status(result)


def _status(result: dict) -> int:
    return 0 if result["unexplained_failed_runs"] == 0 and result["false_alerts"] == 0 else 1


def rejudge(path: Path) -> dict:
    """A written timeline judged again with the scenario's current fault list (an expectation completed after the
    run): the runs, alerts, deadlines and champions are the ones measured; each fault's checks are kept."""
    result = json.loads(path.read_text())
    measured = {f["name"]: f for f in result["faults"]}
    played = scenario(result["case"], None, True)
    played.faults = [replace(f, verify=None) for f in played.faults if f.name in measured]
    data = {k: result[k] for k in ("runs", "alerts", "freshness", "champions", "pool_slots_held")}
    verdict = report.judge(SimpleNamespace(scenario=played), data)
    for row in verdict["faults"]:
        row["checks"] = measured[row["name"]]["checks"]
    return {**result, **verdict, **data, "judged_again": utc_now()}


if __name__ == "__main__":
    sys.exit(main())
