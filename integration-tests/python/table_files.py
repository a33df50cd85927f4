"""Every file a table's metadata references, as PyIceberg reads it, and its data files per day.

Usage: table_files.py pyiceberg CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--s3-endpoint URL]

Prints {"snapshots": N, "history_archive": P, "referenced": [paths...], "data_files": [{"path",
"size", "day"}]} (P: the `kappa.history` table property, Kappa's archive of expired snapshots):
the current metadata file, the previous ones its log lists, and for every snapshot its manifest
list, its manifests and the data files they hold alive; `data_files` are the current snapshot's.
A test compares this with what it lists under the table's location itself.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_table import add_catalog_arguments, sql_catalog  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["pyiceberg"])
    add_catalog_arguments(parser)
    args = parser.parse_args()
    table = sql_catalog(args).load_table(args.table)
    metadata = table.metadata
    io = table.io
    referenced = {table.metadata_location}
    referenced.update(entry.metadata_file for entry in metadata.metadata_log)
    for snapshot in metadata.snapshots:
        referenced.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            referenced.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                referenced.add(entry.data_file.file_path)
    data_files = []
    current = table.current_snapshot()
    if current is not None:
        for manifest in current.manifests(io):
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                data_file = entry.data_file
                day = data_file.partition[0] if len(data_file.partition) else None
                data_files.append({
                    "path": data_file.file_path,
                    "size": data_file.file_size_in_bytes,
                    "day": day,
                })
    print(json.dumps({
        "snapshots": len(metadata.snapshots),
        "history_archive": table.properties.get("kappa.history"),
        "referenced": sorted(referenced),
        "data_files": data_files,
    }, default=str))


if __name__ == "__main__":
    main()
