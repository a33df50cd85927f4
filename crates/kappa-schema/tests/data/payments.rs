// Payments of `payments-v1.avsc` / `payments-v2.avsc`: plain values, their Avro records, and the
// check that a batch holds exactly them. Shared by tests of several crates with `include!` (so it
// is not a module: the including test file brings `apache_avro`, `arrow_array`, `arrow_schema`
// and `uuid` into its dependencies). Expectations are the plain values the records were built from,
// never what the code under test produced.

/// `payments-v1.avsc`.
const PAYMENTS_V1: &str = include_str!("payments-v1.avsc");
/// `payments-v2.avsc`: adds `method.card.network`, `lines[].discount` and `refund`.
const PAYMENTS_V2: &str = include_str!("payments-v2.avsc");

/// The symbols of enum `Status`.
const STATUS: [&str; 3] = ["NEW", "PAID", "REFUNDED"];
/// The symbols of enum `Kind`.
const KIND: [&str; 2] = ["CARD", "TRANSFER"];

#[derive(Debug, Clone, PartialEq)]
struct Card {
    last4: String,
    token: uuid::Uuid,
    /// Days since the epoch.
    expires: i32,
    /// Version 2 only.
    network: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Line {
    sku: String,
    qty: i32,
    /// Unscaled, scale 2.
    price: i64,
    /// Milliseconds since the epoch.
    at: Option<i64>,
    labels: Vec<(String, String)>,
    /// Version 2 only.
    discount: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Extra {
    /// Index into [`STATUS`].
    level: usize,
    weight: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Payment {
    payment_id: uuid::Uuid,
    /// Unscaled, scale 2.
    amount: i64,
    /// Unscaled, scale 4.
    fee: Option<i64>,
    /// Microseconds since the epoch.
    paid_at: i64,
    /// Milliseconds since the epoch.
    created_at: Option<i64>,
    /// Milliseconds since the epoch, local.
    booked_at: i64,
    day: i32,
    /// Milliseconds after midnight.
    opens: i32,
    /// Microseconds after midnight.
    closes: Option<i64>,
    /// Index into [`STATUS`].
    status: usize,
    digest: [u8; 4],
    captured: bool,
    note: Option<String>,
    tags: Vec<String>,
    scores: Option<Vec<Option<i32>>>,
    attrs: Vec<(String, String)>,
    limits: Option<Vec<(String, Option<i64>)>>,
    /// Index into [`KIND`].
    kind: usize,
    card: Option<Card>,
    history: Vec<i64>,
    lines: Vec<Line>,
    extras: Vec<(String, Extra)>,
    ratio: f32,
    raw: Option<Vec<u8>>,
    count: i64,
    /// Version 2 only: reason and parts.
    refund: Option<(String, Vec<String>)>,
}

/// Payment `i`: every optional part set or not, depending on `i`, with values that differ by row
/// (negative amounts, empty and NULL lists and maps, NULL list elements and map values). With
/// `v2`, the fields version 2 adds are set too (else they are `None`).
fn payment(i: i64, v2: bool) -> Payment {
    let odd = i % 2 == 1;
    let n = i32::try_from(i).unwrap_or(0);
    Payment {
        payment_id: uuid::Uuid::from_u128(0x5500_0000_0000_4000_8000_0000_0000_0000 + i as u128),
        amount: if odd { -(12_345 + i) } else { 99_999_999_999 - i },
        fee: (!odd).then_some(123_456_789_012_345 + i),
        paid_at: 1_764_000_000_123_456 + i,
        created_at: odd.then_some(1_764_000_000_789 + i),
        booked_at: 1_764_000_000_001 + i,
        day: 20_400 + n,
        opens: 8 * 3_600_000 + n,
        closes: (!odd).then_some(22 * 3_600_000_000 + i),
        status: (i % 3) as usize,
        digest: [n as u8, 1, 2, 0xff],
        captured: odd,
        note: odd.then(|| format!("note {i}")),
        tags: (0..i % 3).map(|t| format!("tag-{i}-{t}")).collect(),
        scores: (i % 3 != 2).then(|| vec![Some(n), None, Some(-n)]),
        attrs: (0..i % 2 + 1)
            .map(|a| (format!("a{a}"), format!("v{i}-{a}")))
            .collect(),
        limits: odd.then(|| vec![("daily".into(), Some(1_000 + i)), ("weekly".into(), None)]),
        kind: (i % 2) as usize,
        card: (!odd).then(|| Card {
            last4: format!("{:04}", 4242 + i),
            token: uuid::Uuid::from_u128(0xcafe_0000_0000_4000_8000_0000_0000_0000 + i as u128),
            expires: 21_000 + n,
            network: v2.then(|| format!("net-{i}")),
        }),
        history: (0..i % 4).map(|h| 1_000 * i + h).collect(),
        lines: (0..i % 3 + 1)
            .map(|l| Line {
                sku: format!("sku-{i}-{l}"),
                qty: n + l as i32,
                price: 1_999 * (l + 1) + i,
                at: (l % 2 == 0).then_some(1_764_000_001_000 + i + l),
                labels: (0..l).map(|k| (format!("k{k}"), format!("l{i}-{k}"))).collect(),
                discount: (v2 && l % 2 == 1).then_some(5 + n),
            })
            .collect(),
        extras: (0..i % 3)
            .map(|e| {
                (
                    format!("x{e}"),
                    Extra {
                        level: ((i + e) % 3) as usize,
                        weight: 0.5 * (i + e) as f64,
                    },
                )
            })
            .collect(),
        ratio: 0.25 * i as f32,
        raw: odd.then(|| vec![0, n as u8, 0xfe]),
        count: -7 * i,
        refund: (v2 && !odd).then(|| (format!("reason {i}"), vec![format!("part-{i}")])),
    }
}

/// The Avro record of `p` for `payments-v1.avsc`, or with `v2` for `payments-v2.avsc`.
fn payment_record(p: &Payment, v2: bool) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    let optional = |value: Option<Value>| match value {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let decimal = |unscaled: i64| Value::Decimal(apache_avro::Decimal::from(unscaled.to_be_bytes()));
    let map = |entries: Vec<(String, Value)>| Value::Map(entries.into_iter().collect());
    let strings = |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
    let card = p.card.as_ref().map(|c| {
        let mut fields = vec![
            ("last4".to_string(), Value::String(c.last4.clone())),
            ("token".to_string(), Value::Uuid(c.token)),
            ("expires".to_string(), Value::Date(c.expires)),
        ];
        if v2 {
            fields.push((
                "network".to_string(),
                optional(c.network.clone().map(Value::String)),
            ));
        }
        Value::Record(fields)
    });
    let lines = p
        .lines
        .iter()
        .map(|l| {
            let mut fields = vec![
                ("sku".to_string(), Value::String(l.sku.clone())),
                ("qty".to_string(), Value::Int(l.qty)),
                ("price".to_string(), decimal(l.price)),
                ("at".to_string(), optional(l.at.map(Value::TimestampMillis))),
                (
                    "labels".to_string(),
                    map(l.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect()),
                ),
            ];
            if v2 {
                fields.push(("discount".to_string(), optional(l.discount.map(Value::Int))));
            }
            Value::Record(fields)
        })
        .collect();
    let mut fields = vec![
        ("payment_id", Value::Uuid(p.payment_id)),
        ("amount", decimal(p.amount)),
        ("fee", optional(p.fee.map(decimal))),
        ("paid_at", Value::TimestampMicros(p.paid_at)),
        ("created_at", optional(p.created_at.map(Value::TimestampMillis))),
        ("booked_at", Value::LocalTimestampMillis(p.booked_at)),
        ("day", Value::Date(p.day)),
        ("opens", Value::TimeMillis(p.opens)),
        ("closes", optional(p.closes.map(Value::TimeMicros))),
        (
            "status",
            Value::Enum(p.status as u32, STATUS[p.status].to_string()),
        ),
        ("digest", Value::Fixed(4, p.digest.to_vec())),
        ("captured", Value::Boolean(p.captured)),
        ("note", optional(p.note.clone().map(Value::String))),
        ("tags", strings(&p.tags)),
        (
            "scores",
            optional(p.scores.as_ref().map(|s| {
                Value::Array(s.iter().map(|v| optional(v.map(Value::Int))).collect())
            })),
        ),
        (
            "attrs",
            map(p
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()),
        ),
        (
            "limits",
            optional(p.limits.as_ref().map(|l| {
                map(l.iter()
                    .map(|(k, v)| (k.clone(), optional(v.map(Value::Long))))
                    .collect())
            })),
        ),
        (
            "method",
            Value::Record(vec![
                (
                    "kind".to_string(),
                    Value::Enum(p.kind as u32, KIND[p.kind].to_string()),
                ),
                ("card".to_string(), optional(card)),
                (
                    "history".to_string(),
                    Value::Array(p.history.iter().map(|h| Value::Long(*h)).collect()),
                ),
            ]),
        ),
        ("lines", Value::Array(lines)),
        (
            "extras",
            map(p
                .extras
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        Value::Record(vec![
                            (
                                "level".to_string(),
                                Value::Enum(e.level as u32, STATUS[e.level].to_string()),
                            ),
                            ("weight".to_string(), Value::Double(e.weight)),
                        ]),
                    )
                })
                .collect()),
        ),
        ("ratio", Value::Float(p.ratio)),
        ("raw", optional(p.raw.clone().map(Value::Bytes))),
        ("count", Value::Long(p.count)),
    ];
    if v2 {
        fields.push((
            "refund",
            optional(p.refund.as_ref().map(|(reason, parts)| {
                Value::Record(vec![
                    ("reason".to_string(), Value::String(reason.clone())),
                    ("parts".to_string(), strings(parts)),
                ])
            })),
        ));
    }
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// What one row of a batch holds, read back into a [`Payment`]: reading goes by column and
/// field name, and takes the leaf types a reader may choose (a string column as `Utf8` or
/// `Utf8View`, `binary` as `Binary` or `LargeBinary`).
mod read_back {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
        Time64MicrosecondType, TimestampMicrosecondType,
    };
    use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
    use arrow_schema::{DataType, TimeUnit};

