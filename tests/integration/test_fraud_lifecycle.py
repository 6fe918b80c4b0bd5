"""The fraud model's life through its assets, on a small generated world and a real Dagster instance:

- a first model refused by its floors leaves no champion, yet scores in shadow (marked, never published) and
  has its evaluation report; any version is evaluated on any window by run config;
- a weak model accepted as the first champion, then a challenger better beyond noise on the test payments
  after both cut-offs: promoted, and the decision service answers with it;
- then a challenger worse beyond noise: refused, the champion stays, the run is green, the alert sensor raises
  a WARN alert, and the gate's report shows both models' figures with the interval.

Each step changes the settings the way a user would (environment variables read by `sources.settings`).
The states the steps start from (the refused first model; the promoted v3) are built once per module, and each
test works on its own copy of the home, so every test passes alone and in any order."""

import asyncio
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from demos import collect_alerts, range_tags
from lakehouse.common.alerts import read_alerts
from lakehouse.common.registry import CHALLENGER, CHAMPION
from lakehouse.fraud.settings import FraudSettings
from lakehouse.fraud.world import WorldConfig, generate_day
from tests.conftest import make_home
from tests.integration.fraud_helpers import request_body, running_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = FraudSettings().cascade.registered_model_name
TRAINING = "key:fraud/rule_lists or key:fraud/model or key:fraud/champion_model or key:fraud/rule_lists_online"
REFUSED_BY_FLOORS = {"LAKEHOUSE_FRAUD_GATE__MIN_RECALL": "0.9999"}
# Two trees per layer: a cascade that ranks far worse, accepted only where the floors and the rules-only
# comparison are relaxed (the rules flag almost nothing, so their precision is not decisive).
WEAK = {"LAKEHOUSE_FRAUD_CASCADE__LGBM_ROUNDS": "2", "LAKEHOUSE_FRAUD_CASCADE__XGB_ROUNDS": "2"}
WEAK_ACCEPTED = {
    **WEAK,
    "LAKEHOUSE_FRAUD_GATE__MIN_RECALL": "0",
    "LAKEHOUSE_FRAUD_GATE__MIN_PRECISION": "0",
    "LAKEHOUSE_FRAUD_RULES__BASELINE_FLAG_THRESHOLD": "0.99",
}


class Home:
    def __init__(self, home, instance, resources, monkeypatch):
        from assets.fraud import ASSETS, CHECKS

        self.home, self.instance, self.resources, self.mp = home, instance, resources, monkeypatch
        self.definitions = [*ASSETS, *CHECKS]
        self.set: list[str] = []

    def materialize(self, selection: str, env: dict | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        for name in self.set:
            self.mp.delenv(name, raising=False)
        self.set = list(env or {})
        for name, value in (env or {}).items():
            self.mp.setenv(name, value)
        return dg.materialize(
            self.definitions,
            selection=selection,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
            **kwargs,
        )

    def copy(self, tmp_path: Path, monkeypatch) -> "Home":
        """A private copy of this home (lake, MLflow store, Dagster instance) for a test that changes it: the
        module's states stay as built for every other test, in any order. The copy's MLflow runs still point at
        the original's artifacts (MLflow keeps absolute locations), as in tests/e2e/case.py's `Built.copy`; a
        run in the copy writes its own run id's folder there, which no other test reads."""
        from resources import LakehouseResource

        home = shutil.copytree(self.home, tmp_path / "home")
        monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        copied = Home(home, instance, {**self.resources, "lakehouse": LakehouseResource(home=str(home))}, monkeypatch)
        copied.days = self.days
        return copied

    def clear_settings(self) -> None:
        """The settings of the last run undone (a template leaves none to the tests that copy it)."""
        for name in self.set:
            self.mp.delenv(name, raising=False)
        self.set = []

    def registry(self):
        return self.resources["mlflow"].registry(self.resources["lakehouse"])

    @property
    def lake(self):
        return self.resources["lakehouse"].lake


def _gate(result: dg.ExecuteInProcessResult):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate")


def _materialized(result: dg.ExecuteInProcessResult, node: str) -> list:
    return result.asset_materializations_for_node(node)


@pytest.fixture(scope="module")
def world(tmp_path_factory, redis_server):
    """A home with 9 days of a 2,500-payment world, their features, and the first (refused) training: the
    template each test copies (`refused` or `promoted`), never changed after it is built."""
    from resources import LakehouseResource, RedisResource, default_resources

    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("lifecycle") / "home", mp)
        mp.setenv("LAKEHOUSE_FRAUD_SCALE", "2500")
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        resources = {
            **default_resources(),
            "lakehouse": LakehouseResource(home=str(home)),
            "redis": RedisResource(url=redis_server.url),
        }
        built = Home(home, instance, resources, mp)
        days = WorldConfig.from_env().day_keys
        assert built.materialize("key:fraud/transactions", tags=range_tags(days[0], days[-1])).success
        assert built.materialize("key:fraud/transaction_features").success
        built.first = built.materialize(TRAINING, env=REFUSED_BY_FLOORS)
        built.days = days
        built.clear_settings()
        instance.dispose()
        yield built


@pytest.fixture(scope="module")
def promoted(world, tmp_path_factory):
    """From a copy of `world`: a weak model accepted as the first champion (v2), then a better one promoted (v3),
    built once per module; the runs and v2's alias are kept for the promotion test, which checks them."""
    with pytest.MonkeyPatch.context() as mp:
        built = world.copy(tmp_path_factory.mktemp("promoted"), mp)
        built.weak = built.materialize(TRAINING, env=WEAK_ACCEPTED)
        built.champion_after_weak = built.registry().alias_version(NAME, CHAMPION)
        built.better = built.materialize(TRAINING)
        built.clear_settings()
        built.instance.dispose()
    return built


