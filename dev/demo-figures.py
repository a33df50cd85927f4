"""Prints the figures of a `kappa demo --json` summary (used by `make bench`)."""
import json
import sys

with open(sys.argv[1]) as f:
    s = json.load(f)
print(
    "kappa demo ({:,} events): replay {:,.0f} events/s end to end ({:.2f} s), "
    "peak RSS {:.0f} MiB (generation included), {} commits, {} data files".format(
        s["records_in"],
        s["events_per_second"],
        s["elapsed_seconds"],
        s["peak_rss_bytes"] / 2**20,
        s["commits"],
        s["data_files"],
    )
)
