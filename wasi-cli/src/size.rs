//! Size arguments as rbd parses them (`4K`, `1M`, `8192B`, `10G`).

/// Parse `s` as a byte count; a bare number is in `default_unit` bytes.
/// Accepts `B`, `K`, `M`, `G`, `T`, `P`, `E` (powers of 1024), with an
/// optional trailing `i`/`iB` as in `4KiB`.
pub fn parse_size(s: &str, default_unit: u64) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return Err(format!("invalid size '{s}'"));
    }
    let n: u64 = t[..digits_end]
        .parse()
        .map_err(|_| format!("invalid size '{s}'"))?;
    let suffix = t[digits_end..].trim();
    let suffix = suffix
        .strip_suffix("iB")
        .or_else(|| suffix.strip_suffix('i'))
        .unwrap_or(suffix);
    let mult: u64 = match suffix {
        "" => default_unit,
        "B" | "b" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        "P" | "p" => 1 << 50,
        "E" | "e" => 1 << 60,
        _ => return Err(format!("invalid size '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// clap value parser: bytes by default.
pub fn bytes(s: &str) -> Result<u64, String> {
    parse_size(s, 1)
}

/// clap value parser: MiB by default (`rbd create --size`).
pub fn megabytes(s: &str) -> Result<u64, String> {
    parse_size(s, 1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes("4K"), Ok(4096));
        assert_eq!(bytes("512"), Ok(512));
        assert_eq!(bytes("1M"), Ok(1 << 20));
        assert_eq!(bytes("0"), Ok(0));
        assert_eq!(bytes("8192B"), Ok(8192));
        assert_eq!(megabytes("10"), Ok(10 << 20));
        assert_eq!(megabytes("5G"), Ok(5 << 30));
        assert_eq!(bytes("4KiB"), Ok(4096));
        assert!(bytes("x").is_err());
        assert!(bytes("4Q").is_err());
        assert!(bytes("99999999999E").is_err());
    }
}
