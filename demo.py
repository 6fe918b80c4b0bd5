"""Materialize every case's asset graph on embedded defaults and print the key results.

    python demo.py                                    # what `make demo` runs: every case
    LAKEHOUSE_DEMO_CASES=churn,fraud python demo.py   # a subset

The terminal shows one line per step with its time, then each case's results and where to
look; everything the steps print (Dagster's event log, dbt, the libraries) goes to
$LAKEHOUSE_HOME/demo.log. Runs go through a persistent Dagster instance under
$LAKEHOUSE_HOME/dagster, so the UI (`make ui`) shows every run, materialization, check and
alert afterwards.
"""

import importlib
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from demos import ROOT, collect_alerts, prepare_instance

CASES = ["churn", "forecast", "fraud", "triage"]


@contextmanager
def output_to(log_path: Path):
    """Everything written to stdout and stderr, by Python or by child processes, goes to `log_path`;
    yields a stream to the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class Steps:
    """One line per step: its name when it starts (a spinner meanwhile), its time when it ends."""

    def __init__(self, console):
        self.console = console
        self.current: str | None = None
        self.started = 0.0
        self.status = None

    def __call__(self, message: str) -> None:
        self.finish()
        self.current, self.started = message, time.perf_counter()
        self.status = self.console.status(message)
        self.status.start()

    def finish(self) -> None:
        if self.current is None:
            return
        self.status.stop()
        self.console.print(f"[green]✓[/green] {self.current} [dim]{time.perf_counter() - self.started:.1f} s[/dim]")
        self.current = None


def main() -> int:
    from rich.console import Console

    home = Path(os.environ.setdefault("LAKEHOUSE_HOME", str(ROOT / ".lakehouse"))).resolve()
    os.environ["LAKEHOUSE_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "demo.log"
    cases = [c for c in os.environ.get("LAKEHOUSE_DEMO_CASES", ",".join(CASES)).split(",") if c]
    Console().print(f"Lakehouse home: {home}  (cases: {', '.join(cases)}); full log: {log_path}")
    started = time.perf_counter()
    with output_to(log_path) as terminal:
        console = Console(file=terminal)
        steps = Steps(console)
        instance = prepare_instance(home)
        from resources import default_resources

        resources = default_resources()
        demos = {case: importlib.import_module(f"demos.{case}") for case in cases}
        outcomes = {}
        for case, module in demos.items():
            outcomes[case] = module.run(instance, resources, log=steps)
            steps.finish()
        steps("alerts: one tick of the alert sensor")
        collect_alerts(instance, resources)
        steps.finish()
    from lakehouse.common.alerts import read_alerts

    ok = all([module.report(instance, home, outcomes[case]) for case, module in demos.items()])
    alerts = read_alerts(home / "ops.sqlite")
    print(
        f"\nalerts raised: {alerts.height}"
        + ("" if alerts.is_empty() else " -> " + ", ".join(sorted(set(alerts["check_name"].to_list()))))
    )
    print(f"demo time: {time.perf_counter() - started:.0f} s")
    print("\nWhere to look:")
    print(f"  Dagster UI:   make ui   (then http://127.0.0.1:3000; DAGSTER_HOME={home / 'dagster'})")
    print(f"  MLflow UI:    .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    print(f"  Lake:         {home / 'lake'}   Warehouse: {home / 'warehouse.duckdb'}")
    print(f"  Reports:      {home / 'reports'}   Alerts/CRM outbox: {home / 'ops.sqlite'}")
    print(f"  Full log:     {log_path}")
    print("  Online endpoints: LAKEHOUSE_API_KEY=... make serve   (then http://127.0.0.1:8000/docs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
