"""What a person sees in the Dagster UI after the demo, checked through the UI's own GraphQL API.

    python -m demos.ui_check [--groups churn,forecast,fraud,triage]   # on $LAKEHOUSE_HOME

Starts `dagster-webserver` on the project home, then checks that every asset of the groups has
been materialized, every asset check has a result, and every report asset (tag
`lakehouse/report`) shows a table and a chart on its page without a click: the UI shows a table
entry inline, and a Markdown entry inline only under 1,000 characters (a chart fits as an SVG).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from demos import ROOT
from lakehouse.common.display import INLINE_MARKDOWN_LIMIT

QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    tags { key value }
    assetMaterializations(limit: 1) {
      metadataEntries { label __typename ... on MarkdownMetadataEntry { mdStr } ... on TableMetadataEntry { label } }
    }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""
CHECK_EXECUTIONS = """
query ($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) { status }
}
"""
LOCATION = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
REPORT_TAG = "lakehouse/report"
CASE_GROUPS = ("churn", "forecast", "fraud", "triage")


@contextmanager
def webserver(home: Path, timeout_s: float = 240):
    """`dagster-webserver` on the home's instance, on a free port; yields its GraphQL URL once the code
    location is loaded."""
    import port_for

    port = port_for.select_random()
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    command = [
        str(Path(sys.executable).parent / "dagster-webserver"),
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                entries = graphql(url, LOCATION)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    if entries[0]["locationOrLoadError"]["__typename"] == "PythonError":
                        raise RuntimeError(
                            f"the code location failed to load: {entries[0]['locationOrLoadError']['message']}"
                        )
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"dagster-webserver did not load the code location within {timeout_s} s")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    answer = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=60).json()
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def problems(url: str, groups: tuple[str, ...]) -> list[str]:
    """What a person would miss in the UI: unmaterialized assets, checks without a result, reports without
    table or image."""
    found = []
    for node in graphql(url, QUERY)["assetNodes"]:
        if node["groupName"] not in groups:
            continue
        key = "/".join(node["assetKey"]["path"])
        materializations = node["assetMaterializations"]
        if not materializations:
            found.append(f"{key}: never materialized")
            continue
        for check in (node["assetChecksOrError"] or {}).get("checks", []):
            executions = graphql(
                url, CHECK_EXECUTIONS, {"key": {"path": node["assetKey"]["path"]}, "name": check["name"]}
            )["assetCheckExecutions"]
            if not executions or executions[0]["status"] in ("PLANNED", "IN_PROGRESS"):
                found.append(f"{key}: check {check['name']} has no result")
        if any(t["key"] == REPORT_TAG for t in node["tags"]):
            entries = materializations[0]["metadataEntries"]
            if not any(e["__typename"] == "TableMetadataEntry" for e in entries):
                found.append(f"{key}: report without a table")
            inline = [e["mdStr"] for e in entries if e.get("mdStr") and len(e["mdStr"]) < INLINE_MARKDOWN_LIMIT]
            if not any("data:image/" in md for md in inline):
                found.append(f"{key}: report without a chart shown inline")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default=",".join(CASE_GROUPS))
    args = parser.parse_args()
    home = Path(os.environ.get("LAKEHOUSE_HOME", ROOT / ".lakehouse")).resolve()
    with webserver(home) as url:
        found = problems(url, tuple(g for g in args.groups.split(",") if g))
    print(
        "\n".join(found)
        if found
        else "UI check: every asset materialized, every check with a result, every report with its table and chart"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
