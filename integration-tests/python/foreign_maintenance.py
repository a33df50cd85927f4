"""Another engine maintaining a Kappa table, as Spark or a catalog's maintenance worker would.

Usage: foreign_maintenance.py ACTION CATALOG_URI WAREHOUSE NAMESPACE.TABLE [DAY ...]

ACTION:
  compact-and-expire  rewrite every row in one PyIceberg `overwrite` commit (a snapshot without any
                      `kappa.*` summary key), then expire every snapshot but the current one
  drop-state          remove the table's `kappa.state.*` properties (a table last written by a
                      Kappa release that kept its position only in snapshot summaries)
  break-days          DAY1 DAY2 (YYYY-MM-DD): delete every row of DAY1, then append junk to DAY2
                      (ten of its rows again under new event ids and a changed amount), in two
                      PyIceberg commits
  delete-partition    P: delete every row whose kafka_partition is P (a dead-letter table losing rows)
  delete-day          DAY (YYYY-MM-DD): delete every row of DAY in one commit (its files become deleted
                      entries of the new snapshot's manifests)
  files               list the live data files per day partition (prints {"files": {day: [..]}})

Prints {"snapshots": N, "kappa_snapshots": N, "rows": N, "state_properties": [...]} afterwards
(and "files" for `files`).
"""

import argparse
import datetime
import json
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_table import add_catalog_arguments, sql_catalog  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["compact-and-expire", "drop-state", "break-days", "delete-partition", "delete-day", "files"])
    add_catalog_arguments(parser)
    parser.add_argument("days", nargs="*")
    args = parser.parse_args()
    catalog = sql_catalog(args)
    table = catalog.load_table(args.table)
    if args.action == "compact-and-expire":
        table.overwrite(table.scan().to_arrow())
        table = catalog.load_table(args.table)
        now = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(seconds=1)
        table.maintenance.expire_snapshots().older_than(now).commit()
    elif args.action == "break-days":
        break_days(table, *args.days)
    elif args.action == "delete-partition":
        from pyiceberg.expressions import EqualTo

        table.delete(EqualTo("kafka_partition", int(args.days[0])))
    elif args.action == "delete-day":
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

        start, end = day_range(args.days[0])
        table.delete(And(GreaterThanOrEqual("event_time", start.isoformat()), LessThan("event_time", end.isoformat())))
    elif args.action == "drop-state":
        keys = [k for k in table.properties if k.startswith("kappa.state.")]
        with table.transaction() as tx:
            tx.remove_properties(*keys)
    table = catalog.load_table(args.table)
    snapshots = table.metadata.snapshots
    kappa = [s for s in snapshots if s.summary and "kappa.offsets" in s.summary.additional_properties]
    print(json.dumps({
        "files": files_per_day(table) if args.action == "files" else None,
        "snapshots": len(snapshots),
        "kappa_snapshots": len(kappa),
        "rows": table.scan().to_arrow().num_rows,
        "state_properties": sorted(k for k in table.properties if k.startswith("kappa.state.")),
    }))


def day_range(day):
    start = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc)
    return start, start + datetime.timedelta(days=1)


def break_days(table, deleted, junk):
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    start, end = day_range(deleted)
    table.delete(And(GreaterThanOrEqual("event_time", start.isoformat()), LessThan("event_time", end.isoformat())))
    start, end = day_range(junk)
    rows = table.scan(
        row_filter=And(GreaterThanOrEqual("event_time", start.isoformat()), LessThan("event_time", end.isoformat())),
    ).to_arrow()
    # The same ten rows whatever the file layout: the first by event id.
    rows = rows.sort_by([("event_id", "ascending")]).slice(0, 10)
    ids = pa.array([f"00000000-0000-4000-8000-{i:012d}" for i in range(rows.num_rows)], type=rows.schema.field("event_id").type)
    rows = rows.set_column(rows.schema.get_field_index("event_id"), rows.schema.field("event_id"), ids)
    amounts = pc.add(rows.column("amount_cents"), 1)
    rows = rows.set_column(rows.schema.get_field_index("amount_cents"), rows.schema.field("amount_cents"), amounts)
    table.append(rows)


def files_per_day(table):
    files = {}
    for row in table.inspect.files().to_pylist():
        partition = row["partition"]
        value = next(iter(partition.values())) if partition else None
        if isinstance(value, int):
            value = (datetime.date(1970, 1, 1) + datetime.timedelta(days=value)).isoformat()
        files.setdefault(str(value), []).append(row["file_path"])
    return {day: sorted(paths) for day, paths in files.items()}


if __name__ == "__main__":
    main()
