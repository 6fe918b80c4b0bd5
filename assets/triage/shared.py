"""What the triage assets share: the monthly partitions, from the data calendar in the case's settings
(read once, when the code location loads), and how a result's metadata renders."""

import polars as pl

from assets.common import table, time_partitions
from lakehouse.triage.settings import TriageSettings

# One partition per calendar month of tickets, from `calendar.start`; a month opens once it is complete.
monthly = time_partitions(TriageSettings().calendar, "monthly")


def rendered(metadata: dict) -> dict:
    """Metadata for the UI: frames become tables."""
    return {k: table(v) if isinstance(v, pl.DataFrame) else v for k, v in metadata.items()}
