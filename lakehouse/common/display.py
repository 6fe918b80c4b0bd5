"""How figures read, wherever a person sees them: UI metadata, reports, the demo's terminal."""

from __future__ import annotations


def pct(x: float | None, digits: int = 1) -> str:
    """0.2133 -> '21.3 %'."""
    return "n/a" if x is None or x != x else f"{100 * x:,.{digits}f} %"


def money(x: float | None, currency: str, digits: int = 0) -> str:
    """270000 -> '270,000 EUR'; large figures in millions ('2.30 M EUR')."""
    if x is None or x != x:
        return "n/a"
    if abs(x) >= 10_000_000:
        return f"{x / 1e6:,.2f} M {currency}"
    return f"{x:,.{digits}f} {currency}"


def count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def times(x: float | None) -> str:
    """A multiple, e.g. an ROI: 15.19 -> '15.2x'."""
    return "n/a" if x is None or x != x else f"{x:,.1f}x"
