"""Dagster resources: where data lives and the outside systems the assets talk to.

Each is a ConfigurableResource whose configuration comes from environment variables (see
README, Configuration); `default_resources()` wires the embedded defaults. Resources import
the domain package only (`lakehouse`), never assets.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import PrivateAttr

from lakehouse.common.alerts import Alert, Resolution, post_webhook, record_alerts, resolve_alerts
from lakehouse.common.home import LakehouseHome
from lakehouse.common.lake import Lake
from lakehouse.common.settings import CaseSettings
from lakehouse.common.sources import SOURCES_ENV, CaseSource, Sources, load_sources

S = TypeVar("S", bound=CaseSettings)


class LakehouseResource(ConfigurableResource):
    """The project home: DuckDB warehouse, Parquet lake, operational SQLite tables. In a run, the lake knows
    the run and when it started, so a partition another run wrote meanwhile is never silently replaced."""

    home: str = ".lakehouse"
    lake_url: str | None = None  # e.g. s3://bucket/lake; default <home>/lake
    _run_id: str | None = PrivateAttr(default=None)
    _started: datetime | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run is not None else None
        self._started = datetime.now(UTC)

    @property
    def paths(self) -> LakehouseHome:
        return LakehouseHome(Path(self.home).resolve())

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_url or str(self.paths.lake), writer=self._run_id, since=self._started)

    def dbt_env(self) -> dict[str, str]:
        """Environment the dbt subprocess reads its paths from (profiles.yml, sources.yml)."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        lake = self.lake
        return {
            "LAKEHOUSE_WAREHOUSE": str(self.paths.warehouse),
            "LAKEHOUSE_LAKE_URL": lake.root,
            "LAKEHOUSE_DBT_TARGET": "object_store" if lake.remote else "local",
        }


class SourcesResource(ConfigurableResource):
    """Where each case's raw data comes from: the sources file (LAKEHOUSE_SOURCES). A case the file
    does not list runs on its synthetic generator; a listed case never falls back to it."""

    path: str | None = None

    def sources(self) -> Sources | None:
        return load_sources(self.path) if self.path else None

    def case(self, name: str) -> CaseSource | None:
        sources = self.sources()
        return sources.case(name) if sources else None

    def settings(self, settings_class: type[S]) -> S:
        """The case's production settings with this resource's sources file: the one way a run reads them."""
        return settings_class.load(self.path)


class MlflowResource(ConfigurableResource):
    """MLflow tracking + registry; defaults to the SQLite store under the project home."""

    tracking_uri: str | None = None
    artifact_root: str | None = None

    def registry(self, lakehouse: LakehouseResource):
        from lakehouse.common.registry import Registry

        paths = lakehouse.paths
        return Registry(self.tracking_uri or paths.mlflow_uri, self.artifact_root or paths.mlflow_artifacts)


class CrmResource(ConfigurableResource):
    """Where churn scores go: the local outbox table, or a Salesforce-style REST API."""

    target: str = "outbox"  # outbox | rest
    base_url: str | None = None
    token: str | None = None
    batch_size: int = 200

    def client(self, lakehouse: LakehouseResource):
        from lakehouse.churn.crm import OutboxCrm, RestCrm

        if self.target == "outbox":
            return OutboxCrm(lakehouse.paths.ops_db)
        if self.target == "rest" and self.base_url and self.token:
            return RestCrm(self.base_url, self.token, batch_size=self.batch_size)
        raise ValueError("CRM target 'rest' needs base_url and token (CRM_BASE_URL, CRM_TOKEN)")


class RedisResource(ConfigurableResource):
    """The online store (fraud features, published forecasts) and the event stream."""

    url: str = "redis://127.0.0.1:6379/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)


class AlertSinkResource(ConfigurableResource):
    """The alerts table, plus a Slack-compatible webhook when a URL is configured."""

    webhook_url: str | None = None

    def send(self, lakehouse: LakehouseResource, alerts: list[Alert]) -> list[Alert]:
        new = record_alerts(lakehouse.paths.ops_db, alerts)
        if new and self.webhook_url:
            post_webhook(self.webhook_url, new)
        return new

    def resolve(self, lakehouse: LakehouseResource, resolutions: list[Resolution]) -> list[str]:
        """Clear the open alerts that a later passing evaluation of the same check and partition answers."""
        return resolve_alerts(lakehouse.paths.ops_db, resolutions)


def _env(name: str) -> EnvVar | None:
    return EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict:
    """Embedded defaults, with the outside systems switched on by their environment variables."""
    from resources.dbt import DBT_EXECUTABLE, DBT_PROJECT, DbtResource

    os.environ.setdefault("LAKEHOUSE_HOME", ".lakehouse")
    crm = (
        CrmResource(target="rest", base_url=EnvVar("CRM_BASE_URL"), token=EnvVar("CRM_TOKEN"))
        if os.environ.get("CRM_BASE_URL")
        else CrmResource()
    )
    redis = (
        RedisResource(url=EnvVar("LAKEHOUSE_REDIS_URL")) if os.environ.get("LAKEHOUSE_REDIS_URL") else RedisResource()
    )
    return {
        "lakehouse": LakehouseResource(home=EnvVar("LAKEHOUSE_HOME"), lake_url=_env("LAKEHOUSE_LAKE_URL")),
        "sources": SourcesResource(path=_env(SOURCES_ENV)),
        "mlflow": MlflowResource(tracking_uri=_env("MLFLOW_TRACKING_URI")),
        "crm": crm,
        "alerts": AlertSinkResource(webhook_url=_env("LAKEHOUSE_ALERT_WEBHOOK_URL")),
        "redis": redis,
        "dbt": DbtResource(
            project_dir=DBT_PROJECT.project_dir, profiles_dir=DBT_PROJECT.project_dir, dbt_executable=DBT_EXECUTABLE
        ),
    }
