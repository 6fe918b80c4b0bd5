"""The fraud settings: defaults from the seed, overrides from the environment and the sources
file, the demo world inside the default calendar, and the service's worker rule."""

from datetime import date, timedelta

import pytest

from lakehouse.common.settings import DateRange
from lakehouse.fraud.features_registry import registry_for
from lakehouse.fraud.settings import FraudSettings
from lakehouse.fraud.world import CHANNELS, WorldConfig


def test_defaults_are_the_seeds_figures_and_the_demo_worlds_calendar():
    s = FraudSettings()
    assert (s.gate.min_recall, s.gate.min_precision, s.cascade.layer3_max_share) == (0.75, 0.5, 0.35)
    assert s.gate.comparison.min_support == 30 and s.evaluation.card_precision_k == 100
    assert s.features.label_delay_days == 7 and s.features.history_days == (1, 7, 30)
    assert (
        s.economics.currency == "EUR"
        and s.economics.system_cost_per_month == 180_000
        and s.economics_note().startswith("defaults")
    )
    assert s.channels == CHANNELS
    world = WorldConfig()
    assert s.calendar.start <= world.start_date and s.calendar.timezone == "UTC"
    windows = s.windows.resolve(world.start_date, world.start_date + timedelta(days=world.days - 1))
    assert (
        windows["test"].days == 3
        and windows["validation"].days == 2
        and windows["train"].start == world.start_date + timedelta(days=1)
    )
    assert FraudSettings(windows={"test": "5d"}).windows.warmup == "1d"  # one field set: the others keep theirs


def test_without_a_validation_window_one_is_carved_from_the_end_of_training():
    """A user's protocol with a training and a test period only: the last `validation_share` of the days
    before the test window validate (at least one day); a given validation window is used as it is."""
    yearly = FraudSettings(windows={"test": {"start": "2024-01-01", "end": "2024-12-31"}, "warmup": "30d"})
    windows = yearly.windows.resolve(date(2020, 1, 1), date(2024, 12, 31))
    before_test = (windows["validation"].end - windows["train"].start).days + 1
    assert windows["validation"].end == date(2023, 12, 31) and windows["train"].start == date(2020, 1, 31)
    assert windows["validation"].days == -(-before_test // 4)  # a quarter, rounded up
    assert windows["train"].end == windows["validation"].start - timedelta(days=1)
    given = {"start": "2020-03-01", "end": "2023-06-30"}
    explicit = FraudSettings(windows={"test": "1y", "train": given, "validation_share": 0.1})
    resolved = explicit.windows.resolve(date(2020, 1, 1), date(2024, 12, 31))
    assert resolved["train"].start == date(2020, 3, 1) and resolved["validation"].end == date(2023, 6, 30)
    span = (date(2023, 6, 30) - date(2020, 3, 1)).days + 1
    assert (
        resolved["validation"].days == -(-span // 10) and resolved["train"].days == span - resolved["validation"].days
    )
    stated = FraudSettings(windows={"validation": "2d"}).windows.resolve(date(2026, 11, 14), date(2026, 11, 22))
    assert stated["validation"].days == 2 and stated["train"].end == date(2026, 11, 17)
    with pytest.raises(ValueError, match="empty"):
        FraudSettings(windows={"validation_share": 0.99}).windows.resolve(date(2026, 11, 14), date(2026, 11, 16))


def test_environment_and_sources_file_override_the_defaults(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "sources.yaml").write_text(
        "fraud:\n  folder: data\n  settings:\n    calendar: {start: 2020-01-01}\n"
        "    windows: {test: {start: 2024-01-01, end: 2024-12-31}, validation: 6mo}\n    economics: {currency: USD}\n"
    )
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(tmp_path / "sources.yaml"))
    monkeypatch.setenv("LAKEHOUSE_FRAUD_FEATURES__LABEL_DELAY_DAYS", "10")
    monkeypatch.setenv("LAKEHOUSE_FRAUD_CONSUMERS", "off")
    s = FraudSettings()
    assert s.calendar.start == date(2020, 1, 1) and s.features.label_delay_days == 10 and s.consumers == "off"
    assert s.economics.currency == "USD" and s.economics_note() == "set"
    windows = s.windows.resolve(date(2020, 1, 1), date(2025, 6, 1))
    assert windows["test"] == DateRange(start=date(2024, 1, 1), end=date(2024, 12, 31))
    assert registry_for(s).label_delay == 10
    monkeypatch.setenv(
        "LAKEHOUSE_FRAUD_CALENDAR__TIMEZONE", "America/New_York"
    )  # one field: the sources file's start stays
    assert (
        FraudSettings().calendar.start == date(2020, 1, 1) and FraudSettings().calendar.timezone == "America/New_York"
    )
    with pytest.raises(ValueError, match="positive whole numbers of seconds"):
        FraudSettings(features={"windows": [0]})
    with pytest.raises(ValueError):
        FraudSettings(cascade={"layer3_shares": 0.2})  # a typo is an error


def test_several_workers_refuse_inline_consumers(monkeypatch, tmp_path):
    from lakehouse.common.home import LakehouseHome
    from lakehouse.fraud.api import preflight
    from lakehouse.serving.app import ServingSettings

    settings = ServingSettings(api_key="k", home=LakehouseHome(tmp_path), cases=("fraud",), workers=2)
    with pytest.raises(SystemExit, match="LAKEHOUSE_FRAUD_CONSUMERS=off"):
        preflight(settings)
    monkeypatch.setenv("LAKEHOUSE_FRAUD_CONSUMERS", "off")
    preflight(settings)
    preflight(settings.model_copy(update={"workers": 1}))


def test_the_docs_show_the_schema_as_declared():
    from lakehouse.fraud.schemas import markdown
    from tests.conftest import ROOT

    assert markdown() in (ROOT / "docs" / "fraud.md").read_text(), (
        "paste `python -m lakehouse.fraud.schemas` into docs/fraud.md"
    )
