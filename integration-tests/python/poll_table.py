"""What readers of a Kappa table see while it changes: the content of main, polled or per snapshot.

Usage: poll_table.py MODE CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--until FILE] [--catalog-name NAME]
                     [--s3-endpoint URL]

MODE:
  poll     load the table and read main's current snapshot again and again (a reader polling it)
           until FILE exists, then once more; prints {"first": {...}} after its first read, then
           {"reads": N, "seen": [{"snapshot": id,
           "checksum": "..."}, ...]} with each distinct content in the order first seen
  history  read every snapshot of main's ancestry (time travel), oldest first; prints
           {"snapshots": [{"snapshot": id, "operation": "...", "backfill_id": ..., "checksum": "..."},
           ...]}
"""

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from checksum import checksum  # noqa: E402
from read_table import add_catalog_arguments, sql_catalog  # noqa: E402


def content(table, snapshot_id):
    if snapshot_id is None:
        return "0"
    return str(checksum(table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()))


def poll(args):
    catalog = sql_catalog(args)
    seen, reads, last = [], 0, None
    while True:
        done = os.path.exists(args.until)
        table = catalog.load_table(args.table)
        snapshot = table.current_snapshot()
        snapshot_id = snapshot.snapshot_id if snapshot else None
        if snapshot_id != last:
            sum_ = content(table, snapshot_id)
            if not seen or seen[-1]["checksum"] != sum_:
                seen.append({"snapshot": snapshot_id, "checksum": sum_})
            last = snapshot_id
        reads += 1
        if reads == 1:
            # Says it has read once: whoever waits for it may change the table now.
            print(json.dumps({"first": seen[0]}), flush=True)
        if done:
            break
    return {"reads": reads, "seen": seen}


def history(args):
    table = sql_catalog(args).load_table(args.table)
    chain = []
    snapshot = table.current_snapshot()
    while snapshot is not None:
        chain.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = table.metadata.snapshot_by_id(parent) if parent is not None else None
    return {"snapshots": [
        {
            "snapshot": s.snapshot_id,
            "operation": str(s.summary.operation.value) if s.summary else None,
            "backfill_id": s.summary.get("kappa.backfill.id") if s.summary else None,
            "checksum": content(table, s.snapshot_id),
        }
        for s in reversed(chain)
    ]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["poll", "history"])
    add_catalog_arguments(parser)
    parser.add_argument("--until")
    args = parser.parse_args()
    print(json.dumps(poll(args) if args.mode == "poll" else history(args)))


if __name__ == "__main__":
    main()
