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


# The Dagster UI shows a Markdown metadata value inline when it is under 1,000 characters: a chart
# that fits is an SVG bar chart in a data URI (the UI allows data: images).
INLINE_MARKDOWN_LIMIT = 1000


def bar_chart(
    title: str, bars: list[tuple[str, float]], label=lambda v: f"{v:.2f}", marks: dict[str, float] | None = None
) -> str:
    """Markdown of a small horizontal bar chart, short enough for the UI to show inline.

    `bars` are (name, value) with values >= 0; `marks` puts a tick at a value on a bar (a target).
    """
    marks = marks or {}
    top = max([v for _, v in bars] + list(marks.values()) + [1e-12])
    scale, row = 200 / top, 16
    texts, boxes, ticks = [], [], []
    for i, (name, value) in enumerate(bars):
        y, w = i * row, round(value * scale)
        texts.append(f"<text y='{y + 12}'>{name[:14]}</text><text x='{95 + w}' y='{y + 12}'>{label(value)}</text>")
        boxes.append(f"M90 {y + 3}h{w}v11H90z")
        if name in marks:
            ticks.append(f"M{90 + round(marks[name] * scale)} {y + 1}v15")
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='360' height='{row * len(bars)}' font-size='11'>",
        *texts,
        f"<path fill='#4f6bed' d='{''.join(boxes)}'/>",
        f"<path stroke='#000' stroke-width='2' d='{''.join(ticks)}'/>" if ticks else "",
    ]
    svg = "".join(parts) + "</svg>"
    encoded = svg.replace("%", "%25").replace("#", "%23").replace("<", "%3C").replace(">", "%3E")
    markdown = f"![{title}](<data:image/svg+xml,{encoded}>)"
    if len(markdown) >= INLINE_MARKDOWN_LIMIT:
        raise ValueError(
            f"chart {title!r} is {len(markdown)} characters: the UI would hide it behind a link "
            f"(limit {INLINE_MARKDOWN_LIMIT})"
        )
    return markdown
