"""The lake's file layout, partition listing and reading, and the values a partition may take."""

from datetime import UTC, datetime

import polars as pl
import pytest

from lakehouse.common.lake import Lake, MissingPartitions, PartitionWritten


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
    with pytest.raises(FileNotFoundError, match="fraud/missing has no partition at all .*: materialize fraud/missing"):
        lake.read_partitions("fraud", "missing", "day")


def test_reading_partitions_that_are_not_stored_names_them_and_what_to_materialize(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write(pl.DataFrame({"a": [1]}), "fraud", "tx", ("day", "2024-01-01"))
    with pytest.raises(MissingPartitions) as info:
        lake.read_partitions("fraud", "tx", "day", ["2024-01-01", "2024-01-02", "2024-01-03"], "fraud/transactions")
    assert info.value.missing == ["2024-01-02", "2024-01-03"]
    assert "no partition for 2 day(s) (2024-01-02, 2024-01-03)" in str(info.value)
    assert "materialize fraud/transactions for them first" in str(info.value)


def test_two_runs_writing_the_same_partition_do_not_both_succeed_silently(tmp_path):
    root = str(tmp_path / "lake")
    started = datetime.now(UTC)
    first, second = Lake(root, "run-a", started), Lake(root, "run-b", started)
    first.write(pl.DataFrame({"a": [1]}), "fraud", "tx", ("day", "2024-01-01"))
    with pytest.raises(PartitionWritten, match="written by run run-a .* after this run \\(run-b\\) started"):
        second.write(pl.DataFrame({"a": [2]}), "fraud", "tx", ("day", "2024-01-01"))
    assert first.read("fraud", "tx", ("day", "2024-01-01"))["a"].to_list() == [1]
    second.write(pl.DataFrame({"a": [3]}), "fraud", "tx", ("day", "2024-01-02"))  # another partition is free
    first.write(pl.DataFrame({"a": [4]}), "fraud", "tx", ("day", "2024-01-01"))  # a run may rewrite its own
    later = Lake(root, "run-c", datetime.now(UTC))  # a run started after the write replaces it, as a reload
    later.write(pl.DataFrame({"a": [5]}), "fraud", "tx", ("day", "2024-01-01"))
    assert later.last_writer(later.file_url("fraud", "tx", ("day", "2024-01-01")))["run"] == "run-c"


def test_a_write_in_progress_holds_the_partition(tmp_path):
    lake = Lake(str(tmp_path / "lake"), "run-a", datetime.now(UTC))
    folder = tmp_path / "lake" / "fraud" / "tx" / "day=2024-01-01"
    folder.mkdir(parents=True)
    (folder / "_writer.lock").write_text("run-z")
    with pytest.raises(PartitionWritten, match="being written by run-z"):
        lake.write(pl.DataFrame({"a": [1]}), "fraud", "tx", ("day", "2024-01-01"))
    assert not list(folder.glob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    "value", ["../escape", "a/b", "a\\b", "..", ".", "", "x\ny", "k=v", "s1\u200b", "\uff0e\uff0e", "x" * 300]
)
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
