"""The dbt project as Dagster sees it: manifest, asset keys, groups and owners."""


import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetKey
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from assets.common import OWNERS

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

DBT_PROJECT = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
# The dbt installed beside this interpreter, whether or not its venv is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than a model file."""
    manifest = DBT_PROJECT.manifest_path
    newest = max(p.stat().st_mtime for p in PROJECT_DIR.rglob("*") if p.suffix in {".sql", ".yml"} and "target" not in p.parts)
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        # Parsing renders env_var() calls; any placeholder path will do, runs re-parse with the real ones.
        env = {"LAKEHOUSE_WAREHOUSE": "/dev/null", "LAKEHOUSE_LAKE_URL": "/dev/null", **os.environ}
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)],
            env=env,
            check=True,
        )
    return manifest


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt models land in their case's group, under the case's key prefix, with its owner."""

    def __init__(self):
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    @staticmethod
    def _case(props: Mapping[str, Any]) -> str:
        return props.get("meta", {}).get("case") or props.get("config", {}).get("meta", {}).get("case") or props["fqn"][1]

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return AssetKey([self._case(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self._case(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return OWNERS.get(self._case(dbt_resource_props))
