"""The one Dagster code location: every case's assets, checks, jobs, schedules and sensors.

`defs` is built when Dagster (or a test) asks for it, not at import: importing this module
costs no more than importing Dagster, and the dbt manifest and each case's modules are read
once, by whoever loads the code location.

A case whose section of the sources file, or whose settings, are wrong does not stop the others:
it loads as one placeholder asset (`<case>/settings_error`) whose description and metadata carry
the error (file, case, key, what is allowed), and its jobs, schedules and sensors are left out
until the file is fixed.
"""

import importlib
import os

import dagster as dg

# Before any case loads an OpenMP runtime (LightGBM, XGBoost, scikit-learn and torch share the first libgomp loaded,
# which reads this once): threads waiting for each other sleep rather than spin. On the shared 2 cores at load 12-16,
# a triage training step took 11-23 s with spinning threads and 2.8-4.1 s without. The user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CASES = ("churn", "forecast", "fraud", "triage")

# Each step of a run gets its own process (the multiprocess executor), forked from a server that has already
# loaded the code location and the libraries the steps import on demand, instead of a fresh interpreter importing
# them again: with fresh interpreters a step of the replay's 4-6 runs a simulated day spent 8-15 s importing
# dagster-dbt, MLflow, LightGBM and scikit-learn and building the definitions before its first row.
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {
        "start_method": {
            "forkserver": {
                "preload_modules": ["definitions_preload", "mlflow", "lightgbm", "sklearn", "scipy.stats", "pyarrow"]
            }
        }
    }
)


def broken_case(case: str, error: Exception) -> dg.AssetsDefinition:
    """The placeholder of a case that cannot load: what is wrong, where, in the UI."""
    message = str(error)

    @dg.asset(
        key=[case, "settings_error"],
        group_name=case,
        description=f"The {case} case cannot load: {message}",
        metadata={"error": dg.MetadataValue.text(message), "error_type": type(error).__name__},
    )
    def settings_error() -> None:
        raise dg.Failure(f"the {case} case cannot run until its sources file section or settings are fixed: {message}")

    return settings_error


def _case_modules(case: str):
    """The case's asset and operations modules, or the settings error that stops them from loading."""
    from lakehouse.common.settings import SettingsError
    from lakehouse.common.sources import SourcesError

    try:
        return importlib.import_module(f"assets.{case}"), importlib.import_module(f"sensors.{case}"), None
    except (SettingsError, SourcesError) as exc:
        return None, None, exc


def _platform_operations(case: str) -> tuple[list, list, list, list]:
    """What the platform adds to a case that loaded: its freshness and online-store checks, the freshness
    schedules, the store watch and the source-change sensor (with their jobs)."""
    from assets.freshness import checks
    from sensors import freshness, sources

    jobs, schedules, sensors = freshness.operations(case)
    refresh_jobs, source_sensors = sources.operations(case)
    return checks(case), jobs + refresh_jobs, schedules, sensors + source_sensors


@dg.definitions
def defs() -> dg.Definitions:
    from resources import default_resources
    from sensors.alerts import asset_check_alerts

    assets, checks, jobs, schedules, sensors = [], [], [], [], [asset_check_alerts]
    for case in CASES:
        case_assets, operations, error = _case_modules(case)
        if error is not None:
            assets.append(broken_case(case, error))
            continue
        platform_checks, platform_jobs, platform_schedules, platform_sensors = _platform_operations(case)
        assets += case_assets.ASSETS
        checks += case_assets.CHECKS + platform_checks
        jobs += operations.JOBS + platform_jobs
        schedules += operations.SCHEDULES + platform_schedules
        sensors += operations.SENSORS + platform_sensors
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=default_resources(),
        executor=STEP_EXECUTOR,
    )
