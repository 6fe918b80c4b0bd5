"""The forecast model's life through the graph, on a user's files: a refused first model forecasts in shadow
(evaluated, never published); a worse challenger leaves the champion in place with a green run and a WARN
alert; a better one beyond noise is promoted and the lookup serves it.

The versions differ only by their LightGBM settings (every segment routed to LightGBM: `selection_alpha` 0), so
which one is better is known: one tree is close to a constant, fifteen are fair, sixty are good."""

import json

import dagster as dg
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from lakehouse.common import promotion
from lakehouse.common.alerts import read_alerts
from lakehouse.common.home import LakehouseHome
from lakehouse.common.lake import Lake
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.forecast import world as gen
from lakehouse.forecast.publish import current
from lakehouse.forecast.reconcile import METHODS
from lakehouse.forecast.settings import ForecastSettings
from tests.integration.forecast_helpers import MASTER, materialize, store_keys, write_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WORLD = gen.WorldConfig(stores=2, skus=8, seed=5, years=1.0)
SETTINGS = {
    "evaluation": {"test": "7d", "validation": "7d"},
    "models": {"selection_alpha": 0.0, "stat_window": "4w"},
    "gate": {"comparison": {"min_support": 10}},  # 16 series
}


def lightgbm(trees: int, rate: float) -> dict:
    return {
        "objective": "tweedie",
        "n_estimators": trees,
        "learning_rate": rate,
        "num_leaves": 15,
        "min_child_samples": 10,
        "n_jobs": 1,
        "verbosity": -1,
    }


BAD, FAIR, GOOD = lightgbm(1, 0.01), lightgbm(15, 0.1), lightgbm(60, 0.1)
WEEKLY = "key:forecast/model or key:forecast/backtest or key:forecast/champion_model"


class Graph:
    def __init__(self, home, monkeypatch, redis_url):
        self.home, self.monkeypatch, self.redis_url = home, monkeypatch, redis_url
        self.instance = dg.DagsterInstance.get()

    def run(self, selection: str, **kwargs) -> dg.ExecuteInProcessResult:
        return materialize(self.home, selection, instance=self.instance, **kwargs)

    def every_store(self) -> dict:
        keys = store_keys(self.instance)
        return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}

    def refit(self, settings: dict) -> dg.ExecuteInProcessResult:
        self.monkeypatch.setenv("LAKEHOUSE_FORECAST_MODELS__LIGHTGBM", json.dumps(settings))
        result = self.run(WEEKLY)
        assert result.success, "a refused challenger is an outcome: the weekly run stays green"
        return result

    def nightly(self) -> dg.ExecuteInProcessResult:
        result = self.run("key:forecast/store_forecasts", tags=self.every_store())
        assert result.success
        return result

    def publication_tick(self) -> dg.RunRequest:
        """The publication sensor's tick, and the run it asks for."""
        from sensors.forecast import forecast_publish_when_stores_done

        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        request = forecast_publish_when_stores_done(context)
        self.cursor = context.cursor
        assert isinstance(request, dg.RunRequest)
        keys = request.asset_selection or [
            dg.AssetKey(["forecast", n]) for n in ("operational_forecast", "published_forecast", "live_accuracy")
        ]
        selection = " or ".join(f"key:{k.to_user_string()}" for k in keys)
        assert self.run(selection).success
        return request

    cursor = None


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    events = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in events[0].metadata.items()} if events else {}


def gate_of(result: dg.ExecuteInProcessResult):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "challenger_gate")


