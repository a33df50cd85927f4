"""Time DuckDB reading a Kappa orders table: a full scan and a one-day filter.

Usage: scan_timing.py METADATA_LOCATION DAY [--runs N]

DAY is YYYY-MM-DD (UTC, of event_time). Each query runs once to warm up, then N times (5); prints
{"full_scan_s": median, "day_scan_s": median, "rows": N, "day_rows": N}. The benchmark runs it
on a table before and after `kappa maintain compact`.
"""

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_table import duckdb_scan  # noqa: E402


def timed(con, sql, runs):
    result = con.execute(sql).fetchall()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = con.execute(sql).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("metadata_location")
    parser.add_argument("day")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    con, location = duckdb_scan(args.metadata_location)
    day = datetime.date.fromisoformat(args.day)
    following = day + datetime.timedelta(days=1)
    full_s, full = timed(con, f"SELECT count(*), sum(amount_cents) FROM iceberg_scan('{location}')", args.runs)
    day_s, one = timed(
        con,
        f"SELECT count(*), sum(amount_cents) FROM iceberg_scan('{location}') "
        f"WHERE event_time >= TIMESTAMPTZ '{day}' AND event_time < TIMESTAMPTZ '{following}'",
        args.runs,
    )
    print(json.dumps({"full_scan_s": full_s, "day_scan_s": day_s, "rows": full[0][0], "day_rows": one[0][0]}))


if __name__ == "__main__":
    main()
