"""Private Redis and Kafka-compatible servers: readiness, restart on the same port, cleanup."""

from __future__ import annotations

import shutil
import socket

import pytest
import redis
from mirakuru.exceptions import AlreadyRunning

from lakehouse.common.local_servers import KafkaBroker, RedisServer, free_port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    return low, high


def test_free_port_is_unused_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert all(1024 < p < 65536 and not low <= p <= high and not _listening(p) for p in ports)


def test_redis_answers_once_started_and_keeps_its_port_across_a_restart() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "no"} and client.config_get("save") == {"save": ""}
        url, folder = server.url, server.dir

        server.stop()
        assert not server.running() and not _listening(server.port)
        server.stop()  # stopping twice is harmless

        assert server.start() is server and server.url == url
        assert client.ping() and client.get("k") is None  # a fresh, empty server on the same address
    assert not _listening(server.port) and not folder.exists()


def test_redis_options_override_the_defaults() -> None:
    with RedisServer(options=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        server.stop()
        server.start()
        assert client.get("k") == b"v"  # replayed from the append-only file before the server answered


def test_a_taken_port_is_refused_rather_than_shared() -> None:
    with RedisServer() as first:
        second = RedisServer(port=first.port)
        with pytest.raises(AlreadyRunning), second:
            pass
        shutil.rmtree(second.dir)
        assert redis.Redis.from_url(first.url, socket_timeout=5).ping()


def test_missing_redis_binary_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="redis-server"):
        RedisServer()


def test_kafka_broker_accepts_connections_on_its_bootstrap_address() -> None:
    with KafkaBroker() as broker:
        host, port = broker.bootstrap.split(":")
        assert host == "127.0.0.1" and _listening(int(port))
        broker.stop()
        assert not _listening(int(port))
        broker.start()
        assert _listening(int(port))
    assert not _listening(int(port))
