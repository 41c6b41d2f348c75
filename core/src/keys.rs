//! Keys derived from one root secret, one label per purpose, so every binary derives the
//! same key for the same purpose: the API server from `QUIRE_JWT_SECRET`, `quire dev` from
//! its data directory's `secret.key`.

/// `quire dev`'s JWT secret, derived from its root secret.
pub const JWT: &str = "jwt";
/// The key local download links are signed with, derived from the JWT secret when
/// `QUIRE_DOWNLOAD_SIGNING_KEY` is not given.
pub const DOWNLOAD_LINKS: &str = "download-signing-key/v1";

/// A purpose-specific key derived from a root secret (HMAC-SHA256 keyed by the secret over
/// `label`), so one configured secret can serve several purposes (JWT signing, download
/// links) without using the same key for two of them.
pub fn derive_key(secret: &[u8], label: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"quire/");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().to_vec()
}