def comparisons(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    rows = metadata(result, "forecast__backtest")["comparisons"].records
    return {r.data["against"]: r.data for r in rows}


def lookup(home, redis_url: str) -> dict:
    from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

    settings = ServingSettings(api_key="k", home=LakehouseHome(home), redis_url=redis_url, cases=("forecast",))
    store, sku = gen.store_keys(WORLD)[0], "sku00001"
    with TestClient(create_app(settings)) as http:
        answer = http.get(f"/forecast/stores/{store}/skus/{sku}", headers={API_KEY_HEADER: "k"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def alert_tick(graph: Graph) -> pl.DataFrame:
    """One tick of the alert sensor over the case's checks; the alerts table after it."""
    from assets.forecast import ASSETS, CHECKS
    from resources import AlertSinkResource, LakehouseResource, default_resources
    from sensors.alerts import asset_check_alerts

    resources = {
        **default_resources(),
        "lakehouse": LakehouseResource(home=str(graph.home)),
        "alerts": AlertSinkResource(),
    }
    definitions = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, sensors=[asset_check_alerts], resources=resources)
    asset_check_alerts(dg.build_sensor_context(instance=graph.instance, resources=resources, definitions=definitions))
    return read_alerts(LakehouseHome(graph.home).ops_db)


def test_shadow_first_model_then_a_worse_challenger_kept_out_and_a_better_one_promoted(
    tmp_path, lakehouse_home, monkeypatch, redis_url
):
    write_source(tmp_path / "user", WORLD, monkeypatch, SETTINGS)
    monkeypatch.setenv("LAKEHOUSE_REDIS_URL", redis_url)
    graph = Graph(lakehouse_home, monkeypatch, redis_url)
    assert graph.run(MASTER).success
    assert graph.run("key:forecast/sales", tags=graph.every_store()).success
    store = redis.Redis.from_url(redis_url)

    # v1, close to a constant, is worse than the seasonal naive: no champion, its forecasts in shadow.
    first = graph.refit(BAD)
    gate = gate_of(first)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("no champion; v1 refused") and "seasonal naive" in gate.description
    assert metadata(first, "forecast__champion_model")["champion_version"] == "none"
    night = graph.nightly()
    shadow = metadata(night, "forecast__store_forecasts")
    assert shadow["shadow"] is True and shadow["model_version"] == "1"
    lake = Lake(str(LakehouseHome(lakehouse_home).lake))
    stored = lake.read_partitions("forecast", "store_forecasts", "origin")
    assert stored["shadow"].all() and set(stored["model_version"]) == {"1"}
    request = graph.publication_tick()
    assert dg.AssetKey(["forecast", "published_forecast"]) not in request.asset_selection
    assert (
        graph.run("key:forecast/published_forecast").asset_materializations_for_node("forecast__published_forecast")
        == []
    )
    assert current(store)["run_id"] is None, "shadow forecasts never reach Redis"
    operational = lake.read("forecast", "operational_forecast")
    assert operational["shadow"].all(), "the evaluation runs on the shadow forecasts"
    assert metadata(first, "forecast__backtest")["wape_d7"].endswith("%"), "and the backtest report is there"

    # v2, fair, beats the seasonal naive: champion, published, served.
    second = graph.refit(FAIR)
    assert gate_of(second).passed
    assert metadata(second, "forecast__champion_model")["champion_version"] == "2"
    graph.nightly()
    graph.publication_tick()
    assert lookup(lakehouse_home, redis_url)["model_version"] == "2"

    # v3, bad again, is worse than v2's configuration refitted at the same cut-off: v2 stays, a WARN alert.
    third = graph.refit(BAD)
    gate = gate_of(third)
    assert not gate.passed and gate.description.startswith("kept v2; v3 refused")
    versus = comparisons(third)["champion v2"]
    assert versus["status"] == "worse beyond noise" and float(versus["high"]) < 0 < float(versus["other"])
    assert "refitted at the challenger's cut-off" in versus["basis"]
    champion = metadata(third, "forecast__champion_model")
    assert champion["champion_version"] == "2" and "v3 refused" in champion["outcome"]
    home = LakehouseHome(lakehouse_home)
    registry, name = Registry(home.mlflow_uri, home.mlflow_artifacts), ForecastSettings().model_name
    assert registry.alias_version(name, CHAMPION) == "2" and registry.alias_version(name, CHALLENGER) == "3"
    assert promotion.recorded_verdict(registry, name, "3")[0] == "failed"  # the refusal is recorded on v3
    alerts = alert_tick(graph).filter(pl.col("check_name") == "challenger_gate")
    assert alerts.height >= 1 and set(alerts["severity"]) == {"WARN"}
    assert any("kept v2; v3 refused" in d for d in alerts["description"])

    # v4, good, is better than v2's configuration beyond noise: promoted, and the lookup follows.
    fourth = graph.refit(GOOD)
    versus = comparisons(fourth)["champion v2"]
    assert gate_of(fourth).passed and versus["status"] == "better beyond noise" and float(versus["low"]) > 0
    assert metadata(fourth, "forecast__champion_model")["champion_version"] == "4"
    graph.nightly()
    graph.publication_tick()
    assert lookup(lakehouse_home, redis_url)["model_version"] == "4"
    store.close()
    # The night was reconciled by the method v4's backtest chose for the operational horizon.
    chosen = metadata(fourth, "forecast__backtest")["reconciliation_operational"]
    operational = lake.read("forecast", "operational_forecast")
    assert chosen in METHODS and operational["method"].unique().to_list() == [chosen]
