//! The order-independent content checksum of an orders table.
//!
//! For each row, the canonical string
//! `event_id|event_type|order_id|user_id|restaurant_id|amount_cents|currency|event_time_us|coupon_code|tip_cents`
//! (NULL and absent columns as the empty string, `event_time_us` = microseconds since the epoch),
//! hashed with SHA-256; the first 8 bytes as a big-endian u64; summed with wrapping addition.
//! `integration-tests/python/checksum.py` computes the same from rows a query engine returns.

use sha2::{Digest, Sha256};

/// One row's fields in canonical order.
#[allow(clippy::too_many_arguments)]
pub fn canonical_row(
    event_id: &str,
    event_type: &str,
    order_id: &str,
    user_id: Option<&str>,
    restaurant_id: &str,
    amount_cents: i64,
    currency: &str,
    event_time_us: i64,
    coupon_code: Option<&str>,
    tip_cents: Option<i64>,
) -> String {
    format!(
        "{event_id}|{event_type}|{order_id}|{}|{restaurant_id}|{amount_cents}|{currency}|{event_time_us}|{}|{}",
        user_id.unwrap_or(""),
        coupon_code.unwrap_or(""),
        tip_cents.map(|t| t.to_string()).unwrap_or_default()
    )
}

/// Accumulates the checksum of a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowChecksum(pub u64);

impl RowChecksum {
    /// Adds one canonical row.
    pub fn add(&mut self, canonical: &str) {
        let digest = Sha256::digest(canonical.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.0 = self.0.wrapping_add(u64::from_be_bytes(first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_formula() {
        let row = canonical_row("e", "PAID", "o", None, "r", 5, "EUR", 1_000, None, Some(3));
        assert_eq!(row, "e|PAID|o||r|5|EUR|1000||3");
        let mut sum = RowChecksum::default();
        sum.add(&row);
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.sha256(b'e|PAID|o||r|5|EUR|1000||3').digest()[:8],'big'))"
        assert_eq!(sum.0, 5_407_667_138_231_282_251);
        let mut twice = sum;
        twice.add(&row);
        assert_eq!(twice.0, sum.0.wrapping_mul(2), "order-independent sum");
    }
}
