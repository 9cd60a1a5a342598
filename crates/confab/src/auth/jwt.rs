//! HS256 access tokens (PROTOCOL §8.4), implemented directly on `hmac` + `sha2`.
//!
//! Why not a general JWT library: the rules here are narrow (HS256 only, `typ` = `at+jwt`, key by
//! `kid`), the header must be judged before the signature is looked at, and a general library pulls
//! RSA/EC code this server must never accept. Every check below maps to one sentence of §8.4.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header `typ` of access tokens; any other kind of token is refused.
pub const ACCESS_TYP: &str = "at+jwt";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const SKEW_S: f64 = 60.0;
/// Lifetime of the `--dev` test token (ten years, "does not expire" in practice); only a server
/// started with `--dev` accepts a token claiming to live this long.
pub const DEV_TOKEN_TTL_S: u64 = 10 * 365 * 24 * 3600;

/// Why a token was refused; the two map to the two wire texts of PROTOCOL §2.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Bad shape, algorithm, type, key, signature, issuer, audience or time window.
    Invalid,
    /// Signature good, but `sub` or `sid` missing or malformed.
    Payload,
}

/// The identity an access token carries once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessIdentity {
    pub user_id: String,
    pub session_id: String,
}

/// The signing key set: the first key signs, any key may verify when its `kid` is named.
#[derive(Clone)]
pub struct JwtKeys {
    keys: Vec<(String, Vec<u8>)>,
    issuer: String,
    audience: String,
    ttl_s: u64,
    /// The longest lifetime (`exp - iat`) a token may claim: the configured TTL, so that whoever
    /// holds the key cannot mint tokens outliving what this server would ever issue.
    max_lifetime_s: u64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("kids", &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>()).finish()
    }
}

impl JwtKeys {
    /// A key set with one signing key `secret` under `kid`.
    pub fn new(kid: &str, secret: Vec<u8>, issuer: &str, audience: &str, ttl_s: u64) -> JwtKeys {
        JwtKeys {
            keys: vec![(kid.to_owned(), secret)],
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_s,
            max_lifetime_s: ttl_s,
        }
    }

    /// The same key set accepting tokens that claim to live up to `lifetime_s` (at least the TTL):
    /// only `--dev`, for its test token.
    pub fn accepting_lifetime(self, lifetime_s: u64) -> JwtKeys {
        JwtKeys { max_lifetime_s: lifetime_s.max(self.ttl_s), ..self }
    }

    /// Lifetime of issued access tokens.
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    fn mac(secret: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// Issues an access token for account `sub` in session family `sid`.
    pub fn issue(&self, sub: &str, sid: &str, now: f64) -> String {
        self.issue_for(sub, sid, now, self.ttl_s)
    }

    /// Issues an access token living `ttl_s` seconds instead of the configured lifetime. Only the
    /// `--dev` test token uses it, on a key set that [`JwtKeys::accepting_lifetime`] widened.
    pub fn issue_for(&self, sub: &str, sid: &str, now: f64, ttl_s: u64) -> String {
        let (kid, secret) = &self.keys[0];
        let header = json!({"alg": "HS256", "typ": ACCESS_TYP, "kid": kid});
        let iat = now.floor() as i64;
        let claims = json!({
            "iss": self.issuer, "aud": self.audience, "sub": sub, "sid": sid,
            "iat": iat, "exp": iat + ttl_s as i64, "jti": uuid::Uuid::now_v7().to_string(),
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut mac = Self::mac(secret);
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verifies `token` at time `now` (Unix seconds). Revocation of `sid` is checked by the caller.
    pub fn verify(&self, token: &str, now: f64) -> Result<AccessIdentity, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Invalid);
        };
        let header = decode_object(h).ok_or(JwtError::Invalid)?;
        // Judge the header before touching the signature: `alg: none` and friends die here.
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Invalid);
        }
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !typ.eq_ignore_ascii_case(ACCESS_TYP) {
            return Err(JwtError::Invalid);
        }
        let secret = match header.get("kid") {
            None => &self.keys[0].1,
            Some(Value::String(kid)) => &self.keys.iter().find(|(k, _)| k == kid).ok_or(JwtError::Invalid)?.1,
            Some(_) => return Err(JwtError::Invalid),
        };
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Invalid)?;
        let mut mac = Self::mac(secret);
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| JwtError::Invalid)?;

        let claims = decode_object(p).ok_or(JwtError::Invalid)?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtError::Invalid);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(JwtError::Invalid);
        }
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(JwtError::Invalid)?;
        if now > exp + SKEW_S {
            return Err(JwtError::Invalid);
        }
        // `iat` and `jti` are required (PROTOCOL §8.4); a token issued in the future or claiming a
        // longer life than this server issues was not made by it, whatever its signature says.
        let iat = claims.get("iat").and_then(Value::as_f64).ok_or(JwtError::Invalid)?;
        if iat > now + SKEW_S || exp - iat > self.max_lifetime_s as f64 {
            return Err(JwtError::Invalid);
        }
        if claims.get("jti").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(JwtError::Invalid);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(JwtError::Invalid)?;
            if now + SKEW_S < nbf {
                return Err(JwtError::Invalid);
            }
        }
        let sub = claims.get("sub").and_then(Value::as_str).ok_or(JwtError::Payload)?;
        let sid = claims.get("sid").and_then(Value::as_str).ok_or(JwtError::Payload)?;
        if uuid::Uuid::parse_str(sub).is_err() || sid.is_empty() || sid.len() > 64 {
            return Err(JwtError::Payload);
        }
        Ok(AccessIdentity { user_id: sub.to_owned(), session_id: sid.to_owned() })
    }
}

