"""One case's demo graph built once in a fresh project home, for a module of e2e tests."""

import importlib
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
            self.definitions, selection=selection, instance=self.instance, resources=resources or self.resources, raise_on_error=False, **kwargs
        )


def evaluation(result: dg.ExecuteInProcessResult, name: str):
    """The run's evaluation of the check `name`."""
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


@contextmanager
def build(tmp_path_factory, case: str, env: dict[str, str], *args, extra_resources: dict | None = None, **kwargs) -> Iterator[Built]:
    """A new home with `env` set and the default resources, after `demos.<case>.run(instance,
    resources, *args, **kwargs)`, quietly."""
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("e2e") / "home", mp)
        for name, value in env.items():
            mp.setenv(name, value)
        from resources import LakehouseResource, default_resources

        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home)), **(extra_resources or {})}
        outcome = importlib.import_module(f"demos.{case}").run(instance, resources, *args, log=lambda *_: None, **kwargs)
        definitions = importlib.import_module(f"assets.{case}")
        yield Built(home, instance, resources, outcome, [*definitions.ASSETS, *definitions.CHECKS])
