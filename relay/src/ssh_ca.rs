//! The relay's SSH user certificate authority: an Ed25519 key created on
//! first start, whose public half sshd trusts through `TrustedUserCAKeys`.
//! It signs short-lived certificates for keys that clients generate and
//! never send (only their public halves reach the relay).

use std::path::Path;
use std::time::Duration;

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use sallyport_common::fs::{create_private_new, write_private};
use sallyport_common::time::now_secs;

use crate::policy::permits::Permits;

/// How long a certificate is valid unless the relay is configured otherwise.
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(5 * 60);
/// Certificates are valid from this long before they are issued, so a
/// server whose clock is a little behind accepts them.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SshCaError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not an OpenSSH private key")]
    BadKey(String),
    #[error("the public key is not valid: {0}")]
    BadPublicKey(String),
    #[error("only Ed25519 and ECDSA keys are certified, not {0}")]
    Algorithm(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

pub struct SshCa {
    key: PrivateKey,
}

/// A signed certificate.
#[derive(Debug, Clone)]
pub struct Signed {
    /// OpenSSH form (`…-cert.pub`).
    pub certificate: String,
    /// Its serial number: random, never 0, so that a KRL can revoke this
    /// one certificate (`ssh-keygen -k -s` with a `serial:` line).
    pub serial: u64,
}

/// A random serial number other than 0 (which OpenSSH reads as "none").
fn random_serial() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        rand::fill(&mut bytes);
        let serial = u64::from_be_bytes(bytes);
        if serial != 0 {
            return serial;
        }
    }
}

/// What a certificate says.
pub struct CertRequest<'a> {
    /// The client's public key, OpenSSH form.
    pub public_key: &'a str,
    /// The Unix account it may log in as.
    pub principal: &'a str,
    /// Names the Sallyport user and session, for sshd's logs.
    pub key_id: &'a str,
    pub ttl: Duration,
    /// The `permit-*` extensions it carries: exactly what the policy
    /// grants this user on this service (`Policy::permits`).
    pub permits: Permits,
}

impl SshCa {
    /// Loads the relay's CA from `dir/ssh_ca` (OpenSSH format, mode 0600),
    /// creating it on first use, with its public key beside it in `ssh_ca.pub`.
    pub fn load_or_create(dir: &Path) -> Result<Self, SshCaError> {
        Self::load_or_create_file(dir, "ssh_ca", "sallyport relay SSH user CA")
    }

    /// The CA of one service (`separate_ca = true` in the policy), in
    /// `dir/ssh_ca-SERVICE`: only that service's sshd trusts it, so its
    /// certificates are good nowhere else. `service` must be a checked name.
    pub fn load_or_create_for(dir: &Path, service: &str) -> Result<Self, SshCaError> {
        Self::load_or_create_file(
            dir,
            &format!("ssh_ca-{service}"),
            &format!("sallyport SSH user CA for {service}"),
        )
    }

