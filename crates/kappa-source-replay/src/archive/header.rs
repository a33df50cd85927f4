//! The framing of an Avro object container file, read without decoding records: the header's
//! writer schema, checked before `apache-avro` parses it ([`kappa_schema::names`]: a bad name
//! there would panic, as would an empty `avro.codec.compression_level`), and the blocks, each
//! checked against the header's sync marker.
//!
//! ```text
//! "Obj" 0x01 │ metadata: map<bytes> in blocks (count, [byte size if count < 0], key, value)… 0 │ sync (16)
//! block: record count │ byte size │ data (compressed by the header's codec) │ sync (16)
//! ```

/// The header of a container file.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    /// The raw `avro.schema` metadata entry, if any.
    pub schema: Option<&'a [u8]>,
    /// The raw `avro.codec` metadata entry, if any (absent: `null`).
    pub codec: Option<&'a [u8]>,
    /// Bytes of the header, sync marker included.
    pub len: usize,
    /// The sync marker every block ends with.
    pub sync: &'a [u8],
}

/// One block of records.
#[derive(Debug)]
pub(crate) struct Block {
    /// Records the block says it holds.
    pub count: u64,
    /// Byte range of the whole block (count, size, data, sync) in the file.
    pub range: std::ops::Range<usize>,
    /// Byte range of the block's data (compressed by the header's codec) in the file.
    pub data: std::ops::Range<usize>,
}

/// Reads the header; an error says what is wrong with it.
pub(crate) fn header(bytes: &[u8]) -> Result<Header<'_>, String> {
    if !bytes.starts_with(b"Obj\x01") {
        return Err("not an Avro object container file (no \"Obj\\x01\" magic)".into());
    }
    let mut cursor = Cursor { bytes, at: 4 };
    let mut schema = None;
    let mut codec = None;
    loop {
        let count = cursor.long("metadata block count")?;
        if count == 0 {
            break;
        }
        if count < 0 {
            cursor.long("metadata block size")?;
        }
        for _ in 0..count.unsigned_abs() {
            let key = cursor.bytes("metadata key")?;
            let value = cursor.bytes("metadata value")?;
            match key {
                b"avro.schema" => schema = Some(value),
                b"avro.codec" => codec = Some(value),
                // apache-avro 0.21 indexes its first byte without a check.
                b"avro.codec.compression_level" if value.is_empty() => {
                    return Err("the header's avro.codec.compression_level is empty".into());
                }
                _ => {}
            }
        }
    }
    let sync = cursor.take(16, "header sync marker")?;
    Ok(Header {
        schema,
        codec,
        len: cursor.at,
        sync,
    })
}

/// The blocks after `header`, each ending with its sync marker; a block that says it holds no
/// records but has data, or more records than `max_count`, is an error naming the block.
pub(crate) fn blocks(
    bytes: &[u8],
    header: &Header<'_>,
    max_count: u64,
) -> Result<Vec<Block>, String> {
    let mut cursor = Cursor {
        bytes,
        at: header.len,
    };
    let mut blocks = Vec::new();
    while cursor.at < bytes.len() {
        let start = cursor.at;
        let index = blocks.len();
        let count = cursor.long("block record count")?;
        let size = cursor.long("block size")?;
        let (Ok(count), Ok(size)) = (u64::try_from(count), usize::try_from(size)) else {
            return Err(format!(
                "block {index} at byte {start}: negative record count {count} or size {size}"
            ));
        };
        if count == 0 && size > 0 {
            return Err(format!(
                "block {index} at byte {start}: {size} bytes of data but a record count of 0"
            ));
        }
        if count > max_count {
            return Err(format!(
                "block {index} at byte {start}: a record count of {count}, more than the {max_count} a block may hold"
            ));
        }
        let data_start = cursor.at;
        cursor.take(size, "block data")?;
        let data = data_start..cursor.at;
        let sync = cursor.take(16, "block sync marker")?;
        if sync != header.sync {
            return Err(format!(
                "block {index} at byte {start}: the sync marker after the block does not match the header's"
            ));
        }
        blocks.push(Block {
            count,
            range: start..cursor.at,
            data,
        });
    }
    Ok(blocks)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A zigzag varint long.
    fn long(&mut self, what: &str) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| format!("truncated in the {what} at byte {}", self.at))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(format!(
            "the {what} at byte {} is not a valid varint",
            self.at
        ))
    }

    /// A length-prefixed byte string.
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.long(what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what} has length {len}"))?;
        self.take(len, what)
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated in the {what} ({len} bytes at byte {})", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_framing_and_reports_damage() {
        let schema = apache_avro::Schema::parse_str(r#""bytes""#).unwrap();
        let mut writer = apache_avro::Writer::new(&schema, Vec::new());
        writer
            .append(apache_avro::types::Value::Bytes(vec![1, 2]))
            .unwrap();
        writer.flush().unwrap();
        writer
            .append(apache_avro::types::Value::Bytes(vec![3]))
            .unwrap();
        let file = writer.into_inner().unwrap();
        let h = header(&file).unwrap();
        assert_eq!(h.schema, Some(&b"\"bytes\""[..]));
        let found = blocks(&file, &h, 10).unwrap();
        assert_eq!(
            found.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert_eq!(found.last().unwrap().range.end, file.len());
        assert!(header(b"Obx\x01").unwrap_err().contains("magic"));
        assert!(header(&file[..12]).unwrap_err().contains("truncated"));
        // A changed sync marker after the last block, a record count of 0 with data.
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            blocks(&bad, &header(&bad).unwrap(), 10)
                .unwrap_err()
                .contains("sync marker")
        );
        let mut bad = file.clone();
        bad[h.len] = 0;
        let err = blocks(&bad, &header(&bad).unwrap(), 10).unwrap_err();
        assert!(err.contains("record count of 0"), "{err}");
        assert!(
            blocks(&file, &h, 0)
                .unwrap_err()
                .contains("more than the 0")
        );
    }
}
