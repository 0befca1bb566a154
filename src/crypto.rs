//! Encryption of secrets at rest: AES-256-GCM under one master key, a fresh random nonce
//! per value, the owning record's identity as associated data (so a ciphertext copied onto
//! another record fails to decrypt), and the key id stored with each ciphertext so that a
//! keyring holding old keys can still read values written before a rotation.
//! Stored form: `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// One 256-bit master key and its short public id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let digest = Sha256::new()
            .chain_update(b"opshub key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let key = aes_gcm::Key::<Aes256Gcm>::from(bytes);
        MasterKey {
            id,
            cipher: Aes256Gcm::new(&key),
        }
    }

    /// Parses the base64 text of `OPSHUB_MASTER_KEY` or a key file.
    pub fn from_base64(text: &str) -> Result<MasterKey, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
            .map_err(|_| CryptoError::BadKey("it is not valid base64".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            CryptoError::BadKey(format!("it decodes to {} bytes, not 32", b.len()))
        })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// A new random key and its base64 text.
    pub fn generate() -> (MasterKey, String) {
        let bytes: [u8; 32] = random_bytes();
        (MasterKey::from_bytes(bytes), STANDARD.encode(bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key (used to encrypt) and older keys (still accepted to decrypt).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Keyring {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds an older key that may still be needed to read existing values.
    pub fn with_previous(mut self, key: MasterKey) -> Keyring {
        if key.id != self.current.id {
            self.previous.push(key);
        }
        self
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` bound to `aad` (the owning record's identity).
    pub fn encrypt(&self, plaintext: &[u8], aad: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce_bytes);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption only fails for inputs over 64 GiB");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&sealed);
        format!("v1:{}:{}", self.current.id, URL_SAFE_NO_PAD.encode(blob))
    }

    /// Decrypts a value produced by [`Keyring::encrypt`] with the same `aad`.
    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = stored.splitn(3, ':');
        let (Some("v1"), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce_bytes, sealed) = blob.split_at(NONCE_LEN);
        let nonce_arr: [u8; NONCE_LEN] =
            nonce_bytes.try_into().map_err(|_| CryptoError::Malformed)?;
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce_arr);
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Rejected)
    }

    /// Whether `stored` was written under the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix("v1:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(kid, _)| kid == self.current.id)
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    buf
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    // On every authenticated request (token lookup): one allocation, not one per byte.
    hex::encode(Sha256::digest(data))
}

/// Where the key file for a SQLite database lives: beside it, `<file>.key`.
pub fn key_file_beside(db_file: &Path) -> PathBuf {
    let mut name = db_file.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Reads the key file, or creates it with a new key (mode 0600) when it does not exist.
/// Returns the key and whether it was just created.
pub fn load_or_create_key_file(path: &Path) -> Result<(MasterKey, bool), CryptoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((MasterKey::from_base64(&text)?, false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CryptoError::KeyFile(path.to_path_buf(), e));
        }
        Err(_) => {}
    }
    let (key, text) = MasterKey::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(format!("{text}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| CryptoError::KeyFile(path.to_path_buf(), e))?;
            Ok((key, true))
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CryptoError::KeyFile(path.to_path_buf(), e))?;
            Ok((MasterKey::from_base64(&text)?, false))
        }
        Err(e) => Err(CryptoError::KeyFile(path.to_path_buf(), e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key is unusable: {0} (expected base64 of 32 random bytes)")]
    BadKey(String),
    #[error("cannot use key file {0}: {1}")]
    KeyFile(PathBuf, #[source] std::io::Error),
    #[error("the encrypted value is malformed")]
    Malformed,
    #[error("the value was encrypted with key {0}, which is not configured")]
    UnknownKey(String),
    #[error(
        "the value cannot be decrypted: wrong key, tampered data, or moved from another record"
    )]
    Rejected,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new(MasterKey::generate().0)
    }

    #[test]
    fn round_trips_with_same_associated_data() {
        let ring = ring();
        let sealed = ring.encrypt(b"hunter2", "kv:db.password");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            ring.decrypt(&sealed, "kv:db.password").expect("decrypts"),
            b"hunter2"
        );
    }

    #[test]
    fn same_plaintext_encrypts_differently_each_time() {
        let ring = ring();
        assert_ne!(ring.encrypt(b"x", "a"), ring.encrypt(b"x", "a"));
    }

    #[test]
    fn rejects_ciphertext_moved_to_another_record() {
        let ring = ring();
        let sealed = ring.encrypt(b"hunter2", "kv:a");
        assert!(matches!(
            ring.decrypt(&sealed, "kv:b"),
            Err(CryptoError::Rejected)
        ));
    }

    #[test]
    fn rejects_wrong_key_even_with_the_same_key_id_text() {
        let sealed = ring().encrypt(b"hunter2", "kv:a");
        let other = ring();
        // Forge the key id so the lookup succeeds and the tag check must do the work.
        let forged = format!(
            "v1:{}:{}",
            other.current_id(),
            sealed.splitn(3, ':').nth(2).expect("3 parts")
        );
        assert!(matches!(
            other.decrypt(&forged, "kv:a"),
            Err(CryptoError::Rejected)
        ));
        assert!(matches!(
            other.decrypt(&sealed, "kv:a"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn rejects_tampered_ciphertext() {
        let ring = ring();
        let sealed = ring.encrypt(b"hunter2", "kv:a");
        let (head, body) = sealed.rsplit_once(':').expect("has body");
        let mut blob = URL_SAFE_NO_PAD.decode(body).expect("base64");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(blob));
        assert!(matches!(
            ring.decrypt(&tampered, "kv:a"),
            Err(CryptoError::Rejected)
        ));
        assert!(matches!(
            ring.decrypt("v1:zz", "kv:a"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn previous_keys_still_decrypt_after_rotation() {
        let old = MasterKey::generate().0;
        let sealed = Keyring::new(old.clone()).encrypt(b"s", "r");
        let rotated = Keyring::new(MasterKey::generate().0).with_previous(old);
        assert_eq!(rotated.decrypt(&sealed, "r").expect("old key kept"), b"s");
        assert!(!rotated.is_current(&sealed));
    }

    #[test]
    fn sha256_hex_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejects_keys_of_the_wrong_length() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn creates_key_file_with_owner_only_mode_once() {
        let dir = std::env::temp_dir().join(format!("opshub-key-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = key_file_beside(&dir.join("x.db"));
        let (k1, created) = load_or_create_key_file(&path).expect("creates");
        assert!(created);
        let (k2, created_again) = load_or_create_key_file(&path).expect("reads");
        assert!(!created_again);
        assert_eq!(k1.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
