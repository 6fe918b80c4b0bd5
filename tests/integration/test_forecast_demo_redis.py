"""The forecast demo with LAKEHOUSE_REDIS_URL set (the Redis resource's URL is an `EnvVar`): it uses that Redis
when it answers, and a private redis-server, saying which URL it could not reach, when it does not."""

import pytest

from lakehouse.common.local_servers import free_port

pytestmark = pytest.mark.integration


def test_the_configured_redis_from_the_environment_is_used_when_it_answers(monkeypatch, redis_url):
    from demos.forecast import _redis_or_private
    from resources import default_resources

    monkeypatch.setenv("LAKEHOUSE_REDIS_URL", redis_url)
    resources = default_resources()
    said = []
    chosen, server = _redis_or_private(resources, said.append)
    assert server is None and chosen is resources and said == []


def test_an_unreachable_configured_redis_gives_a_private_one_and_says_which_url_failed(monkeypatch):
    from demos.forecast import _redis_or_private
    from resources import default_resources

    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("LAKEHOUSE_REDIS_URL", dead)
    said = []
    chosen, server = _redis_or_private(default_resources(), said.append)
    try:
        assert server is not None and chosen["redis"].url == server.url
        assert said == [said[0]] and f"no Redis at {dead}" in said[0]
        client = chosen["redis"].client()
        assert client.ping()
        client.close()
    finally:
        server.stop()
