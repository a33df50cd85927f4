//! Everything the CLI prints goes through here (stdout for results, stderr for errors), and
//! through [`kappa_core::redact`]: no credential of a URI or a secret-named parameter is printed,
//! whichever crate's error or value carries it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use kappa_core::redact::redact;

/// Prints a line of results. A closed stdout (`kappa ... | head`) is not an error worth a panic:
/// the rest of the output is dropped.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{}", redact(text));
}

/// Prints an error.
pub fn error(text: &str) {
    eprintln!("kappa: error: {}", redact(text));
}

/// Formats a count with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_counts() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(999), "999");
        assert_eq!(super::count(1_000), "1,000");
        assert_eq!(super::count(1_234_567), "1,234,567");
        assert_eq!(super::bytes(2048), "2.0 KiB");
    }
}
