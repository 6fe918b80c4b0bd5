"""The dbt project as Dagster sees it: asset keys, groups and owners of its models."""

from collections.abc import Mapping
from typing import Any

from dagster import AssetKey
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from assets.common import OWNERS


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt models land in their case's group, under the case's key prefix, with its owner."""

    def __init__(self):
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    @staticmethod
    def _case(props: Mapping[str, Any]) -> str:
        return (
            props.get("meta", {}).get("case") or props.get("config", {}).get("meta", {}).get("case") or props["fqn"][1]
        )

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return AssetKey([self._case(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self._case(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return OWNERS.get(self._case(dbt_resource_props))
