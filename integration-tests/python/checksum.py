"""The order-independent content checksum of an orders table (see crates/kappa-synth/src/checksum.rs).

canonical = "event_id|event_type|order_id|user_id|restaurant_id|amount_cents|currency|event_time_us|coupon_code|tip_cents"
(NULL or absent as ""), sha256, first 8 bytes big-endian, summed modulo 2**64.
"""

import datetime
import hashlib

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(value):
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def text(value):
    return "" if value is None else str(value)


def canonical(row):
    return "|".join([
        text(row["event_id"]),
        text(row["event_type"]),
        text(row["order_id"]),
        text(row.get("user_id")),
        text(row["restaurant_id"]),
        str(row["amount_cents"]),
        text(row["currency"]),
        str(micros(row["event_time"])),
        text(row.get("coupon_code")),
        text(row.get("tip_cents")),
    ])


def checksum(rows):
    total = 0
    for row in rows:
        digest = hashlib.sha256(canonical(row).encode()).digest()
        total = (total + int.from_bytes(digest[:8], "big")) % (1 << 64)
    return total
