"""README.md's asset-graph diagram is current, and every asset carries its catalog metadata."""

import dagster as dg
import pytest

import definitions
from demos.graph import END_MARKER, README_PATH, START_MARKER, extract_block, readme_block, replace_block

KIND_TAG_PREFIX = "dagster/kind/"


@pytest.fixture(scope="module")
def asset_graph():
    return definitions.defs().resolve_asset_graph()


def test_readme_asset_graph_is_current():
    expected = readme_block(definitions.defs())
    assert README_PATH.exists(), f"{README_PATH} is missing: run `python -m demos.graph` from the repository root"
    found = extract_block(README_PATH.read_text(encoding="utf-8").replace("\r\n", "\n"))
    assert found is not None, (
        f"README.md has no {START_MARKER} ... {END_MARKER} block: run `python -m demos.graph` from the repository root"
    )
    assert found == expected, (
        "README.md's asset graph is out of date: run `python -m demos.graph` from the repository root"
    )


def test_mermaid_keeps_dbt_staging_models_and_is_deterministic():
    block = readme_block(definitions.defs())
    assert block == readme_block(definitions.defs())
    assert '["stg_churn__customers"]' in block
    assert "churn__customers --> churn__stg_churn__customers" in block


def test_replace_block_only_touches_the_marked_block():
    old = f"# Title\n\nintro\n\n{START_MARKER}\nstale\n{END_MARKER}\n\n## Rest\ntext\n"
    new = replace_block(old, f"{START_MARKER}\nfresh\n{END_MARKER}")
    assert new == f"# Title\n\nintro\n\n{START_MARKER}\nfresh\n{END_MARKER}\n\n## Rest\ntext\n"
    assert replace_block("# Title\n", "B") == "# Title\n\nB\n"


def _columns(schema_value):
    schema = getattr(schema_value, "schema", schema_value)  # TableSchemaMetadataValue or TableSchema
    assert isinstance(schema, dg.TableSchema), f"unexpected dagster/column_schema value {schema_value!r}"
    return schema.columns


def test_every_asset_has_catalog_metadata(asset_graph):
    problems = []
    keys = sorted(asset_graph.get_all_asset_keys(), key=lambda k: tuple(k.path))
    assert keys, "definitions.defs() has no assets"
    for key in keys:
        node = asset_graph.get(key)
        name = key.to_user_string()
        if not (node.description or "").strip():
            problems.append(f"{name}: no description")
        if not node.group_name:
            problems.append(f"{name}: no group")
        if not any(tag.startswith(KIND_TAG_PREFIX) for tag in node.tags):
            problems.append(f"{name}: no kind (tag {KIND_TAG_PREFIX}...)")
        if not node.owners:
            problems.append(f"{name}: no owners")
        if "dagster/column_schema" in node.metadata and not _columns(node.metadata["dagster/column_schema"]):
            problems.append(f"{name}: dagster/column_schema has no columns")
    assert not problems, "assets missing catalog metadata:\n  " + "\n  ".join(problems)
