"""A wrong sources file or settings section is refused with one message naming the file, the case, the key and
what is allowed there; one case's wrong section leaves the other cases usable."""

from datetime import date

import pytest

from lakehouse.common.settings import Calendar, CaseSettings, SettingsError
from lakehouse.common.sources import SourcesError, load_sources


class ExampleSettings(CaseSettings):
    case = "triage"
    calendar: Calendar = Calendar(start=date(2024, 1, 1))
    min_recall: float = 0.75


def _file(tmp_path, text: str):
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


# (the file's text, the case whose section is refused or None for the whole file, what the message must say)
SOURCES_ERRORS = {
    "no such file": (None, None, ["does not exist"]),
    "not YAML": ("churn: [unclosed\n", None, ["not valid YAML", "line"]),
    "not a mapping": ("- churn\n", None, ["expected a mapping of case names"]),
    "not UTF-8": (b"churn:\n  folder: \xff\xfe\n", None, ["cannot be read as UTF-8"]),
    "unknown case": ("billing:\n  folder: data\n", None, ["unknown case 'billing'", "churn, forecast"]),
    "misspelt case": ("triag:\n  folder: data\n", "triage", ["'triag' is no case", "did you mean `triage`"]),
    "case is no mapping": ("churn: 5\n", "churn", ["`churn` must be a mapping"]),
    "no folder": ("churn:\n  tables: {}\n", "churn", ["`churn.folder` is missing"]),
    "folder missing": ("churn:\n  folder: nowhere\n", "churn", ["`churn.folder`", "is not a folder"]),
    "unknown key": ("churn:\n  folder: data\n  tabels: {}\n", "churn", ["`churn.tabels`", "did you mean `tables`"]),
    "unknown table key": (
        "fraud:\n  folder: data\n  tables:\n    transactions: {colums: {}}\n",
        "fraud",
        ["`fraud.tables.transactions.colums`", "did you mean `columns`", "allowed here: columns, csv, file"],
    ),
    "bad column rule": (
        "fraud:\n  folder: data\n  tables:\n    transactions:\n      columns: {tx_id: {frm: id}}\n",
        "fraud",
        ["`fraud.tables.transactions.columns.tx_id.frm`", "did you mean `from`"],
    ),
    "bad choice": (
        "fraud:\n  folder: data\n  tables:\n    transactions: {rows_outside_selection: skipp}\n",
        "fraud",
        ["rows_outside_selection", "'refuse' or 'skip'"],
    ),
    "settings not a mapping": (
        "churn:\n  folder: data\n  settings: [1]\n",
        "churn",
        ["`churn.settings`", "dictionary"],
    ),
}


@pytest.mark.parametrize("name", sorted(SOURCES_ERRORS))
def test_each_sources_file_error_is_named_and_contained(tmp_path, name):
    text, broken, words = SOURCES_ERRORS[name]
    path = tmp_path / "absent.yaml" if text is None else _file(tmp_path, "")
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text + "forecast:\n  folder: data\n" if broken else text)
    if broken is None:
        with pytest.raises(SourcesError) as info:
            load_sources(path)
    else:
        sources = load_sources(path)
        assert sources.case("forecast") is not None  # the other case still loads
        with pytest.raises(SourcesError) as info:
            sources.case(broken)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    assert "Traceback" not in message and len(message) < 600


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ("calender: {start: 2024-01-01}", ["`triage.settings.calender`", "did you mean `calendar`", "min_recall"]),
        ("calendar: {start: 2024-01-01, timezone: Europe/Pariss}", ["timezone", "did you mean Europe/Paris"]),
        ("calendar: {timezone: Mars/Olympus}", ["unknown time zone 'Mars/Olympus'", "IANA"]),
        ("calendar: {start: someday}", ["`triage.settings.calendar.start`", "date"]),
        ("min_recall: high", ["`triage.settings.min_recall`", "number"]),
    ],
)
def test_a_wrong_settings_section_names_file_case_key_and_allowed_values(tmp_path, monkeypatch, settings, words):
    monkeypatch.delenv("LAKEHOUSE_SOURCES", raising=False)
    path = _file(tmp_path, f"triage:\n  folder: data\n  settings:\n    {settings}\n")
    with pytest.raises(SettingsError) as info:
        ExampleSettings.load(path)
    message = str(info.value)
    assert str(path.resolve()) in message
    for word in words:
        assert word in message, message


def test_an_unknown_time_zone_is_never_a_raw_zoneinfo_error():
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Pariss': did you mean Europe/Paris"):
        Calendar(start=date(2024, 1, 1), timezone="Europe/Pariss")
    assert Calendar(start=date(2024, 1, 1), timezone="America/Los_Angeles").timezone == "America/Los_Angeles"


def test_a_wrong_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_SOURCES", raising=False)
    monkeypatch.setenv("LAKEHOUSE_TRIAGE_MIN_RECALL", "lots")
    with pytest.raises(SettingsError, match="LAKEHOUSE_TRIAGE_MIN_RECALL"):
        ExampleSettings()
