"""The catalogue: one SQLite database (WAL) that is the truth about what PyPI holds
and what we have built, and the only code that writes it.

- schema: the tables and live_* views, their migrations, and `connect`.
- writes: `transaction(conn)`, the one BEGIN IMMEDIATE ... COMMIT/ROLLBACK, and
  every write: ingest's events, metadata, skips, serials and cursor; publish's
  builds, wheels and dependencies, and the deletion of rows of releases that are gone;
  an operator's skips, withdrawals, opt-outs and rebuilds (ingest.admin).

Readers query the live_* views themselves (publish.releases is the pages' read
model); writers call the functions here.
"""

from ingest.catalogue.schema import MIGRATIONS, SCHEMA_VERSION, connect, migrate
from ingest.catalogue.writes import (
    BuildReportLike,
    DifferingPush,
    FailureLike,
    MachineLike,
    OperatorSkip,
    ProfileRebuildRequest,
    ReleaseFacts,
    ReportedFileLike,
    Skip,
    WheelCopy,
    WheelLike,
    apply_event_rows,
    clear_rebuild,
    delete_dead_project_rows,
    delete_orphan_rows,
    get_state,
    give_up_metadata,
    now_iso,
    record_build,
    record_compiled,
    record_differing_push,
    record_skips,
    remember_serials,
    request_profile_rebuilds,
    request_rebuild,
    seen_serials,
    set_operator_skip,
    set_opt_out,
    set_state,
    store_metadata,
    transaction,
    withdraw_builds,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BuildReportLike",
    "DifferingPush",
    "FailureLike",
    "MachineLike",
    "OperatorSkip",
    "ProfileRebuildRequest",
    "ReleaseFacts",
    "ReportedFileLike",
    "Skip",
    "WheelCopy",
    "WheelLike",
    "apply_event_rows",
    "clear_rebuild",
    "connect",
    "delete_dead_project_rows",
    "delete_orphan_rows",
    "get_state",
    "give_up_metadata",
    "migrate",
    "now_iso",
    "record_build",
    "record_compiled",
    "record_differing_push",
    "record_skips",
    "remember_serials",
    "request_profile_rebuilds",
    "request_rebuild",
    "seen_serials",
    "set_operator_skip",
    "set_opt_out",
    "set_state",
    "store_metadata",
    "transaction",
    "withdraw_builds",
]
