"""One case's settings from a sources file reach everything that reads them, alike: the asset's partitions, its
schedule's time zone, the gate check's floor (through the `sources` resource the code location binds) and the
serving app's input limits. The code location reads the file when it loads, so it loads in a process of its own."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SOURCES = """\
fraud:
  folder: .
  tables:
    transactions: {file: transactions.csv}
  settings:
    calendar: {start: 2024-03-01, timezone: Europe/Paris}
    gate: {min_recall: 0.61}
    plausibility: {max_amount: 5000}
"""

PROBE = textwrap.dedent(
    """
    import json
    import dagster as dg
    import definitions
    from lakehouse.fraud.api import FraudService
    from lakehouse.fraud.settings import FraudSettings
    from lakehouse.serving.app import ServingSettings

    defs = definitions.defs()
    transactions = defs.resolve_assets_def(dg.AssetKey(["fraud", "transactions"]))
    partitions = transactions.partitions_def
    schedule = defs.resolve_schedule_def("fraud_daily_ingest_schedule")
    with dg.build_resources({"sources": defs.resources["sources"]}) as resources:
        check_min_recall = resources.sources.settings(FraudSettings).gate.min_recall
    service = FraudService(ServingSettings(LAKEHOUSE_API_KEY="k"))
    print(json.dumps({
        "partitions_start": partitions.start.date().isoformat(),
        "partitions_timezone": partitions.timezone,
        "schedule_timezone": schedule.execution_timezone,
        "check_min_recall": check_min_recall,
        "serving_min_recall": service.fraud.gate.min_recall,
        "serving_amount_below": service.transaction_in.model_json_schema()["properties"]["amount"].get(
            "exclusiveMaximum"
        ),
    }))
    """
)


def test_an_asset_its_check_its_schedule_and_the_serving_app_see_the_same_settings(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAKEHOUSE_SOURCES": str(sources),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    env = {k: v for k, v in env.items() if not k.startswith("LAKEHOUSE_FRAUD_")}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["partitions_start"] == "2024-03-01"
    assert seen["partitions_timezone"] == seen["schedule_timezone"] == "Europe/Paris"
    assert seen["check_min_recall"] == seen["serving_min_recall"] == 0.61
    assert seen["serving_amount_below"] == 5000
