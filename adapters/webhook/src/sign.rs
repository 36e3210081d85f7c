//! Standard Webhooks `v1` signatures (HMAC-SHA256 over `{id}.{timestamp}.{body}`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";

/// A signing secret that cannot be turned into key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret is empty (or `whsec_` with nothing after it).
    #[error("must not be empty")]
    Empty,
    /// The part after `whsec_` is not standard base64.
    #[error("must be `whsec_` followed by standard base64, or a raw string without the prefix")]
    NotBase64,
}

/// Turns a configured secret into HMAC key bytes: `whsec_<base64>` decodes the base64, anything
/// else is used as its UTF-8 bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let key = match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => STANDARD.decode(encoded.trim()).map_err(|_| SecretError::NotBase64)?,
        None => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}

fn mac(secret_key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length, so this constructor cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret_key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header value for one message: `v1,<base64 HMAC-SHA256>` over
/// `{id}.{timestamp}.{body}`, keyed with `secret_key` (the bytes from [`decode_secret`]).
pub fn sign(secret_key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret_key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Why a `webhook-signature` header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header holds no `v1,<base64>` entry.
    #[error("no v1 signature in the webhook-signature header")]
    NoV1Signature,
    /// No `v1` entry matches the message.
    #[error("no signature in the webhook-signature header matches the message")]
    Mismatch,
}

/// Checks a `webhook-signature` header value (one or more space-separated `v1,<base64>` entries;
/// other versions are ignored) against the message, in constant time per entry.
///
/// This checks the signature only. Receivers should also reject a `webhook-timestamp` too far
/// from their clock (the spec suggests five minutes) and deduplicate on `webhook-id`.
pub fn verify(
    secret_key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
) -> Result<(), VerifyError> {
    let mut saw_v1 = false;
    for entry in signature_header.split_whitespace() {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        saw_v1 = true;
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        if mac(secret_key, id, timestamp, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    if saw_v1 {
        Err(VerifyError::Mismatch)
    } else {
        Err(VerifyError::NoV1Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official Standard Webhooks test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn sign_matches_the_standard_webhooks_test_vector() {
        let key = decode_secret(SECRET).unwrap();
        assert_eq!(sign(&key, MSG_ID, TIMESTAMP, PAYLOAD), SIGNATURE);
    }

    #[test]
    fn verify_accepts_the_test_vector_among_other_entries() {
        let key = decode_secret(SECRET).unwrap();
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP, PAYLOAD, SIGNATURE), Ok(()));
        let header = format!("v2,abc v1,AAAA {SIGNATURE}");
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP, PAYLOAD, &header), Ok(()));
    }

    #[test]
    fn verify_rejects_tampering() {
        let key = decode_secret(SECRET).unwrap();
        let tampered_body = br#"{"test": 2432232315}"#;
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP, tampered_body, SIGNATURE), Err(VerifyError::Mismatch));
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP + 1, PAYLOAD, SIGNATURE), Err(VerifyError::Mismatch));
        assert_eq!(verify(b"other key", MSG_ID, TIMESTAMP, PAYLOAD, SIGNATURE), Err(VerifyError::Mismatch));
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP, PAYLOAD, "v1a,xyz"), Err(VerifyError::NoV1Signature));
        assert_eq!(verify(&key, MSG_ID, TIMESTAMP, PAYLOAD, "v1,not-base64!"), Err(VerifyError::Mismatch));
    }

    #[test]
    fn secrets_decode_with_or_without_prefix() {
        assert_eq!(decode_secret("raw-key").unwrap(), b"raw-key");
        assert_eq!(decode_secret("whsec_aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_secret(""), Err(SecretError::Empty));
        assert_eq!(decode_secret("whsec_"), Err(SecretError::Empty));
        assert_eq!(decode_secret("whsec_***"), Err(SecretError::NotBase64));
    }
}
