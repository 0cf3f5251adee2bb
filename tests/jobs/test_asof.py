import pyarrow as pa
import pytest
from deltalake import write_deltalake

from jobs.asof import latest_partition_at_or_before
from jobs.lake import Lake
from jobs.tables import SILVER_USERS


def _users(ds):
    return pa.table({"user_id": ["u1"], "attributes": pa.array([None], SILVER_USERS.schema.field(
        "attributes").type), "created_at": pa.array([None], pa.timestamp("us", tz="UTC")),
        "ds": [ds]})


def test_exact_partition_else_latest_before_never_after(settings):
    lake = Lake(settings)
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2024-01-05") is None
    for ds in ("2024-01-03", "2024-01-10", "2023-12-31"):
        lake.overwrite_partitions(SILVER_USERS.name, _users(ds), [ds])
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2024-01-10") == "2024-01-10"
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2024-01-09") == "2024-01-03"
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2024-01-03") == "2024-01-03"
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2024-01-01") == "2023-12-31"
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2023-12-30") is None
    assert latest_partition_at_or_before(lake, SILVER_USERS.name, "2099-01-01") == "2024-01-10"


def test_tables_not_declared_in_schemas_use_their_delta_partition_column(settings):
    lake = Lake(settings)
    for ds in ("2024-02-01", "2024-01-01"):
        write_deltalake(lake.path("gold/other"), pa.table({"id": ["x"], "ds": [ds]}),
                        partition_by=["ds"], mode="append")
    assert latest_partition_at_or_before(lake, "gold/other", "2024-01-31") == "2024-01-01"
    write_deltalake(lake.path("gold/flat"), pa.table({"id": ["x"]}))
    with pytest.raises(ValueError, match="not partitioned"):
        latest_partition_at_or_before(lake, "gold/flat", "2024-01-31")
