//! A real OpenID provider for the single sign-on tests: `oidc-provider`
//! from npm (an OpenID Certified implementation), run by Node.js from
//! `tests/oidc/provider.mjs` on loopback, with one confidential client and
//! users with groups. Its login and consent pages are the library's own.
//! It is killed when its handle drops.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{wait_for, Proc};

/// The client the relay is registered as at the provider.
pub const CLIENT_ID: &str = "sallyport-relay";

/// That client's secret (the relay reads it from a file).
pub const CLIENT_SECRET: &str = "test client secret, not a real one";

/// A user of the provider: their name (also `preferred_username` and
/// `sub`), groups (the `groups` claim) and the authentication methods
/// their ID token names (`amr`, RFC 8176; empty: no claim).
pub struct User<'a> {
    pub name: &'a str,
    pub groups: &'a [&'a str],
    pub amr: &'a [&'a str],
}

/// A running provider.
pub struct Provider {
    /// `http://127.0.0.1:PORT`: its issuer URL, as in its discovery document.
    pub issuer: String,
    /// The file holding [`CLIENT_SECRET`], for the relay's `client_secret_file`.
    pub secret_file: PathBuf,
    pub proc: Proc,
}

/// `tests/oidc`, where the provider's script and its `node_modules` are.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl Provider {
    /// Starts the provider in `dir`, with [`CLIENT_ID`] allowed to redirect
    /// to `redirect_uris` only, and `users`. Waits until its discovery
    /// document (`/.well-known/openid-configuration`) is served.
    pub fn start(dir: &Path, redirect_uris: &[String], users: &[User]) -> Self {
        Self::start_with_ttl(dir, redirect_uris, users, 3600)
    }

    /// Like [`Provider::start`], with ID tokens valid `id_token_ttl` seconds.
    pub fn start_with_ttl(
        dir: &Path,
        redirect_uris: &[String],
        users: &[User],
        id_token_ttl: u64,
    ) -> Self {
        let script_dir = provider_dir();
        assert!(
            script_dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci --prefix tests/oidc` (scripts/test.sh does)"
        );
        let users: serde_json::Map<String, serde_json::Value> = users
            .iter()
            .map(|u| {
                let mut user = serde_json::json!({ "groups": u.groups });
                if !u.amr.is_empty() {
                    user["amr"] = serde_json::json!(u.amr);
                }
                (u.name.to_owned(), user)
            })
            .collect();
        let config = serde_json::json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": redirect_uris,
            "users": users,
            "id_token_ttl": id_token_ttl,
        });
        let config_path = dir.join("oidc-provider.json");
        std::fs::write(&config_path, config.to_string()).expect("write the provider's config");
        let secret_file = dir.join("oidc-client-secret");
        std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).expect("write the secret");
        let proc = Proc::spawn(
            "oidc-provider",
            Command::new("node")
                .arg(script_dir.join("provider.mjs"))
                .arg(&config_path)
                .current_dir(&script_dir),
            dir.join("oidc-provider.log"),
        );
        let mut provider = Self {
            issuer: String::new(),
            secret_file,
            proc,
        };
        provider.issuer = wait_for("the OpenID provider to print its issuer", || {
            assert!(
                provider.proc.is_running(),
                "the OpenID provider exited:\n{}",
                provider.proc.log_text()
            );
            provider.proc.log_text().lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                Some(v.get("issuer")?.as_str()?.to_owned())
            })
        });
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        wait_for("the OpenID provider's discovery document", || {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &discovery])
                .output()
                .ok()?;
            (out.stdout == b"200").then_some(())
        });
        provider
    }

    /// The relay's `[[oidc]]` table for this provider, named `name`.
    pub fn relay_config(&self, name: &str) -> String {
        format!(
            "[[oidc]]\nname = {name:?}\nissuer = {:?}\nclient_id = {CLIENT_ID:?}\n\
             client_secret_file = {:?}\nscopes = [\"profile\", \"email\", \"groups\"]\n\
             groups_claim = \"groups\"\n",
            self.issuer,
            self.secret_file.display().to_string(),
        )
    }
}

/// The relay's redirect URI for provider `name`, as it registers it.
pub fn redirect_uri(relay_url: &str, name: &str) -> String {
    format!("{relay_url}/auth/oidc/{name}/callback")
}
