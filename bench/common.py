"""Shared helpers of the benchmarks: measured subprocesses, machine/git info, result files.

Every measured repetition runs in a fresh process started here; its wall time is taken
around the process and its peak RSS comes from `os.wait4` (the kernel's high-water mark of
the child and of every descendant it waited for).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
GIB = 1024**3
MIB = 1024**2

# Variables of the developer's shell that would point a benchmark home somewhere else.
_FOREIGN_ENV = (
    "LAKEHOUSE_LAKE_URL",
    "MLFLOW_TRACKING_URI",
    "CRM_BASE_URL",
    "CRM_TOKEN",
    "LAKEHOUSE_ALERT_WEBHOOK_URL",
    "LAKEHOUSE_SCALE",
    "LAKEHOUSE_SEED",
    "DBT_TARGET_PATH",
    "DBT_LOG_PATH",
)


# --- machine, git, load -------------------------------------------------------------------


def _meminfo_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "total_ram_bytes": _meminfo_total(),
        "total_ram_gib": round(_meminfo_total() / GIB, 2),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def git_info() -> dict:
    def git(*args: str) -> str:
        # Not .strip(): porcelain lines start with a status column that may be a space.
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.rstrip("\n")

    status = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    outside_bench = [line for line in status if not line[3:].startswith("bench/")]
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status),
        # The benchmark's own files are uncommitted by construction; this says whether the
        # measured code itself differs from the commit.
        "dirty_outside_bench": bool(outside_bench),
        "changed_files": [line[3:] for line in status][:50],
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_cpu_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait_s: float = 600, threshold: float = 0.15, window_s: float = 5.0) -> dict:
    """Wait until the machine's busy share (all cores) stays under `threshold` for a window.

    Other people may be running tests on this machine; this waits for a lull, up to
    `max_wait_s`, and says how long it waited and how busy the machine was.
    """
    ncpu = os.cpu_count() or 1
    started = time.perf_counter()
    while True:
        b0 = busy_cpu_seconds()
        time.sleep(window_s)
        share = (busy_cpu_seconds() - b0) / (window_s * ncpu)
        waited = time.perf_counter() - started
        if share < threshold or waited >= max_wait_s:
            return {
                "waited_s": round(waited, 1),
                "busy_share_last_window": round(share, 3),
                "quiet": share < threshold,
                "load_average": load_average(),
            }


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --- measured subprocesses ----------------------------------------------------------------


@dataclass
class Measured:
    """One measured process: wall time around it, its peak RSS, and what it reported."""

    wall_s: float
    max_rss_bytes: int
    returncode: int
    result: dict = field(default_factory=dict)
    cpu_s: float = 0.0  # user + system time of the process and its waited-for descendants
    # CPU time the rest of the machine used meanwhile (another user's tests): a contention flag.
    foreign_cpu_s: float = 0.0

    @property
    def foreign_share(self) -> float:
        """Foreign CPU time as a share of the machine's capacity during the measurement."""
        return self.foreign_cpu_s / (self.wall_s * (os.cpu_count() or 1)) if self.wall_s else 0.0

    log_tail: str = ""
    killed: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.killed is None


def _tree_rss_bytes(pid: int) -> int:
    """Current RSS of a process and all its descendants (for the safety watchdog only)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(
    args: list[str],
    *,
    env: dict | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    result_path: str | Path | None = None,
    timeout_s: float | None = None,
    rss_limit_bytes: int | None = None,
) -> Measured:
    """Run `args` in a new session; wall time, peak RSS (wait4), optional JSON result file.

    A watchdog kills the process group (by its own id) when it outlives `timeout_s` or
    when the tree's RSS passes `rss_limit_bytes`, to keep a shared machine usable.
    """
    with open(log_path, "w+b") if log_path else tempfile.TemporaryFile() as log_file:
        busy0 = busy_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        killed: list[str] = []
        done = threading.Event()

        def watchdog() -> None:
            while not done.wait(0.5):
                reason = None
                if timeout_s is not None and time.perf_counter() - started > timeout_s:
                    reason = f"timeout after {timeout_s:.0f} s"
                elif rss_limit_bytes is not None and _tree_rss_bytes(proc.pid) > rss_limit_bytes:
                    reason = f"RSS above {rss_limit_bytes / GIB:.1f} GiB"
                if reason:
                    killed.append(reason)
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    return

        watcher = threading.Thread(target=watchdog, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        busy = busy_cpu_seconds() - busy0
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        log_file.seek(max(0, log_file.seek(0, os.SEEK_END) - 4000))
        tail = log_file.read().decode(errors="replace")
    result = {}
    if result_path and Path(result_path).exists():
        result = json.loads(Path(result_path).read_text())
    # ru_maxrss is in KiB on Linux.
    return Measured(
        wall_s=wall,
        max_rss_bytes=usage.ru_maxrss * 1024,
        returncode=proc.returncode,
        result=result,
        log_tail=tail,
        killed=killed[0] if killed else None,
        cpu_s=usage.ru_utime + usage.ru_stime,
        foreign_cpu_s=max(0.0, busy - (usage.ru_utime + usage.ru_stime)),
    )


def run_worker(module: str, worker_args: list[str], *, env: dict, workdir: Path, tag: str, **kwargs) -> Measured:
    """`python -m <module> --worker ...` in a fresh process; the worker writes JSON to --out."""
    out = workdir / f"{tag}.json"
    log = workdir / f"{tag}.log"
    out.unlink(missing_ok=True)
    return run_measured(
        [PYTHON, "-m", module, *worker_args, "--out", str(out)],
        env=env,
        cwd=ROOT,
        log_path=log,
        result_path=out,
        **kwargs,
    )


def emit(out: str | Path, payload: dict) -> None:
    """A worker's answer to its parent."""
    Path(out).write_text(json.dumps(payload, default=str, indent=1))


def clean_env(**overrides: str) -> dict:
    """The current environment without variables that would redirect the benchmark home."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env.setdefault("PYTHONHASHSEED", "0")
    env["GIT_PYTHON_REFRESH"] = "quiet"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env.update(overrides)
    return env


# --- results ----------------------------------------------------------------------------------


def header(name: str, runs: int) -> dict:
    return {
        "benchmark": name,
        "date_utc": utc_now(),
        "runs": runs,
        "statistic": f"median of {runs} runs",
        "machine": machine_info(),
        "git": git_info(),
        "load_average_at_start": load_average(),
    }


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "load_average_at_end": load_average()}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(name: str, payload: dict, render) -> int:
    """Write the results file and print the Markdown table; the benchmark's exit code."""
    path = write_results(name, payload)
    print()
    print(render(payload))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0
