//! Block decompression through bounded readers.
//!
//! The Avro crates inflate a block in one go, to whatever size the block says or inflates to: a
//! 67 KB zstd block that inflates to 2 GiB, or a snappy block that declares 2 GiB, is allocated
//! before anything can object, and a snappy block shorter than its 4-byte checksum panics inside
//! them. Here every codec inflates within a limit: deflate into a buffer never larger than the
//! limit (libdeflate stops when the output does not fit), zstd through [`Read::take`] (one byte
//! past the limit is the error) with its window capped so a frame cannot ask for a larger one,
//! and snappy's declared length is checked before its buffer is sized. The Avro crates only ever
//! see inflated, framing-checked bytes.

use std::io::Read;

/// The codecs of the Avro object container format that Kafka Connect writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// No compression.
    Null,
    /// Raw deflate (RFC 1951, no zlib header).
    Deflate,
    /// Snappy raw block, then the CRC32 (big-endian) of the inflated data.
    Snappy,
    /// A zstd frame.
    Zstandard,
}

impl Codec {
    /// The codec the header's `avro.codec` names (absent: `null`).
    pub(crate) fn from_header(name: Option<&[u8]>) -> Result<Self, String> {
        match name {
            None | Some(b"null") => Ok(Codec::Null),
            Some(b"deflate") => Ok(Codec::Deflate),
            Some(b"snappy") => Ok(Codec::Snappy),
            Some(b"zstandard") => Ok(Codec::Zstandard),
            Some(other) => Err(format!(
                "unsupported codec {:?} in the header's avro.codec; expected null, deflate, snappy or zstandard",
                String::from_utf8_lossy(other)
            )),
        }
    }

    /// The header's name for the codec.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Zstandard => "zstandard",
        }
    }
}

/// Why a block does not inflate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The compressed data is damaged.
    Damaged(String),
    /// It inflates to more than the limit.
    TooLarge(String),
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InflateError::Damaged(m) | InflateError::TooLarge(m) => f.write_str(m),
        }
    }
}

/// Inflates blocks into one buffer reused from block to block (and file to file), with the
/// decompressors' state kept: a replay of small files inflates thousands of blocks, and a fresh
/// buffer and context for each cost more than the data ([`Inflater::inflate`]).
pub(crate) struct Inflater {
    /// The last block's inflated bytes; its capacity is kept.
    buffer: Vec<u8>,
    deflate: libdeflater::Decompressor,
    zstd: zstd::zstd_safe::DCtx<'static>,
    snappy: snap::raw::Decoder,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("buffer", &self.buffer.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self {
            buffer: Vec::new(),
            deflate: libdeflater::Decompressor::new(),
            zstd: zstd::zstd_safe::DCtx::create(),
            snappy: snap::raw::Decoder::new(),
        }
    }
}

impl Inflater {
    /// The inflated bytes of one block's `data`, or why not: damaged data, or more than `limit`
    /// bytes (`limit_key` names the setting that raises the limit). The bytes live until the
    /// next call.
    ///
    /// Deflate is inflated whole by libdeflate into the buffer, which grows (doubling, never past
    /// `limit`) only when a block does not fit; zstd streams through a reused context whose
    /// window is capped; snappy's declared length is checked before the buffer is sized.
    pub(crate) fn inflate<'a>(
        &'a mut self,
        codec: Codec,
        data: &'a [u8],
        limit: usize,
        limit_key: &str,
    ) -> Result<&'a [u8], InflateError> {
        let too_big = |size: &str| {
            InflateError::TooLarge(format!(
                "{} data inflates to {size} bytes, more than the limit of {limit} ({limit_key})",
                codec.name()
            ))
        };
        let damaged = |m: String| InflateError::Damaged(m);
        match codec {
            Codec::Null => {
                if data.len() > limit {
                    return Err(too_big(&data.len().to_string()));
                }
                Ok(data)
            }
            Codec::Deflate => {
                // Kafka Connect's blocks inflate to a few times their size; start from the
                // largest block so far, at least 8 times this one's.
                let mut size = self
                    .buffer
                    .len()
                    .max(data.len().saturating_mul(8))
                    .clamp(1, limit.max(1));
                loop {
                    if self.buffer.len() < size {
                        self.buffer.resize(size, 0);
                    }
                    match self
                        .deflate
                        .deflate_decompress(data, &mut self.buffer[..size])
                    {
                        Ok(n) if n > limit => return Err(too_big(&n.to_string())),
                        Ok(n) => return Ok(&self.buffer[..n]),
                        Err(libdeflater::DecompressionError::InsufficientSpace) => {
                            if size >= limit {
                                return Err(too_big(&format!("more than {limit}")));
                            }
                            size = size.saturating_mul(2).min(limit);
                        }
                        Err(libdeflater::DecompressionError::BadData) => {
                            return Err(damaged(
                                "deflate data is damaged: invalid deflate stream".into(),
                            ));
                        }
                    }
                }
            }
            Codec::Zstandard => {
                use zstd::zstd_safe::{DParameter, ResetDirective};
                let name = zstd::zstd_safe::get_error_name;
                // A session a damaged frame left half-way refuses new parameters: reset it.
                self.zstd
                    .reset(ResetDirective::SessionOnly)
                    .map_err(|code| damaged(format!("zstandard decoder: {}", name(code))))?;
                self.zstd
                    .set_parameter(DParameter::WindowLogMax(zstd_window_log(limit)))
                    .map_err(|code| {
                        damaged(format!(
                            "zstandard decoder: {}",
                            zstd::zstd_safe::get_error_name(code)
                        ))
                    })?;
                let decoder = zstd::stream::read::Decoder::with_context(data, &mut self.zstd);
                read_bounded(decoder, &mut self.buffer, limit, codec, &too_big)?;
                Ok(&self.buffer)
            }
            Codec::Snappy => {
                let Some(split) = data.len().checked_sub(4) else {
                    return Err(damaged(format!(
                        "snappy data is {} bytes, shorter than its 4-byte checksum",
                        data.len()
                    )));
                };
                let (compressed, checksum) = data.split_at(split);
                let declared = snap::raw::decompress_len(compressed)
                    .map_err(|e| damaged(format!("snappy data is damaged: {e}")))?;
                if declared > limit {
                    return Err(too_big(&declared.to_string()));
                }
                self.buffer.resize(declared, 0);
                let n = self
                    .snappy
                    .decompress(compressed, &mut self.buffer)
                    .map_err(|e| damaged(format!("snappy data is damaged: {e}")))?;
                let inflated = &self.buffer[..n];
                let expected =
                    u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
                let actual = crc32fast::hash(inflated);
                if actual != expected {
                    return Err(damaged(format!(
                        "snappy data fails its checksum (CRC32 {actual:08x}, the block says {expected:08x})"
                    )));
                }
                Ok(inflated)
            }
        }
    }
}

