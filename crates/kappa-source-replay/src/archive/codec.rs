//! Block decompression through bounded readers.
//!
//! The Avro crates inflate a block in one go, to whatever size the block says or inflates to: a
//! 67 KB zstd block that inflates to 2 GiB, or a snappy block that declares 2 GiB, is allocated
//! before anything can object, and a snappy block shorter than its 4-byte checksum panics inside
//! them. Here every codec inflates within a limit: deflate and zstd into a buffer never larger
//! than the limit (libdeflate and zstd's one-pass decoder stop when the output does not fit; a
//! zstd frame that states a larger size is refused before anything is allocated, and one that
//! declares a large window gets none: its output is its window), and snappy's declared length
//! is checked before its buffer is sized. The Avro crates only ever see inflated,
//! framing-checked bytes.

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
    /// Deflate and zstd are inflated whole into the buffer (deflate by libdeflate), which grows
    /// (doubling, never past `limit`) only when a block does not fit: zstd writes straight into
    /// it instead of through a window it copies out of, and a frame can make it use no other
    /// memory whatever window it declares. Snappy's declared length is checked before the buffer
    /// is sized.
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
                use zstd::zstd_safe::{self, zstd_sys::ZSTD_ErrorCode};
                let too_small =
                    (ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall as usize).wrapping_neg();
                // A frame that states its content size gets that room; Kafka Connect's (written
                // by a streaming encoder) do not, and start from the largest block so far, at
                // least 8 times this one's. Data that needs more (several frames, or a size
                // stated wrong) doubles the room, never past `limit`.
                let declared = zstd_safe::get_frame_content_size(data).ok().flatten();
                if let Some(n) = declared
                    && n > limit as u64
                {
                    return Err(too_big(&n.to_string()));
                }
                let mut size = declared
                    .map_or_else(
                        || self.buffer.capacity().max(data.len().saturating_mul(8)),
                        |n| usize::try_from(n).unwrap_or(limit),
                    )
                    .clamp(1, limit.max(1));
                loop {
                    self.buffer.clear();
                    self.buffer.reserve_exact(size);
                    match self.zstd.decompress(&mut self.buffer, data) {
                        Ok(n) if n > limit => return Err(too_big(&n.to_string())),
                        Ok(_) => return Ok(&self.buffer),
                        Err(code) if code == too_small => {
                            if self.buffer.capacity() >= limit {
                                return Err(too_big(&format!("more than {limit}")));
                            }
                            size = self.buffer.capacity().saturating_mul(2).min(limit);
                        }
                        Err(code) => {
                            return Err(damaged(format!(
                                "zstandard data is damaged: {}",
                                zstd_safe::get_error_name(code)
                            )));
                        }
                    }
                }
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
    fn zstd_frames_inflate_whole_within_the_limit_whatever_they_declare() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let limit = data.len();
        // Stated content size (one-shot encoder) and none (streaming, as Kafka Connect's).
        let stated = zstd::bulk::compress(&data, 3).unwrap();
        let streamed = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&stated).unwrap(),
            Some(data.len() as u64)
        );
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        for frame in [&stated, &streamed] {
            // A fresh inflater starts from 8 times the frame's size and grows to fit.
            let mut inflater = Inflater::default();
            assert_eq!(
                inflater
                    .inflate(Codec::Zstandard, frame, limit, "k")
                    .unwrap(),
                &data[..]
            );
        }
        // Two frames, the first stating only its own size: the second's bytes are not lost.
        let mut two = stated.clone();
        two.extend_from_slice(&streamed);
        let both = [&data[..], &data[..]].concat();
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater
                .inflate(Codec::Zstandard, &two, both.len(), "k")
                .unwrap(),
            &both[..]
        );
        let err = inflater
            .inflate(Codec::Zstandard, &two, both.len() - 1, "k")
            .unwrap_err();
        assert!(matches!(err, InflateError::TooLarge(_)), "{err}");
        // A bomb: 256 MiB of zeros in a few KiB, stated or not, is refused at the limit, and
        // the buffer never grew past it.
        let zeros = vec![0u8; 256 << 20];
        for bomb in [
            zstd::bulk::compress(&zeros, 19).unwrap(),
            zstd::encode_all(&zeros[..], 19).unwrap(),
        ] {
            assert!(bomb.len() < 64 << 10, "{}", bomb.len());
            let mut inflater = Inflater::default();
            let err = inflater
                .inflate(Codec::Zstandard, &bomb, 1 << 20, "the-key")
                .unwrap_err();
            assert!(
                matches!(err, InflateError::TooLarge(_)) && err.to_string().contains("the-key"),
                "{err}"
            );
            assert!(
                inflater.buffer.capacity() <= 2 << 20,
                "{}",
                inflater.buffer.capacity()
            );
        }
        // Damaged data names the codec.
        let mut broken = streamed.clone();
        let middle = broken.len() / 2;
        broken[middle..].iter_mut().for_each(|b| *b ^= 0x5a);
        let err = Inflater::default()
            .inflate(Codec::Zstandard, &broken, limit, "k")
            .unwrap_err();
        assert!(
            matches!(err, InflateError::Damaged(_)) && err.to_string().contains("zstandard"),
            "{err}"
        );
    }
}
