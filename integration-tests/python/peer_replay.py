"""The benchmark's peer: `kappa replay` of an orders archive, written as a data engineer would in
plain Python (fastavro's C reader, pyarrow columns, one PyIceberg append).

Usage: peer_replay.py --archive DIR --topic TOPIC --warehouse DIR [--schema ID=PATH.avsc ...]

Reads the Kafka Connect S3-sink archive under DIR/TOPIC/ (files `<topic>+<partition>+<start>.avro`
in `partition=<p>/` or `year=/month=/day=/hour=/` directories; codec null, deflate, snappy or
zstandard), in (partition, start offset, position) order; a record's offset is the file's start
offset plus its index. Each file's writer schema says what its records are: a record schema is
the orders value itself (AvroConverter); `"bytes"` is the raw message value in the Confluent wire
format (magic 0, 4-byte big-endian schema id, Avro body), decoded with the `--schema ID=PATH`
of that id. A raw value that does not decode (bad magic, unknown id, truncated or with trailing
bytes) is dead. Then the orders contract, as Kappa's `orders` logic applies it: a negative
`amount_cents` is rejected (and does not count as the first copy of its event_id), a later copy
of an event_id already kept is a duplicate and dropped, and `currency` is upper-cased.

Writes PyIceberg's SqlCatalog (SQLite `<warehouse>/catalog.db`, warehouse `file://<warehouse>`)
table `peer.orders` (dropped and recreated): the columns of contracts/orders-value/2.avsc (ids as
Kappa numbers them: version 1's fields, `_kafka_partition`, `_kafka_offset`, then version 2's
additions; rows written with version 1 have NULL there), partitioned by day(event_time), ZSTD
Parquet, with one append.

Prints the counts, then as its last line {"rows", "read", "dead", "rejected", "duplicates",
"files", "seconds", "read_seconds", "write_seconds"}: "dead" counts undecodable values only
(Kappa's dead letters are "dead" + "rejected"); the times run from after dropping the old table
(Python start-up and imports are not counted).
"""

import argparse
import io
import json
import pathlib
import re
import time

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
from fastavro.logical_readers import LOGICAL_READERS
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import IntegerType, LongType, NestedField, StringType, TimestamptzType

# fastavro turns every uuid into a uuid.UUID and every timestamp into a datetime, which costs
# more than the decode itself and would be turned straight back into a string and an integer:
# keep the Avro values (the uuid's string, the timestamp's long).
for _logical in ("string-uuid", "long-timestamp-millis", "long-timestamp-micros"):
    LOGICAL_READERS.pop(_logical, None)

# Rows per Arrow batch.
BATCH_ROWS = 8_192

NAMESPACE = "peer"
TABLE = "orders"

# contracts/orders-value/2.avsc, in Kappa's column order and field ids.
ICEBERG_SCHEMA = Schema(
    NestedField(1, "event_id", StringType(), required=True),
    NestedField(2, "event_type", StringType(), required=True),
    NestedField(3, "order_id", StringType(), required=True),
    NestedField(4, "user_id", StringType(), required=False),
    NestedField(5, "restaurant_id", StringType(), required=True),
    NestedField(6, "amount_cents", LongType(), required=True),
    NestedField(7, "currency", StringType(), required=True),
    NestedField(8, "event_time", TimestamptzType(), required=True),
    NestedField(9, "_kafka_partition", IntegerType(), required=True),
    NestedField(10, "_kafka_offset", LongType(), required=True),
    NestedField(11, "coupon_code", StringType(), required=False),
    NestedField(12, "tip_cents", LongType(), required=False),
)
PARTITION_SPEC = PartitionSpec(
    PartitionField(source_id=8, field_id=1000, transform=DayTransform(), name="event_time_day")
)
ARROW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("restaurant_id", pa.string(), nullable=False),
        pa.field("amount_cents", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("_kafka_partition", pa.int32(), nullable=False),
        pa.field("_kafka_offset", pa.int64(), nullable=False),
        pa.field("coupon_code", pa.string()),
        pa.field("tip_cents", pa.int64()),
    ]
)
# What the decoded values become before the coordinates are added: event_time still the Avro
# long (`Replay.flush` scales it to microseconds). A missing key (a v1 record's coupon_code)
# becomes NULL.
VALUE_SCHEMA = pa.schema(
    [f.with_type(pa.int64()) if f.name == "event_time" else f for f in ARROW_SCHEMA
     if not f.name.startswith("_kafka_")]
)


def archive_files(archive, topic):
    """[(partition, start_offset, path)] of the topic's archive, in replay order."""
    name = re.compile(re.escape(topic) + r"\+(\d+)\+(\d+)\.avro")
    files = []
    for path in (pathlib.Path(archive) / topic).rglob("*.avro"):
        found = name.fullmatch(path.name)
        if found:
            files.append((int(found.group(1)), int(found.group(2)), str(path)))
    files.sort()
    return files


def micros_per_unit(schema):
    """What a record schema's `event_time` long is multiplied by to be microseconds."""
    for field in schema["fields"]:
        if field["name"] == "event_time":
            logical = field["type"].get("logicalType") if isinstance(field["type"], dict) else None
            return 1 if logical == "timestamp-micros" else 1000
    raise SystemExit(f"writer schema {schema.get('name')} has no event_time field")


class WireSchemas:
    """The --schema ID=PATH files, each parsed once when its id is first seen."""

    def __init__(self, specs):
        self.paths = {}
        for spec in specs:
            schema_id, _, path = spec.partition("=")
            self.paths[int(schema_id)] = path
        self.parsed = {}

    def get(self, schema_id):
        """(parsed schema, micros per unit), or None for an unknown id."""
        found = self.parsed.get(schema_id)
        if found is None and schema_id in self.paths:
            with open(self.paths[schema_id]) as f:
                schema = fastavro.parse_schema(json.load(f))
            found = self.parsed[schema_id] = (schema, micros_per_unit(schema))
        return found


