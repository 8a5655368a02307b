//! The `[[oidc]]` tables of the relay's config file: one per OpenID
//! provider people may sign in with.
//!
//! ```toml
//! [[oidc]]
//! name = "corp"                      # in URLs: /auth/oidc/corp
//! label = "Sign in with Corp SSO"    # the button's text (default: "Sign in with NAME")
//! issuer = "https://idp.example.com/realms/corp"
//! client_id = "sallyport"
//! client_secret_file = "/etc/sallyport/oidc-corp.secret"   # or client_secret_env = "VAR"
//! scopes = ["profile", "email", "groups"]                  # "openid" is always asked for
//! user_claim = "preferred_username"  # default: preferred_username, else email
//! groups_claim = "groups"            # default: groups
//! allowed_domains = ["example.com"]  # optional: the e-mail's domain must be one of these
//! allowed_groups = ["staff"]         # optional: the user must be in one of these
//! second_factor_amr = ["mfa"]        # default: an `amr` value that counts as a second factor
//! second_factor_acr = []             # optional: `acr` values that count as one
//! ```
//!
//! TOTP is for local users; an SSO user's second factor is the provider's.
//! A sign-in meets policy's `second_factor` when the ID token's `amr`
//! (RFC 8176: "mfa", "otp", "hwk", ...) holds one of `second_factor_amr`, or
//! its `acr` is one of `second_factor_acr`.
//!
//! The client secret is read once at start from the file or the variable,
//! and is never logged or shown (its `Debug` is `[redacted]`).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Most providers one relay may list.
pub const MAX_PROVIDERS: usize = 16;

/// Largest client secret file read.
pub const MAX_SECRET_BYTES: u64 = 4096;

/// One `[[oidc]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Short name (letters, digits, '.', '_', '-'), in URLs and audit events.
    pub name: String,
    /// The sign-in button's text.
    pub label: Option<String>,
    /// The issuer URL: discovery is at `ISSUER/.well-known/openid-configuration`
    /// (OpenID Connect Discovery 1.0, section 4). `https://`, or `http://` on a
    /// loopback address only.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (surrounding white space ignored).
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that names the user; by default
    /// `preferred_username`, else `email`.
    pub user_claim: Option<String>,
    /// The ID token claim that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// If set, only users whose `email` (verified) is in one of these domains.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// If set, only users in at least one of these groups.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// `amr` values (RFC 8176, section 2) that make the sign-in count as
    /// having a second factor; default `["mfa"]`.
    #[serde(default = "default_second_factor_amr")]
    pub second_factor_amr: Vec<String>,
    /// `acr` values (OpenID Connect Core 1.0, section 2) that make the
    /// sign-in count as having a second factor; default none.
    #[serde(default)]
    pub second_factor_acr: Vec<String>,
}

fn default_second_factor_amr() -> Vec<String> {
    vec!["mfa".into()]
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// A client secret; never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A provider ready to use: its table, checked, and its secret.
#[derive(Debug, Clone)]
pub struct Provider {
    pub config: ProviderConfig,
    pub secret: Secret,
}

impl Provider {
    /// The button's text.
    pub fn label(&self) -> String {
        self.config
            .label
            .clone()
            .unwrap_or_else(|| format!("Sign in with {}", self.config.name))
    }
}

/// Checks the tables and reads their secrets. Errors name the table and
/// what to change.
pub fn resolve(tables: Vec<ProviderConfig>) -> Result<Vec<Provider>, String> {
    if tables.len() > MAX_PROVIDERS {
        return Err(format!("at most {MAX_PROVIDERS} [[oidc]] providers"));
    }
    let mut out: Vec<Provider> = Vec::new();
    for config in tables {
        let name = &config.name;
        sallyport_proto::frame::check_name("[[oidc]] name", name).map_err(|e| e.to_string())?;
        if out.iter().any(|p| p.config.name == *name) {
            return Err(format!("two [[oidc]] providers are named {name:?}"));
        }
        check_issuer(&config.issuer).map_err(|e| format!("[[oidc]] {name}: {e}"))?;
        if config.client_id.is_empty() {
            return Err(format!("[[oidc]] {name}: client_id is empty"));
        }
        let secret = match (&config.client_secret_file, &config.client_secret_env) {
            (Some(path), None) => read_secret_file(path).map_err(|e| format!("[[oidc]] {name}: {e}"))?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!("[[oidc]] {name}: the environment variable {var} (client_secret_env) is not set")
            })?,
            _ => {
                return Err(format!(
                    "[[oidc]] {name}: give one of client_secret_file or client_secret_env"
                ))
            }
        };
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Err(format!("[[oidc]] {name}: the client secret is empty"));
        }
        out.push(Provider {
            config,
            secret: Secret(secret),
        });
    }
    Ok(out)
}

fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read client_secret_file {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read client_secret_file {}: {e}", path.display()))?;
    Ok(text)
}

/// An issuer must be `https://`, except on a loopback address
/// (`http://127.0.0.1:PORT`, `http://[::1]:PORT`, `http://localhost:PORT`),
/// where a provider beside the relay (or in tests) may use plain HTTP:
/// nothing crosses a network there.
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = openidconnect::url::Url::parse(issuer)
        .map_err(|e| format!("issuer {issuer:?} is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "issuer {issuer:?} must have no query, fragment or user (OpenID Connect Discovery 1.0, section 2)"
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "issuer {issuer:?} must be https:// (plain http:// only on a loopback address)"
        )),
        other => Err(format!("issuer {issuer:?}: scheme {other} is not https")),
    }
}

fn is_loopback(url: &openidconnect::url::Url) -> bool {
    match url.host() {
        Some(openidconnect::url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(openidconnect::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers() {
        assert!(check_issuer("https://idp.example.com/realms/x").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer("http://[::1]:8080").is_ok());
        assert!(check_issuer("http://localhost:8080").is_ok());
        assert!(check_issuer("http://idp.example.com").is_err());
        assert!(check_issuer("http://10.0.0.1").is_err());
        assert!(check_issuer("https://idp.example.com/?x=1").is_err());
        assert!(check_issuer("ftp://idp.example.com").is_err());
    }

    #[test]
    fn secrets_come_from_a_file_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "  s3cret\n").unwrap();
        let table = |name: &str, extra: &str| -> ProviderConfig {
            toml::from_str(&format!(
                "name = \"{name}\"\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n{extra}"
            ))
            .unwrap()
        };
        let file = format!("client_secret_file = {:?}", secret.display().to_string());
        let p = resolve(vec![table("corp", &file)]).unwrap();
        assert_eq!(p[0].secret.0, "s3cret");
        assert_eq!(p[0].config.scopes, ["profile", "email"]);
        assert_eq!(p[0].config.groups_claim, "groups");
        let e = resolve(vec![table("corp", &file), table("corp", &file)]).unwrap_err();
        assert!(e.contains("two [[oidc]] providers"), "{e}");
        let e = resolve(vec![table("corp", "")]).unwrap_err();
        assert!(e.contains("client_secret_file or client_secret_env"), "{e}");
        let e = resolve(vec![table("bad name", &file)]).unwrap_err();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn secret_is_never_printed() {
        let p = Provider {
            config: toml::from_str(
                "name = \"x\"\nissuer = \"https://i\"\nclient_id = \"c\"\nclient_secret_env = \"V\"",
            )
            .unwrap(),
            secret: Secret("hunter2".into()),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
