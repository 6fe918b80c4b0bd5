"""The dependency direction of the packages, and no import cycle anywhere (imports inside
functions included: they hide cycles, they do not break them).

    lakehouse  <-  resources  <-  assets  <-  sensors  <-  definitions  <-  demos, bench, tests

The contracts themselves are in `.importlinter` (import-linter); this test runs them and
looks for cycles between modules.
"""

import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lakehouse", "resources", "assets", "sensors", "demos", "bench")


def test_import_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = nx.DiGraph(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
    )
    cycles = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_production_code_never_reads_a_generator():
    """Only the generator side of a case's raw-source seam (in its schemas module), demos, benchmarks and tests
    import a world; no asset does."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    worlds = {m for m in graph.modules if m.startswith("lakehouse.") and m.endswith(".world")}
    production = {m for m in graph.modules if m.split(".")[0] in ("lakehouse", "resources", "assets", "sensors")}
    allowed = worlds | {m for m in production if m.startswith("lakehouse.") and m.endswith(".schemas")}
    offenders = sorted(
        f"{m} -> {w}" for m in production - allowed for w in graph.find_modules_directly_imported_by(m) & worlds
    )
    assert not offenders, offenders


def test_only_demos_benchmarks_and_tests_load_the_definitions():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, include_external_packages=True)
    importers = {m for m in graph.find_modules_that_directly_import("definitions")}
    assert all(m.split(".")[0] in ("demos", "bench") for m in importers), importers


def test_only_the_promotion_path_moves_champion():
    """The alias `champion` is set by lakehouse/common/promotion.py alone (promote and rollback); the
    registry refuses it, and no other code calls MLflow's alias setter."""
    setters = sorted(
        str(path.relative_to(ROOT))
        for package in (*PACKAGES, "tests")
        for path in (ROOT / package).rglob("*.py")
        if "set_registered_model_alias" in path.read_text() and path != Path(__file__)
    )
    assert setters == ["lakehouse/common/promotion.py", "lakehouse/common/registry.py"], setters


def test_production_units_stay_small_enough_to_hold_in_ones_head():
    """No production module over 800 lines and no production function over 100 (the demo worlds' generators
    aside): a newcomer reads a unit whole."""
    import ast

    too_long = []
    for package in ("lakehouse", "assets", "resources", "sensors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if len(text.splitlines()) > 800:
                too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            if path.name == "world.py":
                continue
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 100:
                    too_long.append(f"{path.relative_to(ROOT)}: {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long
