"""The lake's file layout, partition listing and reading, and the values a partition may take."""

import polars as pl
import pytest

from lakehouse.common.lake import Lake


def test_partitions_are_listed_and_read_back_with_their_parts(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write(pl.DataFrame({"a": [1]}), "fraud", "tx", ("day", "2024-01-02"))
    lake.write(pl.DataFrame({"a": [2], "b": ["x"]}), "fraud", "tx", ("day", "2024-01-01"))
    lake.write_part(pl.DataFrame({"a": [3]}), "fraud", "tx", ("day", "2024-01-01"))
    (tmp_path / "lake" / "fraud" / "tx" / "day=2024-01-03").mkdir()  # an empty folder is no partition
    assert lake.partitions("fraud", "tx", "day") == ["2024-01-01", "2024-01-02"]
    assert sorted(lake.read_partitions("fraud", "tx", "day")["a"].to_list()) == [1, 2, 3]
    assert lake.read_partitions("fraud", "tx", "day", ["2024-01-02"])["a"].to_list() == [1]
    assert lake.partitions("fraud", "missing", "day") == []
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        lake.read_partitions("fraud", "missing", "day")


@pytest.mark.parametrize("value", ["../escape", "a/b", "a\\b", "..", "", "x\ny", "k=v"])
def test_a_partition_value_never_leaves_its_table(tmp_path, value):
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(ValueError, match="cannot name a folder"):
        lake.write(pl.DataFrame({"a": [1]}), "forecast", "sales", ("store", value))
    assert not any(tmp_path.rglob("*.parquet"))


def test_bytes_are_stored_beside_the_tables(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes(b"state", "forecast", "models", "stat.pkl", ("store", "s1"))
    assert lake.read_bytes("forecast", "models", "stat.pkl", ("store", "s1")) == b"state"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_of_several_tables_replaces_none(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write(pl.DataFrame({"a": [1]}), "churn", "customers")

    class Broken(pl.DataFrame):
        def write_parquet(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        lake.write_many(
            {("churn", "customers", None): pl.DataFrame({"a": [2]}), ("churn", "usage", None): Broken({"a": [3]})}
        )
    assert lake.read("churn", "customers")["a"].to_list() == [1]
    assert not list(tmp_path.rglob("*.tmp"))