    pub fn column(batch: &RecordBatch, name: &str) -> ArrayRef {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()))
            .clone()
    }

    pub fn field(array: &StructArray, name: &str) -> ArrayRef {
        array
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no field {name} in {:?}", array.data_type()))
            .clone()
    }

    pub fn string(a: &ArrayRef, i: usize) -> Option<String> {
        let value = match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
            DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
            DataType::Utf8View => a.as_string_view().value(i).to_string(),
            other => panic!("not a string: {other:?}"),
        };
        a.is_valid(i).then_some(value)
    }

    pub fn binary(a: &ArrayRef, i: usize) -> Option<Vec<u8>> {
        let value = match a.data_type() {
            DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
            DataType::LargeBinary => a.as_binary::<i64>().value(i).to_vec(),
            DataType::BinaryView => a.as_binary_view().value(i).to_vec(),
            other => panic!("not binary: {other:?}"),
        };
        a.is_valid(i).then_some(value)
    }

    pub fn fixed(a: &ArrayRef, i: usize) -> Option<Vec<u8>> {
        let a = a.as_fixed_size_binary();
        a.is_valid(i).then(|| a.value(i).to_vec())
    }

    pub fn int(a: &ArrayRef, i: usize) -> Option<i32> {
        let a = a.as_primitive::<Int32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn long(a: &ArrayRef, i: usize) -> Option<i64> {
        let a = a.as_primitive::<Int64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn float(a: &ArrayRef, i: usize) -> Option<f32> {
        let a = a.as_primitive::<Float32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn double(a: &ArrayRef, i: usize) -> Option<f64> {
        let a = a.as_primitive::<Float64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn boolean(a: &ArrayRef, i: usize) -> Option<bool> {
        let a = a.as_boolean();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn date(a: &ArrayRef, i: usize) -> Option<i32> {
        let a = a.as_primitive::<Date32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// A decimal's unscaled value, checking its precision and scale.
    pub fn decimal(a: &ArrayRef, i: usize, precision: u8, scale: i8) -> Option<i64> {
        assert_eq!(a.data_type(), &DataType::Decimal128(precision, scale));
        let a = a.as_primitive::<Decimal128Type>();
        a.is_valid(i).then(|| i64::try_from(a.value(i)).unwrap())
    }

    /// Microseconds, checking the column is a timestamp in microseconds (UTC or not).
    pub fn micros(a: &ArrayRef, i: usize, utc: bool) -> Option<i64> {
        match a.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                assert_eq!(tz.is_some(), utc, "{:?}", a.data_type());
            }
            other => panic!("not a timestamp in microseconds: {other:?}"),
        }
        let a = a.as_primitive::<TimestampMicrosecondType>();
        a.is_valid(i).then(|| a.value(i))
    }

    pub fn time(a: &ArrayRef, i: usize) -> Option<i64> {
        let a = a.as_primitive::<Time64MicrosecondType>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// The elements of row `i` of a list column.
    pub fn list(a: &ArrayRef, i: usize) -> Option<ArrayRef> {
        let a = a.as_list::<i32>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// The keys and values of row `i` of a map column.
    pub fn map(a: &ArrayRef, i: usize) -> Option<(ArrayRef, ArrayRef)> {
        let a = a.as_map();
        a.is_valid(i).then(|| {
            let entries = a.value(i);
            (entries.column(0).clone(), entries.column(1).clone())
        })
    }
}

use read_row::read_payment;

mod read_row {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, ArrayRef, RecordBatch};

    use super::read_back::*;
    use super::{Card, Extra, KIND, Line, Payment, STATUS};

    /// Row `i` of `batch` (the value columns of the payments table) as a [`Payment`]; the fields of
    /// version 2 are read when `v2` (`None` where the batch does not have them: a data file written
    /// before the table had them).
    pub fn read_payment(batch: &RecordBatch, i: usize, v2: bool) -> Payment {
        let c = |name: &str| column(batch, name);
        let sorted = |mut entries: Vec<(String, String)>| {
            entries.sort();
            entries
        };
        let string_entries = |(keys, values): (ArrayRef, ArrayRef)| {
            sorted(
                (0..keys.len())
                    .map(|k| (string(&keys, k).unwrap(), string(&values, k).unwrap()))
                    .collect(),
            )
        };
        let status = |a: &ArrayRef, i: usize| {
            let symbol = string(a, i).unwrap();
            STATUS.iter().position(|s| *s == symbol).unwrap()
        };
        let method = c("method");
        let method = method.as_struct();
        assert!(method.is_valid(i));
        let kind_symbol = string(&field(method, "kind"), i).unwrap();
        let card = field(method, "card");
        let card = card.as_struct();
        let lines = list(&c("lines"), i).unwrap();
        let lines = lines.as_struct();
        let refund = v2.then(|| batch.column_by_name("refund").cloned()).flatten();
        Payment {
            payment_id: uuid::Uuid::parse_str(&string(&c("payment_id"), i).unwrap()).unwrap(),
            amount: decimal(&c("amount"), i, 12, 2).unwrap(),
            fee: decimal(&c("fee"), i, 18, 4),
            paid_at: micros(&c("paid_at"), i, true).unwrap(),
            created_at: micros(&c("created_at"), i, true).map(|us| us / 1_000),
            booked_at: micros(&c("booked_at"), i, false).unwrap() / 1_000,
            day: date(&c("day"), i).unwrap(),
            opens: i32::try_from(time(&c("opens"), i).unwrap() / 1_000).unwrap(),
            closes: time(&c("closes"), i),
            status: status(&c("status"), i),
            digest: fixed(&c("digest"), i).unwrap().try_into().unwrap(),
            captured: boolean(&c("captured"), i).unwrap(),
            note: string(&c("note"), i),
            tags: {
                let tags = list(&c("tags"), i).unwrap();
                (0..tags.len()).map(|t| string(&tags, t).unwrap()).collect()
            },
            scores: list(&c("scores"), i).map(|s| (0..s.len()).map(|k| int(&s, k)).collect()),
            attrs: string_entries(map(&c("attrs"), i).unwrap()),
            limits: map(&c("limits"), i).map(|(keys, values)| {
                let mut entries: Vec<(String, Option<i64>)> = (0..keys.len())
                    .map(|k| (string(&keys, k).unwrap(), long(&values, k)))
                    .collect();
                entries.sort();
                entries
            }),
            kind: KIND.iter().position(|k| *k == kind_symbol).unwrap(),
            card: card.is_valid(i).then(|| Card {
                last4: string(&field(card, "last4"), i).unwrap(),
                token: uuid::Uuid::parse_str(&string(&field(card, "token"), i).unwrap()).unwrap(),
                expires: date(&field(card, "expires"), i).unwrap(),
                network: v2
                    .then(|| card.column_by_name("network"))
                    .flatten()
                    .and_then(|network| string(network, i)),
            }),
            history: {
                let history = list(&field(method, "history"), i).unwrap();
                (0..history.len()).map(|h| long(&history, h).unwrap()).collect()
            },
            lines: (0..lines.len())
                .map(|l| Line {
                    sku: string(&field(lines, "sku"), l).unwrap(),
                    qty: int(&field(lines, "qty"), l).unwrap(),
                    price: decimal(&field(lines, "price"), l, 10, 2).unwrap(),
                    at: micros(&field(lines, "at"), l, true).map(|us| us / 1_000),
                    labels: string_entries(map(&field(lines, "labels"), l).unwrap()),
                    discount: v2
                        .then(|| lines.column_by_name("discount"))
                        .flatten()
                        .and_then(|discount| int(discount, l)),
                })
                .collect(),
            extras: {
                let (keys, values) = map(&c("extras"), i).unwrap();
                let values = values.as_struct();
                let mut extras: Vec<(String, Extra)> = (0..keys.len())
                    .map(|k| {
                        (
                            string(&keys, k).unwrap(),
                            Extra {
                                level: status(&field(values, "level"), k),
                                weight: double(&field(values, "weight"), k).unwrap(),
                            },
                        )
                    })
                    .collect();
                extras.sort_by(|a, b| a.0.cmp(&b.0));
                extras
            },
            ratio: float(&c("ratio"), i).unwrap(),
            raw: binary(&c("raw"), i),
            count: long(&c("count"), i).unwrap(),
            refund: refund.and_then(|refund| {
                let refund = refund.as_struct();
                refund.is_valid(i).then(|| {
                    let parts = list(&field(refund, "parts"), i).unwrap();
                    (
                        string(&field(refund, "reason"), i).unwrap(),
                        (0..parts.len()).map(|p| string(&parts, p).unwrap()).collect(),
                    )
                })
            }),
        }
    }
}

/// `p` with its maps' entries in key order (a map's order is not kept: Avro encodes an
/// unordered map), as [`read_payment`] returns them.
fn canonical(p: &Payment) -> Payment {
    let mut p = p.clone();
    p.attrs.sort();
    if let Some(limits) = &mut p.limits {
        limits.sort();
    }
    for line in &mut p.lines {
        line.labels.sort();
    }
    p.extras.sort_by(|a, b| a.0.cmp(&b.0));
    p
}
