"""A wrong section of the sources file, or wrong settings, for one case: the code location still loads (what
`dagster asset list -m definitions` builds), the other cases whole, the broken one as one placeholder asset whose
description and metadata carry the error naming the file, the case and the key."""

import sys

import dagster as dg
import pytest

pytestmark = pytest.mark.integration


def _fresh_definitions(monkeypatch):
    """The Definitions as a new process builds them (case modules read their settings when imported)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("assets", "sensors", "definitions")]:
        monkeypatch.delitem(sys.modules, name)
    import definitions

    return definitions.defs()


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("settings:\n    calender: {start: 2024-01-01}", ["`triage.settings.calender`", "did you mean `calendar`"]),
        ("settings:\n    calendar: {timezone: Europe/Pariss}", ["unknown time zone", "Europe/Paris"]),
        ("tabels: {}", ["`triage.tabels`", "did you mean `tables`"]),
    ],
)
def test_one_broken_case_leaves_the_others_loadable(tmp_path, lakehouse_home, monkeypatch, section, words):
    (tmp_path / "data").mkdir()
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"triage:\n  folder: data\n  {section}\n")
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(sources))
    defs = _fresh_definitions(monkeypatch)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"churn/customers", "forecast/stores", "fraud/transactions"} <= keys
    assert [k for k in keys if k.startswith("triage/")] == ["triage/settings_error"]
    placeholder = defs.resolve_assets_def(dg.AssetKey(["triage", "settings_error"]))
    spec = next(iter(placeholder.specs))
    for word in [str(sources), *words]:
        assert word in spec.description and word in spec.metadata["error"].value
    assert not any(job.name.startswith("triage") for job in defs.resolve_all_job_defs())