/// Reads `reader` to its end into `out` (cleared first, its capacity kept), but never more than
/// `limit + 1` bytes.
fn read_bounded(
    reader: impl Read,
    out: &mut Vec<u8>,
    limit: usize,
    codec: Codec,
    too_big: &dyn Fn(&str) -> InflateError,
) -> Result<(), InflateError> {
    out.clear();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(out)
        .map_err(|e| InflateError::Damaged(format!("{} data is damaged: {e}", codec.name())))?;
    if out.len() > limit {
        return Err(too_big(&format!("more than {limit}")));
    }
    Ok(())
}

/// The largest zstd window a frame may ask for: the block limit rounded up to a power of two,
/// at least 8 MiB (what zstd's levels 1–19 use at most when streaming) and at most 128 MiB (the
/// library's own default cap).
fn zstd_window_log(limit: usize) -> u32 {
    let log = usize::BITS - limit.saturating_sub(1).leading_zeros();
    log.clamp(23, 27)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn snappy(data: &[u8]) -> Vec<u8> {
        let mut out = snap::raw::Encoder::new().compress_vec(data).unwrap();
        out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
        out
    }

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let data = b"kappa ".repeat(1000);
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        for (codec, compressed) in [
            (Codec::Null, data.clone()),
            (Codec::Deflate, deflate(&data)),
            (Codec::Snappy, snappy(&data)),
            (Codec::Zstandard, zstd),
        ] {
            let mut inflater = Inflater::default();
            let out = inflater
                .inflate(codec, &compressed, data.len(), "k")
                .unwrap();
            assert_eq!(out, &data[..], "{codec:?}");
            // A buffer that held a larger block does not leak its tail into a smaller one.
            let small = b"kappa".to_vec();
            let again = match codec {
                Codec::Null => small.clone(),
                Codec::Deflate => deflate(&small),
                Codec::Snappy => snappy(&small),
                Codec::Zstandard => zstd::encode_all(&small[..], 3).unwrap(),
            };
            assert_eq!(
                inflater.inflate(codec, &again, data.len(), "k").unwrap(),
                &small[..],
                "{codec:?}"
            );
            // One byte less than the inflated size is refused, naming the key.
            let err = inflater
                .inflate(codec, &compressed, data.len() - 1, "the-key")
                .unwrap_err();
            assert!(matches!(err, InflateError::TooLarge(_)), "{codec:?}: {err}");
            let err = err.to_string();
            assert!(
                err.contains("more than the limit") && err.contains("the-key"),
                "{codec:?}: {err}"
            );
        }
    }

    #[test]
    fn damaged_and_short_blocks_are_errors_not_panics() {
        for short in [&b""[..], b"\x01", b"\x01\x02\x03"] {
            let err = Inflater::default()
                .inflate(Codec::Snappy, short, 1 << 20, "k")
                .unwrap_err()
                .to_string();
            assert!(err.contains("shorter than its 4-byte checksum"), "{err}");
        }
        let mut bad = snappy(b"hello hello hello");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            Inflater::default()
                .inflate(Codec::Snappy, &bad, 1 << 20, "k")
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        // A snappy block declaring 2 GiB is refused before anything is allocated.
        let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x08];
        huge.extend_from_slice(&[0; 4]);
        let err = Inflater::default()
            .inflate(Codec::Snappy, &huge, 1 << 20, "k")
            .unwrap_err();
        assert!(err.to_string().contains("2147483648"), "{err}");
        let mut inflater = Inflater::default();
        assert!(
            inflater
                .inflate(Codec::Deflate, b"\xff\xff\xff", 1 << 20, "k")
                .is_err()
        );
        assert!(
            inflater
                .inflate(Codec::Zstandard, b"\x28\xb5\x2f\xfd\x00", 1 << 20, "k")
                .is_err()
        );
        // The context is reset after a damaged frame: the next block inflates.
        let data = b"after".repeat(10);
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(
            inflater
                .inflate(Codec::Zstandard, &zstd, 1 << 20, "k")
                .unwrap(),
            &data[..]
        );
        assert!(
            Codec::from_header(Some(b"bzip2"))
                .unwrap_err()
                .contains("bzip2")
        );
        assert_eq!(Codec::from_header(None), Ok(Codec::Null));
    }

    #[test]
    fn the_zstd_window_is_capped() {
        assert_eq!(zstd_window_log(16 << 20), 24);
        assert_eq!(zstd_window_log(1), 23);
        assert_eq!(zstd_window_log(usize::MAX), 27);
    }
}
