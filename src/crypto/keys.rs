//! Ed25519 signing keys: load from PKCS#8 PEM or generate once, name each by its
//! RFC 7638 JWK thumbprint (`kid`), and publish the public halves as a JWKS.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey as PublicKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("signing key {path} is not an Ed25519 PKCS#8 PEM private key")]
    Parse { path: PathBuf },
    #[error("previous signing key {path} is neither an Ed25519 PEM public key nor a PKCS#8 PEM private key")]
    ParsePrevious { path: PathBuf },
    #[error("cannot write signing key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A key that verifies tokens (and, for the current key, signs them).
pub struct VerifyingKey {
    pub kid: String,
    pub decoding: DecodingKey,
    public: [u8; 32],
}

pub struct SigningKeys {
    current_kid: String,
    encoding: EncodingKey,
    verifying: Vec<VerifyingKey>,
}

/// One public key (RFC 7517; Ed25519 as an OKP key per RFC 8037).
#[derive(Debug, Serialize, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    #[schema(example = "OKP")]
    pub kty: &'static str,
    /// Always `Ed25519`.
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    /// The public key, base64url without padding.
    #[schema(example = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")]
    pub x: String,
    /// The RFC 7638 thumbprint; tokens name their key by it.
    #[schema(example = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")]
    pub kid: String,
    /// Always `EdDSA`.
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: &'static str,
}

impl SigningKeys {
    /// Builds the key set from the current signing key; `previous` keys only
    /// verify (kept during rotation until their tokens have expired).
    pub fn new(current: &SigningKey, previous: &[PublicKey]) -> Self {
        let der = current.to_pkcs8_der().expect("an Ed25519 key always encodes as PKCS#8");
        let current_entry = verifying_entry(&current.verifying_key());
        let mut verifying = vec![current_entry];
        for key in previous {
            let entry = verifying_entry(key);
            if verifying.iter().all(|v| v.kid != entry.kid) {
                verifying.push(entry);
            }
        }
        Self { current_kid: verifying[0].kid.clone(), encoding: EncodingKey::from_ed_der(der.as_bytes()), verifying }
    }

    /// A fresh in-memory key (tests, and `actas openapi` which signs nothing).
    pub fn ephemeral() -> Self {
        Self::new(&SigningKey::from_bytes(&super::random_bytes::<32>()), &[])
    }

    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }

    pub fn jwks(&self) -> Vec<Jwk> {
        self.verifying
            .iter()
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: URL_SAFE_NO_PAD.encode(k.public),
                kid: k.kid.clone(),
                alg: "EdDSA",
                use_: "sig",
            })
            .collect()
    }
}

fn verifying_entry(key: &PublicKey) -> VerifyingKey {
    let public = key.to_bytes();
    VerifyingKey { kid: thumbprint(&public), decoding: DecodingKey::from_ed_der(&public), public }
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

pub fn read_pem(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Parse { path: path.into() })
}

/// The key as RFC 5208 (version 1) PKCS#8, the form `openssl genpkey` writes
/// and every tool reads; the v2 form with the public key embedded is not
/// understood by OpenSSL 3.0, which operators use to derive the public half.
fn pkcs8_v1_pem(key: &SigningKey) -> String {
    let bytes = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None };
    bytes
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("an Ed25519 key always encodes as PEM")
        .to_string()
}

/// A retired key only verifies, so its public half is enough: accept an SPKI
/// public key PEM (`openssl pkey -pubout`) or the old private key file itself.
pub fn read_previous_pem(path: &Path) -> Result<PublicKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
    PublicKey::from_public_key_pem(&pem)
        .or_else(|_| SigningKey::from_pkcs8_pem(&pem).map(|key| key.verifying_key()))
        .map_err(|_| KeyError::ParsePrevious { path: path.into() })
}

/// Reads the key at `path`, or creates it (owner-only permissions) when absent.
pub fn load_or_generate(path: &Path) -> Result<SigningKey, KeyError> {
    if path.exists() {
        return read_pem(path);
    }
    let key = SigningKey::from_bytes(&super::random_bytes::<32>());
    let pem = pkcs8_v1_pem(&key);
    let write_err = |source| KeyError::Write { path: path.into(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::create_private_dir(dir).map_err(write_err)?;
    }
    // Written whole beside the target, then linked into place: a crash or a
    // second node starting at the same moment never sees a half-written key.
    let staging = path.with_file_name(format!(".{}.{}", uuid::Uuid::new_v4().simple(), "pem-new"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let staged = options.open(&staging).and_then(|mut file| {
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    });
    let linked = staged.and_then(|()| fs::hard_link(&staging, path));
    let _ = fs::remove_file(&staging);
    match linked {
        Ok(()) => {}
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read_pem(path),
        Err(e) => return Err(write_err(e)),
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pem() {
        let dir = std::env::temp_dir().join(format!("actas-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("signing-key.pem");
        let created = load_or_generate(&path).unwrap();
        let loaded = load_or_generate(&path).unwrap();
        assert_eq!(created.to_bytes(), loaded.to_bytes());
        // PKCS#8 v1: 48 bytes of DER for Ed25519, readable by OpenSSL 3.0.
        let pem = fs::read_to_string(&path).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        assert_eq!(der.len(), 48, "{pem}");
        if let Ok(out) = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&path).output() {
            use ed25519_dalek::pkcs8::EncodePublicKey;
            let ours = created.verifying_key().to_public_key_pem(Default::default()).unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), ours, "{}", String::from_utf8_lossy(&out.stderr));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nodes_starting_together_share_one_whole_key() {
        let dir = std::env::temp_dir().join(format!("actas-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("signing-key.pem");
        let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let starts: Vec<_> =
                (0..8).map(|_| scope.spawn(|| load_or_generate(&path).map(|k| k.to_bytes()))).collect();
            starts.into_iter().map(|start| start.join().unwrap().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "every starter uses the key that won");
        let files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, vec![std::ffi::OsString::from("signing-key.pem")], "no staging file is left behind");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn jwks_lists_current_then_previous_keys_once() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let keys = SigningKeys::new(&a, &[b.verifying_key(), a.verifying_key(), b.verifying_key()]);
        let jwks = keys.jwks();
        assert_eq!(jwks.len(), 2);
        assert_eq!(jwks[0].kid, keys.current_kid());
        assert_eq!(jwks[0].x.len(), 43);
        assert!(keys.verifying_key(&jwks[1].kid).is_some());
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert_eq!(thumbprint(&x.try_into().unwrap()), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
