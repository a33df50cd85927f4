"""Another engine maintaining a Kappa table, as Spark or a catalog's maintenance worker would.

Usage: foreign_maintenance.py ACTION CATALOG_URI WAREHOUSE NAMESPACE.TABLE

ACTION:
  compact-and-expire  rewrite every row in one PyIceberg `overwrite` commit (a snapshot without any
                      `kappa.*` summary key), then expire every snapshot but the current one
  drop-state          remove the table's `kappa.state.*` properties (a table last written by a
                      Kappa release that kept its position only in snapshot summaries)

Prints {"snapshots": N, "kappa_snapshots": N, "rows": N, "state_properties": [...]} afterwards.
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
    parser.add_argument("action", choices=["compact-and-expire", "drop-state"])
    add_catalog_arguments(parser)
    args = parser.parse_args()
    catalog = sql_catalog(args)
    table = catalog.load_table(args.table)
    if args.action == "compact-and-expire":
        table.overwrite(table.scan().to_arrow())
        table = catalog.load_table(args.table)
        now = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(seconds=1)
        table.maintenance.expire_snapshots().older_than(now).commit()
    else:
        keys = [k for k in table.properties if k.startswith("kappa.state.")]
        with table.transaction() as tx:
            tx.remove_properties(*keys)
    table = catalog.load_table(args.table)
    snapshots = table.metadata.snapshots
    kappa = [s for s in snapshots if s.summary and "kappa.offsets" in s.summary.additional_properties]
    print(json.dumps({
        "snapshots": len(snapshots),
        "kappa_snapshots": len(kappa),
        "rows": table.scan().to_arrow().num_rows,
        "state_properties": sorted(k for k in table.properties if k.startswith("kappa.state.")),
    }))


if __name__ == "__main__":
    main()
