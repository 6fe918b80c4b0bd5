"""The churn case end to end with its lake on an S3-compatible server (moto, started on loopback by the
test): raw tables, dbt staging and point-in-time features, training, gate, promotion, weekly scores
and monitoring. dbt's DuckDB reads the lake through fsspec (s3fs): no DuckDB extension download."""

import dagster as dg
import pytest

from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import TINY, mondays

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def s3_lake(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "lakehouse",
        "AWS_SECRET_ACCESS_KEY": "lakehouse",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("lakehouse-test")
    yield "s3://lakehouse-test/lake", fs
    server.stop()


def test_the_churn_graph_runs_with_its_lake_on_object_storage(lakehouse_home, s3_lake, monkeypatch):
    from assets.churn import ASSETS, CHECKS
    from assets.churn.features import churn_staging
    from assets.churn.raw import GeneratorConfig, churn_raw
    from lakehouse.churn.world import WorldConfig

    lake_url, fs = s3_lake
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0")  # a tiny world: the gate is not what this test is about
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_RECALL_TOP", "0")
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home), lake_url=lake_url)}

    def run(selection, **kwargs):
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **kwargs,
        )
        assert result.success, [str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
        return result

    generator = GeneratorConfig(customers=TINY.customers, seed=TINY.seed)
    run(dg.AssetSelection.assets(churn_raw, churn_staging), run_config=dg.RunConfig(ops={"churn_raw": generator}))
    world = WorldConfig().with_(customers=TINY.customers)
    weeks = mondays(world.first_snapshot, world.end_date)[-60:]
    run(
        "key:churn/churn_features",
        tags={"dagster/asset_partition_range_start": weeks[0], "dagster/asset_partition_range_end": weeks[-1]},
    )
    run("key:churn/churn_labels or key:churn/training_set or key:churn/model or key:churn/champion_model")
    scored = weeks[-8:-6]  # weeks whose 30-day labels have matured: live performance has something to report
    for week in scored:
        run("key:churn/churn_scores", partition_key=week)
    run("key:churn/live_performance")

    stored = {p.split("lake/", 1)[1] for p in fs.find("lakehouse-test/lake")}
    assert {
        "churn/customers/data.parquet",
        "churn/training_set/data.parquet",
        "churn/live_performance/data.parquet",
    } <= stored
    assert {f"churn/churn_scores/snapshot_date={w}/data.parquet" for w in scored} <= stored
    assert not (lakehouse_home / "lake").exists()  # nothing of the lake was written locally
