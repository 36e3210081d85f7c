//! Codice fiscale of a person: shape (with omocodia) and check character.

/// Positions (0-based) that hold digits, or omocodia letters replacing them.
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
const OMOCODIA: &[u8] = b"LMNPQRSTUV";
const MONTHS: &[u8] = b"ABCDEHLMPRST";
/// Value of a character in an odd position (1st, 3rd, …), indexed by digit or letter.
const ODD: [u32; 26] =
    [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];

/// Normalizes (trim, upper case) and checks a codice fiscale; the error says what is wrong.
pub fn check(raw: &str) -> Result<String, String> {
    let cf: String = raw.trim().to_ascii_uppercase();
    let b = cf.as_bytes();
    if b.len() != 16 || !cf.is_ascii() {
        return Err(format!("a codice fiscale has 16 characters, this one has {}", cf.chars().count()));
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = if DIGIT_POSITIONS.contains(&i) {
            c.is_ascii_digit() || OMOCODIA.contains(&c)
        } else if i == 8 {
            MONTHS.contains(&c)
        } else {
            c.is_ascii_uppercase()
        };
        if !ok {
            return Err(format!("character {} of the codice fiscale is not valid there", i + 1));
        }
    }
    let expected = check_char(&b[..15]);
    if b[15] != expected {
        return Err("the check character of the codice fiscale does not match".into());
    }
    Ok(cf)
}

/// The check character of the first 15 characters.
pub fn check_char(first15: &[u8]) -> u8 {
    let value = |c: u8| -> usize {
        if c.is_ascii_digit() {
            usize::from(c - b'0')
        } else {
            usize::from(c.saturating_sub(b'A')).min(25)
        }
    };
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 2 == 0 { ODD[value(c)] } else { value(c) as u32 })
        .sum();
    b'A' + (sum % 26) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_codes() {
        assert_eq!(check("RSSMRA85T10A562S").as_deref(), Ok("RSSMRA85T10A562S"));
        assert_eq!(check(" frrnna41c52f205p ").as_deref(), Ok("FRRNNA41C52F205P"));
    }

    #[test]
    fn omocodia_is_accepted() {
        // RSSMRA85T10A562S with the last digit of the comune code replaced (2 → N).
        let mut base = *b"RSSMRA85T10A56N_";
        base[15] = check_char(&base[..15]);
        assert!(check(std::str::from_utf8(&base).expect("ascii")).is_ok());
    }

    #[test]
    fn wrong_codes_say_why() {
        assert!(check("RSSMRA85T10A562X").unwrap_err().contains("check character"));
        assert!(check("RSSMRA85T10A562").unwrap_err().contains("16 characters"));
        assert!(check("RSSMRA85Z10A562S").unwrap_err().contains("character 9"));
        assert!(check("RSSMRA8AT10A562S").unwrap_err().contains("character 8"));
    }
}
