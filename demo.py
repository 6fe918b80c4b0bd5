"""Materialize every case's asset graph on embedded defaults and print the key results.

    python demo.py                              # what `make demo` runs: every case
    LAKEHOUSE_DEMO_CASES=churn,fraud python demo.py   # a subset

Runs go through a persistent Dagster instance under $LAKEHOUSE_HOME/dagster, so the UI
(`make ui`) shows every run, materialization, check and alert afterwards.
"""

import importlib
import os
import sys
from pathlib import Path

from demos import ROOT, collect_alerts, prepare_instance

CASES = ["churn", "forecast", "fraud", "triage"]


def main() -> int:
    home = Path(os.environ.setdefault("LAKEHOUSE_HOME", str(ROOT / ".lakehouse"))).resolve()
    os.environ["LAKEHOUSE_HOME"] = str(home)
    instance = prepare_instance(home)
    from lakehouse.common.alerts import read_alerts
    from resources import default_resources

    resources = default_resources()
    cases = [c for c in os.environ.get("LAKEHOUSE_DEMO_CASES", ",".join(CASES)).split(",") if c]
    print(f"Lakehouse home: {home}  (cases: {', '.join(cases)})")
    demos = {case: importlib.import_module(f"demos.{case}") for case in cases}
    outcomes = {case: module.run(instance, resources, log=print) for case, module in demos.items()}
    collect_alerts(instance, resources)

    ok = all([module.report(instance, home, outcomes[case]) for case, module in demos.items()])
    alerts = read_alerts(home / "ops.sqlite")
    print(f"\nalerts raised: {alerts.height}" + ("" if alerts.is_empty() else " -> " + ", ".join(sorted(set(alerts['check_name'].to_list())))))
    print("\nWhere to look:")
    print(f"  Dagster UI:   make ui   (then http://127.0.0.1:3000; DAGSTER_HOME={home / 'dagster'})")
    print(f"  MLflow UI:    .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    print(f"  Lake:         {home / 'lake'}   Warehouse: {home / 'warehouse.duckdb'}")
    print(f"  Reports:      {home / 'reports'}   Alerts/CRM outbox: {home / 'ops.sqlite'}")
    print("  Online endpoints: LAKEHOUSE_API_KEY=... make serve   (then http://127.0.0.1:8000/docs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
