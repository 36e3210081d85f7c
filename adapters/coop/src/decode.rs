//! A streaming text decoder: any byte reader in, UTF-8 out, a bounded buffer in between.
//!
//! `auto` decides at the first non-ASCII byte: a UTF-8 byte-order mark or a valid UTF-8 sequence
//! means UTF-8, anything else Windows-1252 (what Excel writes on an Italian Windows). Everything
//! before that byte is ASCII, identical in both, so deciding late loses nothing and the whole file
//! never has to be in memory. A UTF-16 byte-order mark (Excel's "Unicode text") is honoured too.

use std::io::{self, Read};

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8, WINDOWS_1252};

/// The character encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// Decide from the bytes (see the module doc).
    Auto,
    /// UTF-8, with or without byte-order mark.
    Utf8,
    /// Windows-1252 (a byte-order mark, if present, still wins).
    Windows1252,
}

const CHUNK: usize = 16 * 1024;

/// `Read` adapter that yields UTF-8 whatever the source encoding.
pub struct Decode<R> {
    inner: R,
    decoder: Option<Decoder>,
    /// Raw bytes read but not yet decoded (only while `auto` is still undecided, at most a few).
    pending: Vec<u8>,
    /// Decoded bytes not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> Decode<R> {
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        // `new_decoder` sniffs a byte-order mark and lets it override the declared encoding.
        let decoder = match encoding {
            TextEncoding::Auto => None,
            TextEncoding::Utf8 => Some(UTF_8.new_decoder()),
            TextEncoding::Windows1252 => Some(WINDOWS_1252.new_decoder()),
        };
        Self { inner, decoder, pending: Vec::new(), out: Vec::new(), out_pos: 0, eof: false }
    }

    /// Reads one chunk from the source and decodes what can be decoded.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        let mut chunk = [0u8; CHUNK];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let last = n == 0;
        self.eof = last;
        self.pending.extend_from_slice(&chunk[..n]);
        if self.decoder.is_none() {
            match self.pending.iter().position(|b| !b.is_ascii()) {
                None => {
                    // All ASCII so far: the same in every candidate encoding.
                    self.out.append(&mut self.pending);
                    return Ok(());
                }
                Some(i) => {
                    if self.pending.len() - i < 4 && !last {
                        // Not enough bytes to judge the sequence yet: hand out the ASCII prefix.
                        self.out.extend(self.pending.drain(..i));
                        return Ok(());
                    }
                    let rest = &self.pending[i..];
                    let bom16 =
                        i == 0 && (rest.starts_with(&[0xFF, 0xFE]) || rest.starts_with(&[0xFE, 0xFF]));
                    let encoding: &'static Encoding =
                        if bom16 || starts_with_utf8(rest) { UTF_8 } else { WINDOWS_1252 };
                    // Only a mark at the very start is a byte-order mark.
                    self.decoder = Some(if i == 0 {
                        encoding.new_decoder()
                    } else {
                        encoding.new_decoder_without_bom_handling()
                    });
                }
            }
        }
        if let Some(decoder) = self.decoder.as_mut() {
            let input = std::mem::take(&mut self.pending);
            let mut src = &input[..];
            loop {
                let need = decoder.max_utf8_buffer_length(src.len()).unwrap_or(src.len() * 3 + 16);
                let start = self.out.len();
                self.out.resize(start + need.max(16), 0);
                let (result, read, written, _) = decoder.decode_to_utf8(src, &mut self.out[start..], last);
                self.out.truncate(start + written);
                src = &src[read..];
                if result == CoderResult::InputEmpty {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Whether `bytes` (starting at a non-ASCII byte) begin with a well-formed UTF-8 sequence.
fn starts_with_utf8(bytes: &[u8]) -> bool {
    let take = bytes.len().min(4);
    match std::str::from_utf8(&bytes[..take]) {
        Ok(_) => true,
        Err(e) => e.valid_up_to() > 0 || (e.error_len().is_none() && take < 4),
    }
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos >= self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], enc: TextEncoding) -> String {
        let mut s = String::new();
        Decode::new(bytes, enc).read_to_string(&mut s).expect("decodes");
        s
    }

    #[test]
    fn auto_reads_utf8_with_and_without_bom() {
        assert_eq!(decode("più già".as_bytes(), TextEncoding::Auto), "più già");
        assert_eq!(decode(b"\xEF\xBB\xBFpi\xC3\xB9", TextEncoding::Auto), "più");
    }

    #[test]
    fn auto_falls_back_to_windows_1252() {
        assert_eq!(decode(b"visita pi\xF9 lunga; \x80 5", TextEncoding::Auto), "visita più lunga; € 5");
    }

    #[test]
    fn auto_decides_late_after_long_ascii() {
        let mut bytes = vec![b'a'; 100_000];
        bytes.extend_from_slice(b"pi\xF9");
        let s = decode(&bytes, TextEncoding::Auto);
        assert!(s.ends_with("aapiù"));
        assert_eq!(s.len(), 100_000 + 4);
    }

    #[test]
    fn declared_encodings() {
        assert_eq!(decode(b"pi\xF9", TextEncoding::Windows1252), "più");
        assert_eq!(decode(b"\xEF\xBB\xBFpi\xC3\xB9", TextEncoding::Windows1252), "più");
        assert_eq!(decode(b"pi\xF9", TextEncoding::Utf8), "pi\u{FFFD}");
    }

    #[test]
    fn utf16_with_bom() {
        assert_eq!(decode(b"\xFF\xFEa\x00;\x00b\x00", TextEncoding::Auto), "a;b");
    }
}
