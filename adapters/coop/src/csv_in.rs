//! CSV in: decode, find the dialect, stream records one at a time through the mapping.

use std::collections::VecDeque;
use std::io::{Chain, Cursor, Read};

use jaq_json::Val;

use crate::decode::Decode;
use crate::mapping::Delimiter;
use crate::row::{self, Locate};
use crate::{Checks, Mapping, RowError, RowOutcome, RowResult};

/// Most the header line may take when looking for the delimiter.
const HEAD_LIMIT: usize = 64 * 1024;

/// Reads a CSV file through `mapping`, one [`RowResult`] per record (and per blank line), lazily:
/// memory stays flat however long the file is. Read errors end the stream with a `read_error` row.
pub fn read_csv<'a, R: Read + 'a>(
    input: R,
    mapping: &'a Mapping,
    checks: &'a Checks,
) -> impl Iterator<Item = RowResult> + 'a {
    CsvRows::new(input, mapping, checks)
}

type Source<R> = Chain<Cursor<Vec<u8>>, Decode<R>>;

struct CsvRows<'a, R: Read> {
    mapping: &'a Mapping,
    checks: &'a Checks,
    reader: Option<csv::Reader<Source<R>>>,
    headers: Vec<String>,
    keys: Vec<Val>,
    record: csv::StringRecord,
    /// Row number of the last record handed out (the header is row 1).
    row: u64,
    queue: VecDeque<RowResult>,
}

impl<'a, R: Read> CsvRows<'a, R> {
    fn new(input: R, mapping: &'a Mapping, checks: &'a Checks) -> Self {
        let mut rows = Self {
            mapping,
            checks,
            reader: None,
            headers: Vec::new(),
            keys: Vec::new(),
            record: csv::StringRecord::new(),
            row: 0,
            queue: VecDeque::new(),
        };
        if let Err(message) = rows.open(input) {
            rows.queue.push_back(RowResult {
                row: 1,
                outcome: RowOutcome::Rejected(vec![RowError::new(None, "read_error", message)]),
            });
        }
        rows
    }

    /// Decodes the start of the file, picks the delimiter, reads the header.
    fn open(&mut self, input: R) -> Result<(), String> {
        let mut decoded = Decode::new(input, self.mapping.csv.encoding);
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !has_line(&head) && head.len() < HEAD_LIMIT {
            let n = decoded.read(&mut buf).map_err(|e| format!("cannot read the file: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let delimiter = match self.mapping.csv.delimiter {
            Delimiter::Byte(b) => b,
            Delimiter::Auto => sniff(&head),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(Cursor::new(head).chain(decoded));
        let mut header = csv::StringRecord::new();
        match reader.read_record(&mut header) {
            Ok(true) => {}
            Ok(false) => return Ok(()), // empty file: no rows
            Err(e) => return Err(format!("cannot read the header: {e}")),
        }
        self.headers = header.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_string()).collect();
        self.keys = self.headers.iter().map(|h| Val::utf8_str(h.clone())).collect();
        self.row = 1;
        self.reader = Some(reader);
        Ok(())
    }

    fn next_record(&mut self) -> Option<RowResult> {
        let reader = self.reader.as_mut()?;
        match reader.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.reader = None;
                return None;
            }
            Err(e) => {
                self.reader = None;
                self.row += 1;
                return Some(RowResult {
                    row: self.row,
                    outcome: RowOutcome::Rejected(vec![RowError::new(
                        None,
                        "read_error",
                        format!("cannot read the file after row {}: {e}", self.row - 1),
                    )]),
                });
            }
        }
        // The csv reader passes over empty lines: count them, so rows match the spreadsheet's. The
        // lines a record spans are its own line, the newlines inside its quoted fields, and the
        // empty lines before it (the reader counts a CRLF's LF with the next record, which
        // balances out).
        let start = self.record.position().map(|p| p.line()).unwrap_or(0);
        let end = reader.position().line();
        let inside: u64 = self.record.iter().map(|f| f.bytes().filter(|&b| b == b'\n').count() as u64).sum();
        let blanks = end.saturating_sub(start).saturating_sub(1 + inside);
        for _ in 0..blanks {
            self.row += 1;
            self.queue.push_back(RowResult { row: self.row, outcome: skipped("blank line") });
        }
        self.row += 1;
        let outcome = self.outcome();
        self.queue.push_back(RowResult { row: self.row, outcome });
        self.queue.pop_front()
    }

    fn outcome(&self) -> RowOutcome {
        let first = self.record.iter().map(str::trim).find(|c| !c.is_empty());
        let Some(first) = first else { return skipped("blank line") };
        if let Some(re) = self.mapping.csv.skip_rows.iter().find(|re| re.is_match(first)) {
            return skipped(&format!("summary row (matches '{}')", re.as_str()));
        }
        let mut map = jaq_json::Map::default();
        for (i, key) in self.keys.iter().enumerate() {
            let cell = self.record.get(i).unwrap_or("").trim();
            map.insert(key.clone(), Val::utf8_str(cell.to_string()));
        }
        let output = self.mapping.run(Val::obj(map));
        row::build(self.mapping, self.checks, output, self, self.row)
    }
}

fn skipped(reason: &str) -> RowOutcome {
    RowOutcome::Skipped { reason: reason.to_string() }
}

impl<R: Read> Locate for CsvRows<'_, R> {
    fn column(&self, field: &str, value: Option<&str>) -> Option<String> {
        if let Some(c) = self.mapping.columns.get(field) {
            return Some(c.clone());
        }
        let value = value?;
        self.headers
            .iter()
            .enumerate()
            .find(|(i, _)| self.record.get(*i).is_some_and(|c| c.trim().eq_ignore_ascii_case(value)))
            .map(|(_, h)| h.clone())
    }

    fn raw(&self, field: &str) -> Option<String> {
        let column = self.mapping.columns.get(field)?;
        let i = self.headers.iter().position(|h| h == column)?;
        let cell = self.record.get(i)?.trim();
        (!cell.is_empty()).then(|| cell.to_string())
    }
}

impl<R: Read> Iterator for CsvRows<'_, R> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        if let Some(r) = self.queue.pop_front() {
            return Some(r);
        }
        self.next_record()
    }
}

/// Whether `bytes` hold a complete line (a newline outside quotes).
fn has_line(bytes: &[u8]) -> bool {
    first_line(bytes).len() < bytes.len()
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => return &bytes[..i],
            _ => {}
        }
    }
    bytes
}

/// The most frequent of `;`, `,`, tab outside quotes in the header line; `;` when none.
fn sniff(bytes: &[u8]) -> u8 {
    let line = first_line(bytes);
    let mut quoted = false;
    let mut counts = [0usize; 3];
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => counts[0] += 1,
            b',' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b';', b',', b'\t'];
    let (best, n) =
        counts.iter().enumerate().max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i))).unwrap_or((0, &0));
    if *n == 0 {
        b';'
    } else {
        candidates[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_header_delimiter() {
        assert_eq!(sniff(b"a;b;c\n1,5;2;3"), b';');
        assert_eq!(sniff(b"a,b,c\n1;2"), b',');
        assert_eq!(sniff(b"\"a;b\",c,d\n"), b',');
        assert_eq!(sniff(b"a\tb\n"), b'\t');
        assert_eq!(sniff(b"single\n"), b';');
    }
}
