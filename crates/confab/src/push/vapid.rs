//! RFC 8292 VAPID: the server's P-256 key pair and the `Authorization: vapid t=…, k=…` header, an
//! ES256 JWT that tells the push service which application server sends (and whom to contact).

use p256::{
    SecretKey,
    ecdsa::{Signature, SigningKey, signature::Signer},
    elliptic_curve::sec1::ToEncodedPoint,
};
use serde_json::json;

use super::b64;

/// How long a signed header is valid; RFC 8292 §2 allows at most 24 hours.
const TOKEN_TTL_S: u64 = 12 * 3600;

/// The server's VAPID key; the public half is what browsers subscribe with.
pub struct Vapid {
    key: SigningKey,
    /// base64url (no padding) of the uncompressed point, 65 bytes starting with 0x04.
    public: String,
}

impl Vapid {
    /// The key from its 32-byte private scalar; `None` when the bytes are not a valid P-256 key.
    pub fn from_secret(bytes: &[u8]) -> Option<Vapid> {
        let secret = SecretKey::from_slice(bytes).ok()?;
        let public = b64::encode(secret.public_key().to_encoded_point(false).as_bytes());
        Some(Vapid { key: SigningKey::from(secret), public })
    }

    /// The application server key `push_get_vapid` hands out.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a request to a push service at `origin` (scheme, host and
    /// port of the endpoint), signed at `now` (Unix seconds) and naming `subject` as the contact.
    pub fn authorization(&self, origin: &str, subject: &str, now: u64) -> String {
        let header = b64::encode(json!({"typ": "JWT", "alg": "ES256"}).to_string().as_bytes());
        let claims = json!({"aud": origin, "exp": now + TOKEN_TTL_S, "sub": subject});
        let input = format!("{header}.{}", b64::encode(claims.to_string().as_bytes()));
        // ES256: the raw 64-byte r ‖ s form (RFC 7518 §3.4), not DER.
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("vapid t={input}.{}, k={}", b64::encode(&signature.to_bytes()), self.public)
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::{VerifyingKey, signature::Verifier};

    use super::*;

    #[test]
    fn the_header_is_a_verifiable_es256_token() {
        let vapid = Vapid::from_secret(&[3u8; 32]).unwrap();
        let public = b64::decode(vapid.public_key()).unwrap();
        assert_eq!((public.len(), public[0]), (65, 4));
        let header = vapid.authorization("https://push.example:8443", "mailto:ops@example.com", 1_000);
        let rest = header.strip_prefix("vapid t=").unwrap();
        let (token, key) = rest.split_once(", k=").unwrap();
        assert_eq!(key, vapid.public_key());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&b64::decode(sig).unwrap()).unwrap();
        VerifyingKey::from_sec1_bytes(&public).unwrap().verify(input.as_bytes(), &signature).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&b64::decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({"aud": "https://push.example:8443", "exp": 1_000 + TOKEN_TTL_S, "sub": "mailto:ops@example.com"})
        );
        assert!(Vapid::from_secret(&[0u8; 32]).is_none());
    }
}
