//! The pure mapping from an HTTP answer to a delivery outcome.

use std::time::{Duration, SystemTime};

use csi_gateway_sdk::{Delivered, DeliveryError};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// The longest `Retry-After` the adapter passes on to the hub; longer hints are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of an error response body the adapter reads (the rest is dropped unread).
pub const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// How many characters of the error response body go into a failure reason.
const REASON_BODY_CHARS: usize = 200;

/// Classifies one HTTP answer.
///
/// - 2xx → [`Delivered`] with `HTTP <code>`;
/// - 408, 425, 429, 5xx → [`DeliveryError::Transient`]; 429 and 503 pass on `Retry-After`
///   (delay-seconds or HTTP-date, relative to `now`, capped at [`MAX_RETRY_AFTER`]);
/// - 3xx (redirects are not followed), other 4xx, and anything else →
///   [`DeliveryError::Permanent`].
///
/// Failure reasons read `HTTP 400 Bad Request: <first 200 characters of the body, on one line>`.
/// `body` is the start of the receiver's answer (see [`MAX_ERROR_BODY_BYTES`]); it is not read
/// for 2xx.
pub fn classify_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Delivered, DeliveryError> {
    if status.is_success() {
        return Ok(Delivered { detail: format!("HTTP {}", status.as_u16()) });
    }
    let code = status.as_u16();
    let transient = matches!(code, 408 | 425 | 429) || status.is_server_error();
    let mut reason = status_line(status);
    if status.is_redirection() {
        reason.push_str(" (redirects are not followed)");
    }
    let snippet = one_line_snippet(body, REASON_BODY_CHARS);
    if !snippet.is_empty() {
        reason.push_str(": ");
        reason.push_str(&snippet);
    }
    if !transient {
        return Err(DeliveryError::Permanent { reason });
    }
    let retry_after = if matches!(code, 429 | 503) {
        headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now))
    } else {
        None
    };
    Err(DeliveryError::Transient { reason, retry_after })
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to
/// `now`. A date in the past means "now" (zero). The result is capped at [`MAX_RETRY_AFTER`].
/// Returns `None` for a value that is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// `HTTP 503 Service Unavailable`, or `HTTP 599` for a code without a canonical reason.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(phrase) => format!("HTTP {} {phrase}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The first `max_chars` characters of `body` (lossy UTF-8), with control characters and runs of
/// whitespace folded into single spaces, trimmed; `…` marks a cut.
fn one_line_snippet(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    let mut cut = false;
    for ch in text.chars() {
        if ch.is_whitespace() || ch.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = usize::from(pending_space) + 1;
        if count + needed > max_chars {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(ch);
        count += needed;
    }
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> SystemTime {
        // 2021-02-26T00:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_614_297_600)
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn classify(code: u16, headers: &HeaderMap, body: &[u8]) -> Result<Delivered, DeliveryError> {
        classify_response(StatusCode::from_u16(code).unwrap(), headers, body, now())
    }

    #[test]
    fn success_codes_are_delivered_with_the_code() {
        for code in [200, 201, 202, 204] {
            assert_eq!(
                classify(code, &HeaderMap::new(), b""),
                Ok(Delivered { detail: format!("HTTP {code}") })
            );
        }
    }

    #[test]
    fn retryable_codes_are_transient() {
        for code in [408, 425, 429, 500, 502, 503, 504, 599] {
            let err = classify(code, &HeaderMap::new(), b"").unwrap_err();
            assert!(err.is_transient(), "{code}: {err:?}");
            assert!(err.reason().starts_with(&format!("HTTP {code}")), "{err:?}");
        }
    }

    #[test]
    fn client_errors_and_redirects_are_permanent() {
        for code in [300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 409, 410, 413, 422] {
            let err = classify(code, &HeaderMap::new(), b"").unwrap_err();
            assert!(!err.is_transient(), "{code}: {err:?}");
        }
        let err = classify(301, &HeaderMap::new(), b"").unwrap_err();
        assert_eq!(err.reason(), "HTTP 301 Moved Permanently (redirects are not followed)");
    }

    #[test]
    fn reason_holds_a_one_line_prefix_of_the_body() {
        let err = classify(400, &HeaderMap::new(), b"  missing field\r\n\t`subject`\x07 ").unwrap_err();
        assert_eq!(err, DeliveryError::permanent("HTTP 400 Bad Request: missing field `subject`"));

        let long = "é".repeat(500);
        let err = classify(422, &HeaderMap::new(), long.as_bytes()).unwrap_err();
        let snippet = err.reason().strip_prefix("HTTP 422 Unprocessable Entity: ").unwrap();
        assert_eq!(snippet.chars().count(), REASON_BODY_CHARS + 1);
        assert!(snippet.ends_with('…'));

        let err = classify(400, &HeaderMap::new(), &[0xff, 0xfe, b'x']).unwrap_err();
        assert_eq!(err.reason(), "HTTP 400 Bad Request: \u{fffd}\u{fffd}x");
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let headers = with_retry_after("7");
        for code in [429, 503] {
            match classify(code, &headers, b"") {
                Err(DeliveryError::Transient { retry_after, .. }) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(7)), "{code}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        for code in [408, 500, 502] {
            match classify(code, &headers, b"") {
                Err(DeliveryError::Transient { retry_after, .. }) => {
                    assert_eq!(retry_after, None, "{code}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_caps_at_an_hour() {
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("86400", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("99999999999999999999999", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Fri, 26 Feb 2021 00:01:30 GMT", now()), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Thu, 25 Feb 2021 00:00:00 GMT", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sat, 27 Feb 2021 00:00:00 GMT", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-5", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
    }
}
