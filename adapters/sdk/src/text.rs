//! Text the interchange cannot carry, checked the same way by the hub and by adapters.

/// Why a text cannot be carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// U+0000: no PostgreSQL text column holds it, so one such key would fail the whole group of
    /// requests committed with it.
    Nul,
    /// A control character other than tab, line feed and carriage return (U+0001–U+001F): XML 1.0,
    /// which INPS reads, cannot carry it.
    Control,
}

impl Unfit {
    /// The rule named in error reports.
    pub fn rule(self) -> &'static str {
        match self {
            Unfit::Nul => "nul_character",
            Unfit::Control => "control_character",
        }
    }
}

/// Why `s` cannot be carried, if it cannot: NUL before any other control character.
pub fn unfit(s: &str) -> Option<Unfit> {
    // Every control character is one byte in UTF-8, and no byte of a longer character is below 0x80.
    let mut control = false;
    for b in s.bytes() {
        match b {
            0 => return Some(Unfit::Nul),
            b'\t' | b'\n' | b'\r' => {}
            1..=0x1f => control = true,
            _ => {}
        }
    }
    control.then_some(Unfit::Control)
}

#[cfg(test)]
mod tests {
    use super::{unfit, Unfit};

    #[test]
    fn nul_and_control_characters_are_told_apart_and_text_passes() {
        assert_eq!(unfit("a\tb\r\nc é漢字"), None);
        assert_eq!(unfit("a\u{b}b"), Some(Unfit::Control));
        assert_eq!(unfit("a\u{1f}b\u{0}"), Some(Unfit::Nul), "NUL first, wherever it is");
        assert_eq!(unfit("\u{7f}\u{85}"), None, "DEL and C1 controls are text for XML 1.0");
    }
}
