"""The asset graph as a Mermaid diagram, kept in README.md between two markers.

Run ``python -m demos.graph`` from the repository root after changing assets; the test
``tests/integration/test_asset_graph_doc.py`` fails while README.md is out of date.
"""

import re
import sys
from pathlib import Path

import dagster as dg

START_MARKER = "<!-- asset-graph:start -->"
END_MARKER = "<!-- asset-graph:end -->"
README_PATH = Path(__file__).resolve().parent.parent / "README.md"

# Mermaid words that cannot be used as bare node or subgraph ids.
_RESERVED_IDS = {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click", "linkstyle", "default"}


def _mermaid_id(parts: list[str] | tuple[str, ...], prefix: str = "") -> str:
    """A Mermaid-safe id: path components, non-word characters replaced, joined by '__'."""
    ident = prefix + "__".join(re.sub(r"\W", "_", p, flags=re.ASCII) for p in parts)
    if not ident or ident[0].isdigit() or ident.lower() in _RESERVED_IDS:
        ident = "a_" + ident
    return ident


def _label(text: str) -> str:
    """A quoted Mermaid label; double quotes would end it, so they become an entity."""
    return '"' + text.replace('"', "#quot;") + '"'


def mermaid(defs: dg.Definitions) -> str:
    """The Definitions' asset graph as a ``flowchart LR``: a subgraph per group, an edge per dependency."""
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: tuple(k.path))

    node_ids: dict[dg.AssetKey, str] = {}
    for key in keys:
        node_ids[key] = _mermaid_id(key.path)
    groups: dict[str, list[dg.AssetKey]] = {}
    for key in keys:
        groups.setdefault(graph.get(key).group_name or "default", []).append(key)
    group_ids = {group: _mermaid_id([group], prefix="group_") for group in groups}

    all_ids = list(node_ids.values()) + list(group_ids.values())
    if len(set(all_ids)) != len(all_ids):
        dupes = sorted({i for i in all_ids if all_ids.count(i) > 1})
        raise ValueError(f"asset keys or groups map to the same Mermaid id: {dupes}")

    lines = ["flowchart LR"]
    for group in sorted(groups):
        lines.append(f"    subgraph {group_ids[group]}[{_label(group)}]")
        for key in groups[group]:
            lines.append(f"        {node_ids[key]}[{_label(key.path[-1])}]")
        lines.append("    end")
    edges = sorted(
        (node_ids[parent], node_ids[key]) for key in keys for parent in graph.get(key).parent_keys if parent in node_ids
    )
    lines.extend(f"    {parent} --> {child}" for parent, child in edges)
    return "\n".join(lines) + "\n"


def readme_block(defs: dg.Definitions) -> str:
    """The diagram in a fenced mermaid block between the README markers (markers included)."""
    return f"{START_MARKER}\n```mermaid\n{mermaid(defs)}```\n{END_MARKER}"


def _marker_span(text: str) -> tuple[int, int] | None:
    """(start, end) offsets of the marked block, markers included; None when there are no markers."""
    starts, ends = text.count(START_MARKER), text.count(END_MARKER)
    if starts == 0 and ends == 0:
        return None
    if starts != 1 or ends != 1:
        raise ValueError(f"README.md needs exactly one {START_MARKER} and one {END_MARKER} (found {starts} and {ends})")
    start = text.index(START_MARKER)
    end = text.index(END_MARKER) + len(END_MARKER)
    if end < start:
        raise ValueError(f"{END_MARKER} comes before {START_MARKER} in README.md")
    return start, end


def extract_block(text: str) -> str | None:
    """The marked block of a README text (markers included), or None when it has none."""
    span = _marker_span(text)
    return None if span is None else text[span[0] : span[1]]


def replace_block(text: str, block: str) -> str:
    """``text`` with its marked block replaced by ``block``; appended at the end when there are no markers."""
    span = _marker_span(text)
    if span is None:
        sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}{block}\n"
    return text[: span[0]] + block + text[span[1] :]


def write_readme(defs: dg.Definitions, path: Path = README_PATH) -> bool:
    """Rewrite the marked block of ``path`` (created when missing); True when the file changed."""
    block = readme_block(defs)
    if not path.exists():
        path.write_text(block + "\n", encoding="utf-8")
        return True
    # newline="" keeps the file's own line endings; only the marked block is rewritten.
    with path.open(encoding="utf-8", newline="") as f:
        old = f.read()
    new = replace_block(old, block)
    if new == old:
        return False
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(new)
    return True


def main() -> None:
    from definitions import defs

    changed = write_readme(defs())
    print(f"{README_PATH}: asset graph {'updated' if changed else 'already up to date'}", file=sys.stderr)


if __name__ == "__main__":
    main()
