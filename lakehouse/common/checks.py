"""What a monitoring rule or a gate concluded, independent of the orchestrator.

Every case's checks return `CheckOutcome`s; one adapter (assets/common.py) turns them into
Dagster check results, and the alert sensor reads `value` and `threshold` back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    value: float | int | str | None  # the measured figure the threshold applies to
    threshold: str  # e.g. ">= 0.60", "[13,000, 16,000]"
    description: str = ""
    severity: Severity = "WARN"
    metadata: dict[str, Any] = field(default_factory=dict)  # extra figures; DataFrames render as tables
