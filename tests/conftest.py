import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def lakehouse_home(tmp_path, monkeypatch):
    """An empty project home with its own Dagster instance (pool limits from deploy/dagster.yaml)."""
    return make_home(tmp_path / "home", monkeypatch)


def make_home(home: Path, monkeypatch) -> Path:
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in (
        "LAKEHOUSE_LAKE_URL",
        "MLFLOW_TRACKING_URI",
        "CRM_BASE_URL",
        "LAKEHOUSE_ALERT_WEBHOOK_URL",
        "LAKEHOUSE_REDIS_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server for the whole session (tests flush what they use)."""
    from lakehouse.common.local_servers import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def kafka_broker():
    """A private Kafka-compatible broker (Tansu, in memory) for the whole session; tests use their own topics."""
    from lakehouse.common.local_servers import KafkaBroker

    with KafkaBroker() as broker:
        yield broker


def write_sources(path: Path, cases: dict) -> Path:
    """A sources file (LAKEHOUSE_SOURCES) listing `cases` ({case: {folder: ..., tables: ..., settings: ...}})."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump({case: {**body, "folder": str(body["folder"])} for case, body in cases.items()}, sort_keys=False)
    )
    return path
