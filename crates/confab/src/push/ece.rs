//! RFC 8291 message encryption for Web Push: the `aes128gcm` content coding (RFC 8188) keyed by an
//! ECDH agreement between a fresh sender key and the browser's P-256 key, mixed with the browser's
//! authentication secret through HKDF-SHA256. One record holds the whole message.

use aes_gcm::{
    Aes128Gcm, Nonce,
    aead::{Aead, KeyInit},
};
use hkdf::Hkdf;
use p256::{PublicKey, SecretKey, elliptic_curve::sec1::ToEncodedPoint};
use sha2::Sha256;

/// The record size announced in the header (RFC 8188 §2.1); the whole message fits in one record.
pub const RECORD_SIZE: u32 = 4096;
/// The longest plaintext one record holds: the record minus the 16-byte tag and the delimiter.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 16 - 1;

/// Why a message could not be encrypted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EceError {
    #[error("the message is longer than one record")]
    TooLong,
    #[error("key derivation failed")]
    Derivation,
}

/// A fresh P-256 private key. A random 32-byte string is a valid scalar but with probability
/// about 2⁻³², so the loop almost never turns twice.
pub fn fresh_secret() -> SecretKey {
    loop {
        if let Ok(key) = SecretKey::from_slice(&crate::auth::tokens::random_bytes::<32>()) {
            return key;
        }
    }
}

/// Encrypts `plaintext` for the browser holding `ua_public` and `auth`, with a fresh sender key
/// and salt: the request body of one push message.
pub fn encrypt(plaintext: &[u8], ua_public: &PublicKey, auth: &[u8; 16]) -> Result<Vec<u8>, EceError> {
    let salt = crate::auth::tokens::random_bytes::<16>();
    encrypt_with(plaintext, ua_public, auth, &fresh_secret(), &salt)
}

/// [`encrypt`] with the sender key and salt given (RFC 8291 §3.4; tests use the RFC's vector).
fn encrypt_with(
    plaintext: &[u8],
    ua_public: &PublicKey,
    auth: &[u8; 16],
    sender: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLong);
    }
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), ua_public.as_affine());
    let ua_point = ua_public.to_encoded_point(false);
    let as_point = sender.public_key().to_encoded_point(false);
    // IKM = HKDF(auth, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32)
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_point.as_bytes());
    key_info.extend_from_slice(as_point.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Derivation)?;
    // The content-encryption key and nonce (RFC 8188 §2.2, §2.3).
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|_| EceError::Derivation)?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| EceError::Derivation)?;
    // The last (and only) record ends with the delimiter 0x02 and no padding.
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(2);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Derivation)?;
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), record.as_slice()).map_err(|_| EceError::Derivation)?;
    // Header: salt (16) | record size (4, big-endian) | key id length (1) | key id = sender key.
    let key_id = as_point.as_bytes();
    let mut body = Vec::with_capacity(16 + 4 + 1 + key_id.len() + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(key_id.len() as u8);
    body.extend_from_slice(key_id);
    body.extend_from_slice(&sealed);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::b64;

    #[test]
    fn matches_the_rfc_8291_example() {
        let sender =
            SecretKey::from_slice(&b64::decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw").unwrap()).unwrap();
        let ua_public = PublicKey::from_sec1_bytes(
            &b64::decode("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")
                .unwrap(),
        )
        .unwrap();
        let auth: [u8; 16] = b64::decode("BTBZMqHH6r4Tts7J_aSIgg").unwrap().try_into().unwrap();
        let salt: [u8; 16] = b64::decode("DGv6ra1nlYgDCS1FRnbzlw").unwrap().try_into().unwrap();
        let body =
            encrypt_with(b"When I grow up, I want to be a watermelon", &ua_public, &auth, &sender, &salt).unwrap();
        assert_eq!(
            b64::encode(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn fresh_keys_and_salts_differ_and_one_record_is_the_limit() {
        let ua = fresh_secret().public_key();
        let auth = [7u8; 16];
        let a = encrypt(b"hi", &ua, &auth).unwrap();
        let b = encrypt(b"hi", &ua, &auth).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16 + 4 + 1 + 65 + 2 + 1 + 16);
        assert!(encrypt(&[0u8; MAX_PLAINTEXT], &ua, &auth).is_ok());
        assert_eq!(encrypt(&[0u8; MAX_PLAINTEXT + 1], &ua, &auth), Err(EceError::TooLong));
    }
}
