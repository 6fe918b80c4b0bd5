"""One case's demo graph built once in a fresh project home, for a module of e2e tests."""

import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import make_home


@dataclass
class Built:
    home: Path
    instance: dg.DagsterInstance
    resources: dict
    outcome: dict
    definitions: list  # the case's assets and checks

    def registry(self):
        return self.resources["mlflow"].registry(self.resources["lakehouse"])

    @property
    def lake(self):
        return self.resources["lakehouse"].lake

    def materialize(self, selection, resources: dict | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            self.definitions,
            selection=selection,
            instance=self.instance,
            resources=resources or self.resources,
            raise_on_error=False,
            **kwargs,
        )

    def copy(self, tmp_path: Path) -> "Built":
        """A private copy of the built home (lake, warehouse, MLflow store, Dagster instance) for a test
        that changes things: the module's graph stays as built for every other test, in any order.
        The copy's MLflow runs still point at the original's artifacts, which tests only read."""
        from resources import LakehouseResource

        home = tmp_path / "home"
        shutil.copytree(self.home, home)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        return Built(
            home,
            instance,
            {**self.resources, "lakehouse": LakehouseResource(home=str(home))},
            self.outcome,
            self.definitions,
        )


def evaluation(result: dg.ExecuteInProcessResult, name: str):
    """The run's evaluation of the check `name`."""
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


@contextmanager
def build(
    tmp_path_factory, case: str, env: dict[str, str], *args, extra_resources: dict | None = None, **kwargs
) -> Iterator[Built]:
    """A new home with `env` set and the default resources, after `demos.<case>.run(instance,
    resources, *args, **kwargs)`, quietly. Whatever the demo sets in the environment (its own
    settings) holds for the module's tests and is undone afterwards."""
    saved = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("e2e") / "home", mp)
        for name, value in env.items():
            mp.setenv(name, value)
        from resources import LakehouseResource, default_resources

        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home)), **(extra_resources or {})}
        outcome = importlib.import_module(f"demos.{case}").run(
            instance, resources, *args, log=lambda *_: None, **kwargs
        )
        definitions = importlib.import_module(f"assets.{case}")
        try:
            yield Built(home, instance, resources, outcome, [*definitions.ASSETS, *definitions.CHECKS])
        finally:
            for name in set(os.environ) - set(saved):
                del os.environ[name]
            os.environ.update(saved)
