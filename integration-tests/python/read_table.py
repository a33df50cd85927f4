"""Read a Kappa table back with a real query engine and print what it sees as JSON.

Usage: read_table.py ENGINE CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--catalog-name NAME] [--s3-endpoint URL]
                     [--kappa-metadata]

ENGINE is `pyiceberg` (SqlCatalog on the same database Kappa writes, or RestCatalog when
CATALOG_URI is http(s):// — the REST catalog `dev/services.sh` runs, OAuth2 client credentials
test:testtest) or `duckdb` (the iceberg
extension, loaded offline from its PyPI package, scanning the table's current metadata file).
Prints {"rows": N, "checksum": "...", "columns": [...], "null_user_id": N}; with --kappa-metadata
also "summaries", the `kappa.*` counters summed over the snapshots of main's history (as PyIceberg
reads them), "state", the table's `kappa.state.*` properties, parsed, and "uuid", the table's uuid.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from checksum import checksum  # noqa: E402


def sql_catalog(args):
    """The catalog Kappa writes: SQL (SQLite, PostgreSQL) or REST (an http(s):// URI)."""
    s3 = {}
    if args.s3_endpoint:
        s3 = {
            "s3.endpoint": args.s3_endpoint,
            "s3.access-key-id": "test",
            "s3.secret-access-key": "testtest",
            "s3.region": "us-east-1",
            "s3.path-style-access": "true",
        }
    if args.catalog_uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(args.catalog_name, uri=args.catalog_uri, warehouse=args.warehouse,
                           credential="test:testtest", **s3)
    from pyiceberg.catalog.sql import SqlCatalog

    props = {"uri": sqlalchemy_uri(args.catalog_uri), "warehouse": args.warehouse}
    props.update(s3)
    return SqlCatalog(args.catalog_name, **props)


def sqlalchemy_uri(uri):
    if uri.startswith("postgres://"):
        return "postgresql+psycopg2://" + uri[len("postgres://"):]
    return uri


def rows_pyiceberg(args):
    table = sql_catalog(args).load_table(args.table)
    arrow = table.scan().to_arrow()
    return arrow.schema.names, arrow.to_pylist()


def duckdb_scan(location, s3_endpoint=None):
    """A DuckDB connection with the iceberg extension loaded offline (from its PyPI package), and
    the path iceberg_scan reads for the metadata file `location`."""
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    ext = next(pathlib.Path(duckdb_extension_iceberg.__file__).parent.rglob("iceberg.duckdb_extension"))
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    if location.startswith("s3://"):
        import duckdb_extension_httpfs

        httpfs = next(pathlib.Path(duckdb_extension_httpfs.__file__).parent.rglob("httpfs.duckdb_extension"))
        con.execute(f"LOAD '{httpfs}'")
        endpoint = s3_endpoint.split("://", 1)[1]
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'testtest', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
    avro = next(pathlib.Path(duckdb_extension_avro.__file__).parent.rglob("avro.duckdb_extension"))
    con.execute(f"LOAD '{avro}'")
    con.execute(f"LOAD '{ext}'")
    if location.startswith("file://"):
        location = location[len("file://"):]
    return con, location


def rows_duckdb(args):
    table = sql_catalog(args).load_table(args.table)
    con, location = duckdb_scan(table.metadata_location, args.s3_endpoint)
    cursor = con.execute(f"SELECT * FROM iceberg_scan('{location}')")
    names = [d[0] for d in cursor.description]
    return names, [dict(zip(names, row)) for row in cursor.fetchall()]


def kappa_metadata(args):
    table = sql_catalog(args).load_table(args.table)
    summaries = {}
    for entry in table.history():
        found = table.metadata.snapshot_by_id(entry.snapshot_id)
        summary = found.summary if found else None
        for key, value in (summary.additional_properties if summary else {}).items():
            if key.startswith("kappa.") and value.isdigit():
                summaries[key] = summaries.get(key, 0) + int(value)
    state = {k: json.loads(v) for k, v in table.properties.items() if k.startswith("kappa.state.")}
    return {"summaries": summaries, "state": state, "uuid": str(table.metadata.table_uuid)}


def add_catalog_arguments(parser):
    """CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--catalog-name NAME] [--s3-endpoint URL]."""
    parser.add_argument("catalog_uri")
    parser.add_argument("warehouse")
    parser.add_argument("table")
    parser.add_argument("--catalog-name", default="kappa")
    parser.add_argument("--s3-endpoint")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["pyiceberg", "duckdb"])
    add_catalog_arguments(parser)
    parser.add_argument("--kappa-metadata", action="store_true")
    args = parser.parse_args()
    names, rows = (rows_pyiceberg if args.engine == "pyiceberg" else rows_duckdb)(args)
    keys = {(r["_kafka_partition"], r["_kafka_offset"]) for r in rows} if "_kafka_offset" in names else set()
    ids = {r["event_id"] for r in rows} if "event_id" in names else set()
    result = {
        "engine": args.engine,
        "rows": len(rows),
        "distinct_coordinates": len(keys),
        "distinct_event_ids": len(ids),
        "checksum": str(checksum(rows)) if "event_id" in names else None,
        "columns": names,
    }
    if args.kappa_metadata:
        result.update(kappa_metadata(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