@pytest.fixture
def refused(world, tmp_path, monkeypatch):
    """This test's own copy of the home with the refused first model."""
    home = world.copy(tmp_path, monkeypatch)
    yield home
    home.instance.dispose()


@pytest.fixture
def champion_v3(promoted, tmp_path, monkeypatch):
    """This test's own copy of the home with v3 promoted over v2."""
    home = promoted.copy(tmp_path, monkeypatch)
    yield home
    home.instance.dispose()


def test_a_refused_first_model_scores_in_shadow_and_has_its_report(world, refused):
    first = world.first
    assert first.success  # a refusal is an outcome: the run is green
    gate = _gate(first)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("no champion; v1 refused") and "recall" in gate.description
    registry = refused.registry()
    assert registry.alias_version(NAME, CHAMPION) is None and registry.alias_version(NAME, CHALLENGER) == "1"
    assert not _materialized(first, "fraud__rule_lists_online")  # a shadow model's rules are never published
    champion = _materialized(first, "fraud__champion_model")[0].metadata
    assert champion["champion_version"].value == "none" and "v1 refused" in champion["outcome"].value

    test_days = world.days[-3:]
    scored = refused.materialize("key:fraud/scores", tags=range_tags(test_days[0], test_days[-1]))
    assert scored.success and _materialized(scored, "fraud__scores")[0].metadata["shadow"].value is True
    rows = refused.lake.read_partitions("fraud", "scores", "day", test_days)
    assert rows["shadow"].all() and set(rows["model_version"].unique()) == {"1"}
    assert {"ts", "customer_id", "merchant_id", "layer", "is_fraud", "score"} <= set(rows.columns)
    report = refused.materialize("key:fraud/evaluation")
    meta = _materialized(report, "fraud__evaluation")[0].metadata
    assert report.success and meta["shadow"].value is True and meta["model_version"].value == "1"
    assert meta["roc_auc"].value > 0.9 and meta["scores"].value == "stored scores"
    # the decision log has nothing to check against without a champion: it says so and skips
    log = refused.materialize("key:fraud/decision_log", partition_key=test_days[-1])
    assert log.success and not _materialized(log, "fraud__decision_log")
    # any version on any window, without promoting it
    window = {"start": world.days[-2], "end": world.days[-1], "version": "1"}
    chosen = refused.materialize("key:fraud/evaluation", run_config={"ops": {"fraud__evaluation": {"config": window}}})
    meta = _materialized(chosen, "fraud__evaluation")[0].metadata
    assert meta["window"].value == f"{window['start']} .. {window['end']}" and meta["scores"].value == "scored now"
    assert registry.alias_version(NAME, CHAMPION) is None


def test_a_challenger_better_beyond_noise_is_promoted_and_served(promoted, champion_v3, redis_server):
    weak = promoted.weak
    assert weak.success and _gate(weak).passed
    registry = champion_v3.registry()
    assert promoted.champion_after_weak == "2"
    assert _materialized(weak, "fraud__rule_lists_online")[0].metadata["champion_version"].value == "2"

    better = promoted.better
    gate = _gate(better)
    assert better.success and gate.passed and registry.alias_version(NAME, CHAMPION) == "3"
    comparisons = {r.data["against"]: r.data for r in gate.metadata["comparisons"].value.records}
    versus = comparisons["champion v2"]
    assert versus["status"] == "better beyond noise" and float(versus["low"]) > 0
    assert float(versus["challenger"]) > float(versus["other"])

    async def served() -> str:
        async with running_service(champion_v3.home, redis_server.url) as (client, _):
            row = generate_day(WorldConfig.from_env(), date.fromisoformat(champion_v3.days[-1])).row(0, named=True)
            response = await client.post("/fraud/decisions", json={**request_body(row), "tx_id": "served-1"})
            assert response.status_code == 200
            return response.json()["model_version"]

    assert asyncio.run(served()) == "3"


def test_a_challenger_worse_beyond_noise_is_refused_the_run_stays_green_and_a_warn_alert_is_raised(champion_v3):
    world = champion_v3  # this test's own copy of the home with v3 promoted
    assert world.registry().alias_version(NAME, CHAMPION) == "3"  # the state this test starts from
    worse = world.materialize(TRAINING, env=WEAK)
    assert worse.success  # NO-GO is an outcome
    gate = _gate(worse)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("kept v3; v4 refused")
    registry = world.registry()
    assert registry.alias_version(NAME, CHAMPION) == "3" and registry.alias_version(NAME, CHALLENGER) == "4"
    comparisons = {r.data["against"]: r.data for r in gate.metadata["comparisons"].value.records}
    versus = comparisons["champion v3"]  # both models' figures on the same rows, and the interval
    assert versus["status"] == "worse beyond noise" and float(versus["high"]) < 0
    assert float(versus["challenger"]) < float(versus["other"]) and "frauds" in versus["support"]
    champion = _materialized(worse, "fraud__champion_model")[0].metadata
    assert champion["champion_version"].value == "3" and champion["outcome"].value.startswith("kept v3; v4 refused")
    history = {r.data["version"]: r.data for r in champion["history"].value.records}
    assert history[4]["gate"] == "failed" and history[3]["gate"] == "passed" and history[4]["trained_until"]
    published = _materialized(worse, "fraud__rule_lists_online")[0].metadata
    assert published["champion_version"].value == "3"  # the refused model's rules are not published

    collect_alerts(world.instance, world.resources)
    alerts = read_alerts(world.home / "ops.sqlite").filter(pl.col("check_name") == "promotion_gate")
    warned = alerts.filter(pl.col("description").str.starts_with("kept v3; v4 refused"))
    assert warned.height == 1 and warned["severity"][0] == "WARN" and warned["case_name"][0] == "fraud"
