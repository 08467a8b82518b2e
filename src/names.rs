//! What a name may hold: letters, digits, `-` and `_`. The provider's rule for snapshot
//! names (API.md), which snaprotd also applies to policy names, and which the simulator
//! enforces; written once here so the three cannot drift apart.

/// Whether `c` may stand in a name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `name` is a plain name: not empty, and only characters [`is_name_char`] allows.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_hyphens_and_underscores_only() {
        assert!(is_plain_name("nightly-2026_11"));
        assert!(is_plain_name("A9"));
        for bad in ["", "night ly", "a.b", "a/b", "ä", "a@b", "a\n"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
