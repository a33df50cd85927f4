"""Every row of a table as a query engine returns it, in canonical JSON, for exact comparison.

Usage: dump_rows.py ENGINE CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--catalog-name NAME] [--s3-endpoint URL]

ENGINE is `pyiceberg` or `duckdb` (as read_table.py opens them). Prints one JSON object
{"engine": E, "columns": [...], "types": {...}, "rows": [...]}, the rows ordered by
(_kafka_partition, _kafka_offset), each value canonical whatever the engine's Python types:
decimal -> its string with the column's scale ("12.50"), timestamp -> microseconds since the epoch
(naive values are taken as UTC), date -> ISO string, time -> microseconds since midnight,
bytes -> lower-case hex, uuid -> its string, list -> list, struct -> object, map -> object of
string keys (key/value pairs sorted by key). "types" maps each column to the engine's type name.
"""

import argparse
import datetime
import decimal
import json
import pathlib
import sys
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_table import add_catalog_arguments, duckdb_scan, sql_catalog  # noqa: E402

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(delta):
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return micros(value - EPOCH)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        # DuckDB returns a MAP as {"key": [...], "value": [...]}.
        if set(value) == {"key", "value"} and isinstance(value["key"], list):
            pairs = zip(value["key"], value["value"])
            return {str(canonical(k)): canonical(v) for k, v in sorted(pairs, key=lambda kv: str(kv[0]))}
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # PyIceberg returns a map as a list of (key, value) tuples.
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(canonical(k)): canonical(v) for k, v in sorted(value, key=lambda kv: str(kv[0]))}
        return [canonical(v) for v in value]
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def dump_pyiceberg(args):
    table = sql_catalog(args).load_table(args.table)
    arrow = table.scan().to_arrow()
    types = {field.name: str(field.type) for field in arrow.schema}
    return arrow.schema.names, types, arrow.to_pylist()


def dump_duckdb(args):
    table = sql_catalog(args).load_table(args.table)
    con, location = duckdb_scan(table.metadata_location, args.s3_endpoint)
    con.execute("SET TimeZone = 'UTC'")
    cursor = con.execute(f"SELECT * FROM iceberg_scan('{location}')")
    names = [d[0] for d in cursor.description]
    types = {d[0]: str(d[1]) for d in cursor.description}
    return names, types, [dict(zip(names, row)) for row in cursor.fetchall()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["pyiceberg", "duckdb"])
    add_catalog_arguments(parser)
    args = parser.parse_args()
    names, types, rows = (dump_pyiceberg if args.engine == "pyiceberg" else dump_duckdb)(args)
    rows = [{k: canonical(v) for k, v in row.items()} for row in rows]
    rows.sort(key=lambda r: (r.get("_kafka_partition"), r.get("_kafka_offset")))
    print(json.dumps({"engine": args.engine, "columns": names, "types": types, "rows": rows}))


if __name__ == "__main__":
    main()