class Replay:
    """The rows kept so far and the counts."""

    def __init__(self, wire_schemas):
        self.wire = wire_schemas
        self.seen = set()
        self.batches = []
        # Kept values not yet in a batch (archives of many small files would otherwise make
        # many tiny batches), and what their event_time long is multiplied by.
        self.values, self.partitions, self.offsets, self.scale = [], [], [], 1
        self.read = self.dead = self.rejected = self.duplicates = 0

    def keep(self, records, offsets, partition, scale):
        """Applies the contract to one file's decoded values, in offset order."""
        if scale != self.scale:
            self.flush()
            self.scale = scale
        values, kept_offsets, seen = self.values, self.offsets, self.seen
        before = len(values)
        for record, offset in zip(records, offsets):
            if record["amount_cents"] < 0:
                self.rejected += 1
            elif record["event_id"] in seen:
                self.duplicates += 1
            else:
                seen.add(record["event_id"])
                values.append(record)
                kept_offsets.append(offset)
        self.partitions += [partition] * (len(values) - before)
        if len(values) >= BATCH_ROWS:
            self.flush()

    def flush(self):
        """The pending values as one Arrow batch."""
        if not self.values:
            return
        columns = pa.RecordBatch.from_pylist(self.values, schema=VALUE_SCHEMA).columns
        event_time = columns[7] if self.scale == 1 else pc.multiply(columns[7], self.scale)
        columns[7] = event_time.cast(pa.timestamp("us", tz="UTC"))
        columns[8:8] = [pa.array(self.partitions, pa.int32()), pa.array(self.offsets, pa.int64())]
        self.batches.append(pa.RecordBatch.from_arrays(columns, schema=ARROW_SCHEMA))
        self.values, self.partitions, self.offsets = [], [], []

    def file(self, partition, start, path):
        """Reads one archive file (the writer schema in its header says which shape)."""
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            writer_schema = reader.writer_schema
            if writer_schema == "bytes":
                self.raw_file(partition, start, reader)
            elif isinstance(writer_schema, dict) and writer_schema.get("type") == "record":
                records = list(reader)
                self.read += len(records)
                self.keep(records, range(start, start + len(records)), partition,
                          micros_per_unit(writer_schema))
            else:
                raise SystemExit(f"{path}: unsupported writer schema {json.dumps(writer_schema)}")

    def raw_file(self, partition, start, reader):
        """Wire-format values: decoded one by one, each with its id's schema."""
        records, offsets = [], []
        schemaless_reader = fastavro.schemaless_reader
        wire = self.wire
        for offset, value in enumerate(reader, start):
            self.read += 1
            found = wire.get(int.from_bytes(value[1:5], "big")) if len(value) >= 5 and value[0] == 0 else None
            if found is None:
                self.dead += 1
                continue
            body = io.BytesIO(value)
            body.seek(5)
            try:
                record = schemaless_reader(body, found[0], None)
            except Exception:  # truncated, a bad enum index or union branch, bad UTF-8
                self.dead += 1
                continue
            if body.tell() != len(value):  # trailing bytes: not this schema's value
                self.dead += 1
                continue
            # Values of different ids share a file: each is scaled to microseconds here.
            if found[1] != 1:
                record["event_time"] *= found[1]
            records.append(record)
            offsets.append(offset)
        self.keep(records, offsets, partition, 1)

    def table(self):
        self.flush()
        table = pa.Table.from_batches(self.batches, schema=ARROW_SCHEMA)
        currency = ARROW_SCHEMA.get_field_index("currency")
        return table.set_column(currency, ARROW_SCHEMA.field(currency),
                                pc.ascii_upper(table.column(currency)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", required=True, help="the archive's root (holds TOPIC/)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--warehouse", required=True, help="a local directory")
    parser.add_argument("--schema", action="append", default=[], metavar="ID=PATH.avsc",
                        help="the writer schema of wire-format values with this id (repeatable)")
    args = parser.parse_args()

    warehouse = pathlib.Path(args.warehouse).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(NAMESPACE, uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
    catalog.create_namespace_if_not_exists(NAMESPACE)
    identifier = f"{NAMESPACE}.{TABLE}"
    if catalog.table_exists(identifier):
        catalog.purge_table(identifier)

    started = time.perf_counter()
    files = archive_files(args.archive, args.topic)
    replay = Replay(WireSchemas(args.schema))
    for partition, start, path in files:
        replay.file(partition, start, path)
    rows = replay.table()
    read_done = time.perf_counter()

    table = catalog.create_table(
        identifier,
        schema=ICEBERG_SCHEMA,
        partition_spec=PARTITION_SPEC,
        properties={"write.parquet.compression-codec": "zstd"},
    )
    table.append(rows)
    finished = time.perf_counter()

    print(f"{len(files)} files, {replay.read} records: {rows.num_rows} rows, {replay.dead} dead "
          f"(undecodable), {replay.rejected} rejected, {replay.duplicates} duplicates")
    print(json.dumps({
        "rows": rows.num_rows,
        "read": replay.read,
        "dead": replay.dead,
        "rejected": replay.rejected,
        "duplicates": replay.duplicates,
        "files": len(files),
        "seconds": round(finished - started, 3),
        "read_seconds": round(read_done - started, 3),
        "write_seconds": round(finished - read_done, 3),
    }))


if __name__ == "__main__":
    main()
