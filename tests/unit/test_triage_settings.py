"""The triage settings: defaults are the seed's, the environment and the sources file move them, and the
windows they describe resolve to dates."""

from datetime import date, datetime

import pytest
import yaml

from lakehouse.triage.settings import TriageSettings


def test_the_defaults_are_the_seeds_figures_and_a_training_reads_every_validated_ticket():
    s = TriageSettings()
    assert (
        s.confidence_threshold == 0.85
        and s.monitoring.min_mean_confidence == 0.75
        and s.monitoring.max_human_validation_rate == 0.30
    )
    assert (
        len(s.teams) == 12 and s.team("billing") == "finance" and s.team("a_category_of_yours") == "a_category_of_yours"
    )
    assert (
        s.training.tickets is None
        and s.economics.currency == "EUR"
        and "agent_annual_cost" in s.economics.defaults_used
    )


def test_environment_and_sources_file_move_the_settings(tmp_path, monkeypatch):
    sources = tmp_path / "sources.yaml"
    folder = tmp_path / "data"
    folder.mkdir()
    settings = {
        "calendar": {"start": "2024-11-01"},
        "training": {"validation": "1mo", "holdout_share": 0},
        "teams": {"oos": "humans"},
    }
    sources.write_text(yaml.safe_dump({"triage": {"folder": str(folder), "settings": settings}}))
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(sources))
    monkeypatch.setenv("LAKEHOUSE_TRIAGE_MONITORING__MAX_HUMAN_VALIDATION_RATE", "0.45")
    s = TriageSettings()
    assert s.calendar.start == date(2024, 11, 1) and s.training.holdout_share == 0 and s.teams == {"oos": "humans"}
    assert s.monitoring.max_human_validation_rate == 0.45
    with pytest.raises(ValueError):
        TriageSettings(training={"max_step": 10})  # a typo is an error


def test_the_validation_period_resolves_back_from_the_cut_off():
    s = TriageSettings(training={"validation": "1mo"})
    window = s.training.validation_window(datetime(2025, 1, 1))
    assert (window.start, window.end) == (date(2024, 12, 1), date(2024, 12, 31))
    assert TriageSettings().training.validation_window(datetime(2025, 1, 1)) is None


def test_the_evaluation_report_takes_the_window_the_user_picks():
    routed = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    assert TriageSettings().evaluation_months(routed) == ["2026-08", "2026-09", "2026-10"]
    assert TriageSettings(evaluation="1mo").evaluation_months(routed) == ["2026-10"]
    assert TriageSettings(evaluation={"start": "2026-06-01", "end": "2026-07-31"}).evaluation_months(routed) == [
        "2026-06",
        "2026-07",
    ]
    with pytest.raises(ValueError):
        TriageSettings(evaluation="3 months")


def test_loading_the_case_imports_no_heavy_library():
    import subprocess
    import sys

    heavy = ["torch", "setfit", "transformers", "sentence_transformers", "sklearn", "mlflow", "onnxruntime", "scipy"]
    code = (
        "import sys, assets.triage, sensors.triage, lakehouse.triage.api, lakehouse.triage.pipeline; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
