"""What loading the code location costs: `import definitions` against `import dagster` alone
(goal: at most 3x), and building the Definitions (`definitions.defs()`), which Dagster does once
per code-location load. Median of fresh processes, each measuring from its first import.

    .venv/bin/python -m bench.imports [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.common import ROOT, clean_env, header, markdown_table, median, publish, wait_for_quiet

NAME = "imports"
GOAL_RATIO = 3.0
PROBES = {
    "import dagster": "import dagster",
    "import definitions": "import definitions",
    "definitions.defs()": "import definitions; definitions.defs()",
}
HEAVY = (
    "torch",
    "statsforecast",
    "mlforecast",
    "hierarchicalforecast",
    "mlflow",
    "xgboost",
    "lightgbm",
    "sklearn",
    "setfit",
    "transformers",
)


def measure(statement: str) -> dict:
    code = (
        "import sys, time, json\n"
        f"t = time.perf_counter(); exec({statement!r}); s = time.perf_counter() - t\n"
        f"print(json.dumps({{'seconds': s, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    quiet = wait_for_quiet(300)
    samples = {name: [measure(statement) for _ in range(args.runs)] for name, statement in PROBES.items()}
    payload = {**header(NAME, args.runs), "wait_for_quiet": quiet, "goal_ratio": GOAL_RATIO}
    payload["median_s"] = {name: round(median([s["seconds"] for s in runs]), 3) for name, runs in samples.items()}
    payload["heavy_libraries_imported"] = {name: runs[-1]["heavy"] for name, runs in samples.items()}
    payload["ratio_definitions_to_dagster"] = round(
        payload["median_s"]["import definitions"] / payload["median_s"]["import dagster"], 2
    )
    return publish(NAME, payload, render)


def render(payload: dict) -> str:
    m = payload["median_s"]
    rows = [
        [
            name,
            seconds,
            round(seconds / m["import dagster"], 2),
            ", ".join(payload["heavy_libraries_imported"][name]) or "none",
        ]
        for name, seconds in m.items()
    ]
    ratio = payload["ratio_definitions_to_dagster"]
    return markdown_table(["probe", "median (s)", "x import dagster", "heavy libraries loaded"], rows) + (
        f"\n\n`import definitions` is {ratio}x `import dagster` "
        f"(goal <= {payload['goal_ratio']}x: {'met' if ratio <= payload['goal_ratio'] else 'MISSED'})"
    )


if __name__ == "__main__":
    sys.exit(main())
