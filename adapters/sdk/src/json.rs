//! A guard for JSON read from outside, for inbound adapters and the hub alike.
//!
//! Parsers that build a tree recurse once per level of nesting: a body of a few hundred kilobytes
//! of `[` can exhaust a thread's stack, which aborts the whole process, not one request. Check the
//! depth first, without parsing.

/// Where `body` first nests arrays and objects more than `max` levels deep (the byte offset of the
/// bracket that opens level `max + 1`), or `None`. Brackets inside strings do not count; the body
/// need not be valid JSON (the parser that comes next says what else is wrong).
pub fn nesting_exceeds(body: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(offset);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::nesting_exceeds;

    #[test]
    fn the_first_bracket_past_the_limit_is_named() {
        assert_eq!(nesting_exceeds(b"[[[]]]", 3), None);
        assert_eq!(nesting_exceeds(b"[[[[]]]]", 3), Some(3));
        assert_eq!(nesting_exceeds(br#"{"a": [{"b": []}]}"#, 3), Some(13));
        // Siblings do not add up.
        assert_eq!(nesting_exceeds(b"[[], [], [[]]]", 3), None);
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert_eq!(nesting_exceeds(br#"["[[[[", "\"[[[["]"#, 1), None);
        assert_eq!(nesting_exceeds(br#"["\\", [[]]]"#, 2), Some(8));
    }
}