    fn load_or_create_file(dir: &Path, name: &str, comment: &str) -> Result<Self, SshCaError> {
        let path = dir.join(name);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SshCaError::Io { path, source }
        };
        let load = |path: &Path| -> Result<Self, SshCaError> {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            Self::from_openssh(&text).map_err(|_| SshCaError::BadKey(path.display().to_string()))
        };
        if path.exists() {
            return load(&path);
        }
        let ca = Self::generate(comment);
        let pem = ca.to_openssh()?;
        // Written aside under a name of its own and moved into place only
        // if no key is there yet: of two processes creating the key at once
        // (two relays, or the relay and `ssh-ca show`), one wins and the
        // other loads the winner's key.
        if !create_private_new(&path, pem.as_bytes()).map_err(io(&path))? {
            return load(&path);
        }
        let pub_path = dir.join(format!("{name}.pub"));
        write_private(&pub_path, format!("{}\n", ca.public_line()).as_bytes())
            .map_err(io(&pub_path))?;
        Ok(ca)
    }

    /// A new CA with a fresh Ed25519 key; `comment` names it in its key.
    pub fn generate(comment: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(comment);
        Self { key }
    }

    /// The CA of an OpenSSH private key (as [`SshCa::to_openssh`] writes).
    pub fn from_openssh(text: &str) -> Result<Self, SshCaError> {
        let key = PrivateKey::from_openssh(text)
            .map_err(|_| SshCaError::BadKey("the SSH CA key".into()))?;
        Ok(Self { key })
    }

    /// The CA's private key in OpenSSH form.
    pub fn to_openssh(&self) -> Result<String, SshCaError> {
        Ok(self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(|e| SshCaError::Sign(e.to_string()))?
            .to_string())
    }

    /// The CA's public key as one OpenSSH line, for `TrustedUserCAKeys`.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// Signs a user certificate with a fresh random serial number.
    pub fn sign(&self, req: &CertRequest<'_>) -> Result<Signed, SshCaError> {
        let public = PublicKey::from_openssh(req.public_key.trim())
            .map_err(|e| SshCaError::BadPublicKey(e.to_string()))?;
        match public.algorithm() {
            Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => {}
            other => return Err(SshCaError::Algorithm(other.to_string())),
        }
        let now = now_secs();
        let mut nonce = [0u8; 32];
        rand::fill(&mut nonce);
        let sign_err = |e: russh::keys::ssh_key::Error| SshCaError::Sign(e.to_string());
        let mut builder = Builder::new(
            nonce.to_vec(),
            public.key_data().clone(),
            now.saturating_sub(CLOCK_SKEW.as_secs()),
            now + req.ttl.as_secs().max(1),
        )
        .map_err(sign_err)?;
        let serial = random_serial();
        builder.serial(serial).map_err(sign_err)?;
        builder.cert_type(CertType::User).map_err(sign_err)?;
        builder.valid_principal(req.principal).map_err(sign_err)?;
        builder.key_id(req.key_id).map_err(sign_err)?;
        for name in req.permits.extensions() {
            builder.extension(name, "").map_err(sign_err)?;
        }
        let cert = builder.sign(&self.key).map_err(sign_err)?;
        Ok(Signed {
            certificate: cert.to_openssh().map_err(sign_err)?,
            serial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_user_certificates_that_name_principal_and_session() {
        let dir = tempfile::tempdir().unwrap();
        let ca = SshCa::load_or_create(dir.path()).unwrap();
        let again = SshCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.public_line(), again.public_line(), "the CA persists");

        let user_key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let public = user_key.public_key().to_openssh().unwrap();
        let req = CertRequest {
            public_key: &public,
            principal: "alice",
            key_id: "sallyport user=alice session=abc",
            ttl: DEFAULT_CERT_TTL,
            permits: Permits::default(),
        };
        let signed = ca.sign(&req).unwrap();
        let cert = russh::keys::ssh_key::Certificate::from_openssh(&signed.certificate).unwrap();
        assert_eq!(cert.serial(), signed.serial);
        assert_ne!(cert.serial(), 0);
        assert_ne!(
            ca.sign(&req).unwrap().serial,
            signed.serial,
            "serials are unique"
        );
        assert_eq!(cert.valid_principals(), ["alice".to_string()]);
        assert_eq!(cert.key_id(), "sallyport user=alice session=abc");
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(
            cert.extensions().keys().collect::<Vec<_>>(),
            ["permit-pty"],
            "a terminal only, unless the policy grants more"
        );
        let forwarding = ca
            .sign(&CertRequest {
                permits: Permits {
                    port_forwarding: true,
                    agent_forwarding: true,
                    ..Permits::default()
                },
                ..req
            })
            .unwrap();
        let forwarding =
            russh::keys::ssh_key::Certificate::from_openssh(&forwarding.certificate).unwrap();
        assert_eq!(
            forwarding.extensions().keys().collect::<Vec<_>>(),
            [
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-pty"
            ]
        );
        assert_eq!(
            cert.valid_before() - cert.valid_after(),
            DEFAULT_CERT_TTL.as_secs() + CLOCK_SKEW.as_secs()
        );
        assert!(ca
            .sign(&CertRequest {
                public_key: "ssh-ed25519 junk",
                principal: "a",
                key_id: "k",
                ttl: DEFAULT_CERT_TTL,
                permits: Permits::default(),
            })
            .is_err());
    }
}
