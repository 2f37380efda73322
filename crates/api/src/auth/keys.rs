//! RSA public keys of session tokens: reading one from PEM or from JWK
//! components (2048 bits at least), the development key, and the check of
//! `AUTH_PUBLIC_KEY_PEM` that configuration runs. A leaf: it imports
//! nothing of this crate, so `config` and `jwt` can both use it.

use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind,
    jwk::{AlgorithmParameters, Jwk},
};
use std::sync::Arc;

const DEMO_PUBLIC_PEM: &str = include_str!("../../dev-keys/demo-public.pem");

/// An RSA public key and the modulus that identifies it.
#[derive(Clone)]
pub(crate) struct RsaKey {
    pub(crate) key: Arc<DecodingKey>,
    pub(crate) modulus: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("modulus_bits", &(self.modulus.len() * 8))
            .finish()
    }
}

impl RsaKey {
    pub(crate) fn from_pem(pem: &str) -> Result<RsaKey, String> {
        if pem.contains("PRIVATE KEY") {
            return Err("this is a private key; give the public key".into());
        }
        let key = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("not a PEM RSA public key: {e}"))?;
        // The PEM parser only unwraps; reading the components checks that
        // the content really is an RSA public key.
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err("not an RSA public key".into());
        };
        RsaKey::from_components(&rsa.n, &rsa.e)
    }

    pub(crate) fn from_components(n: &str, e: &str) -> Result<RsaKey, String> {
        let key = DecodingKey::from_rsa_components(n, e)
            .map_err(|e| format!("invalid RSA key components: {e}"))?;
        let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() else {
            return Err("invalid RSA key components".into());
        };
        let modulus: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        if modulus.len() < 256 {
            return Err(format!(
                "an RSA key of {} bits is too short (2048 at least)",
                modulus.len() * 8
            ));
        }
        Ok(RsaKey {
            key: Arc::new(key),
            modulus,
        })
    }
}

/// The development key's public half.
pub(crate) fn demo_key() -> Result<RsaKey, String> {
    RsaKey::from_pem(DEMO_PUBLIC_PEM)
}

/// PEM text from an environment variable: `\n` escapes (as `.env` files
/// and container settings often carry them) become line breaks.
pub fn normalize_pem(raw: &str) -> String {
    raw.trim().replace("\\n", "\n")
}

/// Checks `AUTH_PUBLIC_KEY_PEM`; in production the development key is
/// refused.
pub fn check_public_key_pem(pem: &str, production: bool) -> Result<(), String> {
    let key = RsaKey::from_pem(pem)?;
    if production && demo_key().is_ok_and(|demo| demo.modulus == key.modulus) {
        return Err("this is the development key, refused when APP_ENV=production".into());
    }
    Ok(())
}
