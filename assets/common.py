"""Conventions shared by every case's assets."""


import base64
from collections.abc import Callable
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, AssetKey, AssetSpec, Failure, MaterializeResult, MetadataValue, TableColumn, TableSchema, asset

from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry

from lakehouse.common.schema import TableSchema as DomainSchema

OWNERS = {
    "churn": ["team:customer-success-ml"],
    "forecast": ["team:supply-chain-ml"],
    "fraud": ["team:payments-risk-ml"],
    "triage": ["team:support-ml"],
    "platform": ["team:ml-platform"],
}

# Every asset that opens the DuckDB warehouse runs in this pool; its limit is 1
# (dagster.yaml), so parallel partition runs never contend for the single-writer file.
DUCKDB_POOL = "duckdb"


def column_schema(schema: DomainSchema) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(c.name, str(c.polars_dtype), description=c.description) for c in schema.columns
        ]
    )


def raw_table_specs(case: str, schemas: list[DomainSchema]) -> list[AssetSpec]:
    """One asset per raw table of a case, described by its schema (a multi_asset's specs)."""
    return [
        AssetSpec(
            [case, schema.name],
            description=schema.description,
            group_name=case,
            kinds={"polars", "parquet"},
            owners=OWNERS[case],
            metadata={"dagster/column_schema": column_schema(schema)},
        )
        for schema in schemas
    ]


def frame_schema(df: pl.DataFrame, descriptions: dict[str, str] | None = None) -> TableSchema:
    descriptions = descriptions or {}
    return TableSchema(columns=[TableColumn(n, str(t), description=descriptions.get(n)) for n, t in df.schema.items()])


def markdown_table(df: pl.DataFrame, float_format: str = "{:.4f}") -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "---|" * len(df.columns)
    rows = [
        "| " + " | ".join(float_format.format(v) if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.iter_rows()
    ]
    return "\n".join([head, sep, *rows])


def png_markdown(path: Path, alt: str) -> MetadataValue:
    """A PNG embedded in Markdown metadata, so the Dagster UI shows the picture itself."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def champion_asset(case: str, model_key: AssetKey, model_name: str, refusal: Callable[[Registry, str], str | None], description: str):
    """The case's `champion_model` asset: moves the MLflow alias `champion` to the current
    challenger unless `refusal(registry, version)` names a reason not to (the case's gate)."""
    from resources import LakehouseResource, MlflowResource

    @asset(key=[case, "champion_model"], deps=[model_key], group_name=case, kinds={"mlflow"}, owners=OWNERS[case], description=description)
    def champion_model(context: AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource) -> MaterializeResult:
        registry = mlflow.registry(lakehouse)
        version = registry.alias_version(model_name, CHALLENGER)
        reason = refusal(registry, version)
        if reason:
            raise Failure(f"{model_name} v{version}: {reason}; the champion stays in place")
        previous = registry.alias_version(model_name, CHAMPION)
        registry.set_alias(model_name, CHAMPION, version)
        context.log.info(f"{model_name}: champion v{previous} -> v{version}")
        return MaterializeResult(
            metadata={"champion_version": version, "previous_champion": previous or "none", "model_uri": registry.model_uri(model_name)}
        )

    return champion_model