fn decode_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Signs arbitrary header and claims with `secret`; tests use it to forge tokens of other kinds.
pub fn sign_raw(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = JwtKeys::mac(secret);
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "0190f3c2-0000-7000-8000-000000000001";

    fn keys() -> JwtKeys {
        JwtKeys::new("k1", vec![7u8; 32], "https://iss", "https://aud", 900)
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k.issue(SUB, "sid1", 1000.0);
        let id = k.verify(&t, 1000.0).unwrap();
        assert_eq!(id.user_id, SUB);
        assert_eq!(id.session_id, "sid1");
        assert_eq!(k.verify(&t, 1000.0 + 900.0 + 61.0), Err(JwtError::Invalid));
    }

    #[test]
    fn refuses_tampering_alg_none_and_wrong_typ() {
        let k = keys();
        let t = k.issue(SUB, "sid1", 1000.0);
        let mut tampered = t.clone();
        tampered.pop();
        tampered.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(k.verify(&tampered, 1000.0), Err(JwtError::Invalid));

        let claims =
            json!({"iss":"https://iss","aud":"https://aud","sub":SUB,"sid":"s","exp":1900,"iat":1000,"jti":"j"});
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg":"none","typ":"at+jwt"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert_eq!(k.verify(&none, 1000.0), Err(JwtError::Invalid));
        let wrong_typ = sign_raw(&json!({"alg":"HS256","typ":"JWT","kid":"k1"}), &claims, &[7u8; 32]);
        assert_eq!(k.verify(&wrong_typ, 1000.0), Err(JwtError::Invalid));
        let good = sign_raw(&json!({"alg":"HS256","typ":"at+jwt","kid":"k1"}), &claims, &[7u8; 32]);
        assert!(k.verify(&good, 1000.0).is_ok());
        let other_key = sign_raw(&json!({"alg":"HS256","typ":"at+jwt","kid":"k1"}), &claims, &[8u8; 32]);
        assert_eq!(k.verify(&other_key, 1000.0), Err(JwtError::Invalid));
    }

    #[test]
    fn payload_errors_after_a_good_signature() {
        let k = keys();
        let claims = json!({"iss":"https://iss","aud":"https://aud","sub":"not-a-uuid","sid":"s","exp":1900,"iat":1000,"jti":"j"});
        let t = sign_raw(&json!({"alg":"HS256","typ":"at+jwt"}), &claims, &[7u8; 32]);
        assert_eq!(k.verify(&t, 1000.0), Err(JwtError::Payload));
        let claims = json!({"iss":"https://iss","aud":"https://aud","sub":SUB,"exp":1900,"iat":1000,"jti":"j"});
        let t = sign_raw(&json!({"alg":"HS256","typ":"at+jwt"}), &claims, &[7u8; 32]);
        assert_eq!(k.verify(&t, 1000.0), Err(JwtError::Payload));
        let claims =
            json!({"iss":"https://other","aud":"https://aud","sub":SUB,"sid":"s","exp":1900,"iat":1000,"jti":"j"});
        let t = sign_raw(&json!({"alg":"HS256","typ":"at+jwt"}), &claims, &[7u8; 32]);
        assert_eq!(k.verify(&t, 1000.0), Err(JwtError::Invalid));
    }

    #[test]
    fn iat_jti_and_lifetime_are_required() {
        let k = keys();
        let header = json!({"alg":"HS256","typ":"at+jwt","kid":"k1"});
        let claims = |iat: Value, exp: i64, jti: Value| {
            let mut c = json!({"iss":"https://iss","aud":"https://aud","sub":SUB,"sid":"s","exp":exp});
            for (key, v) in [("iat", iat), ("jti", jti)] {
                if !v.is_null() {
                    c[key] = v;
                }
            }
            sign_raw(&header, &c, &[7u8; 32])
        };
        assert!(k.verify(&claims(json!(1000), 1900, json!("j")), 1000.0).is_ok());
        // A little clock skew on `iat` is fine, the future is not.
        assert!(k.verify(&claims(json!(1050), 1900, json!("j")), 1000.0).is_ok());
        assert_eq!(k.verify(&claims(json!(1100), 1900, json!("j")), 1000.0), Err(JwtError::Invalid));
        assert_eq!(k.verify(&claims(Value::Null, 1900, json!("j")), 1000.0), Err(JwtError::Invalid));
        assert_eq!(k.verify(&claims(json!("1000"), 1900, json!("j")), 1000.0), Err(JwtError::Invalid));
        assert_eq!(k.verify(&claims(json!(1000), 1900, Value::Null), 1000.0), Err(JwtError::Invalid));
        assert_eq!(k.verify(&claims(json!(1000), 1900, json!("")), 1000.0), Err(JwtError::Invalid));
        // Longer than the configured TTL: refused, unless the key set was widened (`--dev`).
        let long = claims(json!(1000), 1901, json!("j"));
        assert_eq!(k.verify(&long, 1000.0), Err(JwtError::Invalid));
        let dev = keys().accepting_lifetime(DEV_TOKEN_TTL_S);
        assert!(dev.verify(&long, 1000.0).is_ok());
        assert!(dev.verify(&dev.issue_for(SUB, "s", 1000.0, DEV_TOKEN_TTL_S), 1000.0).is_ok());
        assert_eq!(k.verify(&dev.issue_for(SUB, "s", 1000.0, DEV_TOKEN_TTL_S), 1000.0), Err(JwtError::Invalid));
    }
}
