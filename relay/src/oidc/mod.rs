//! OpenID Connect sign-in: the relay is a confidential client of each
//! configured provider and uses the authorization code flow (OpenID Connect
//! Core 1.0, section 3.1) with PKCE (RFC 7636, S256), `state` and `nonce`.
//!
//! - **Start** ([`Sso::start`]): the provider's metadata comes from
//!   discovery on its issuer URL (cached, [`METADATA_TTL`]); a fresh
//!   `state`, `nonce` and PKCE verifier are kept here, in memory, under the
//!   `state` ([`PENDING_TTL`], at most [`MAX_PENDING`]), bound to the
//!   browser that started by the hash of a random value in a cookie of its
//!   own. The browser is sent to the provider.
//! - **Finish** ([`Sso::finish`]): the `state` is taken out (so it works
//!   once) and must be unexpired, for this provider and this browser; the
//!   code is exchanged with the verifier; the ID token's signature, issuer,
//!   audience, expiry and nonce are checked by `openidconnect`
//!   (section 3.1.3.7). A token signed with a key the relay does not know
//!   makes it fetch the provider's keys again, at most once per
//!   [`MIN_REFRESH_INTERVAL`] (key rotation). The user is named by a claim,
//!   and their groups come from another.
//!
//! What the provider says is a peer's input: answers are bounded in size and
//! time (`http`), and names and groups are checked like any other.

pub mod config;
pub mod http;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
};
use sallyport_proto::frame::check_name;

pub use config::Provider;

/// How long a sign-in may take at the provider (from the redirect to the
/// provider until the browser comes back).
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);

/// Sign-ins in progress the relay remembers at once, all providers
/// together: anyone can start one, so they are capped.
pub const MAX_PENDING: usize = 10_000;

/// How long a provider's discovery document and keys are used before they
/// are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);

/// The least time between two fetches of a provider's metadata and keys
/// made because a token named a key the relay does not know: an attacker's
/// tokens cannot make the relay hammer the provider.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Most groups taken from one ID token; the rest are ignored.
pub const MAX_GROUPS: usize = 256;

/// Largest ID token payload decoded for its claims (the token's signature
/// has been checked before).
pub const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// The cookie binding a pending sign-in to the browser that started it.
pub const BROWSER_COOKIE: &str = "sallyport_oidc";

/// Why an OpenID Connect sign-in failed. The messages are shown to the
/// person signing in.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("no sign-in provider is named {0:?}")]
    NoSuchProvider(String),
    #[error("too many sign-ins are in progress; try again in a few minutes")]
    TooManyPending,
    #[error("the provider {0} cannot be reached or sent a bad answer: {1}")]
    Provider(String, String),
    #[error("this sign-in is unknown, was already used or has expired: start again from the sign-in page")]
    UnknownState,
    #[error("this sign-in was started in another browser: start again from the sign-in page")]
    OtherBrowser,
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the provider's ID token is not valid: {0}")]
    BadIdToken(String),
    #[error("{0}")]
    NotAllowed(String),
}

/// Who signed in, as the provider says.
#[derive(Debug, Clone)]
pub struct SsoIdentity {
    /// The provider's name (config).
    pub provider: String,
    /// The provider's subject (`sub`), stable for the user at the provider.
    pub subject: String,
    /// The Sallyport user name (from the user claim).
    pub user: String,
    /// Groups from the groups claim (valid names only, at most [`MAX_GROUPS`]).
    pub groups: Vec<String>,
    /// Whether the token's `amr` or `acr` is one the provider's config
    /// counts as a second factor.
    pub second_factor: bool,
    /// Where the browser goes once signed in: `/services`, or the CLI's
    /// sign-in page it started from ([`Sso::start`]'s `next`).
    pub next: String,
}

/// A sign-in in progress.
struct Pending {
    provider: String,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    /// SHA-256 (hex) of the browser cookie's value.
    browser: String,
    /// Where to go afterwards (checked by [`after_sign_in`]).
    next: String,
    started: Instant,
}

/// Where a browser goes once signed in: `next` when it is the CLI's sign-in
/// page (`/cli/login?...`, the only place the sign-in page is sent back
/// to), else `/services`. Nothing else is followed, so the parameter cannot
/// send anyone to another site.
pub fn after_sign_in(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/cli/login?")
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/services".to_owned(),
    }
}

/// A provider's metadata and when it was fetched.
#[derive(Default)]
struct Cached {
    metadata: Option<CoreProviderMetadata>,
    fetched: Option<Instant>,
    /// The last fetch asked for by an unknown key.
    refreshed: Option<Instant>,
}

/// The configured providers, their cached metadata and the sign-ins in
/// progress.
pub struct Sso {
    providers: Vec<Provider>,
    /// The relay's public origin, for redirect URIs.
    origin: String,
    /// Made only when there are providers: it reads the system's
    /// certificate store, which a relay without single sign-on need not.
    http: Option<http::ProviderHttp>,
    pending: Mutex<HashMap<String, Pending>>,
    cache: HashMap<String, tokio::sync::Mutex<Cached>>,
    password_sign_in: bool,
}

impl Sso {
    /// Providers as configured; `origin` is the relay's public origin
    /// (`https://host[:port]`); `password_sign_in` whether local passwords
    /// still sign people in beside them.
    pub fn new(
        providers: Vec<Provider>,
        origin: &str,
        password_sign_in: bool,
    ) -> Result<Self, http::HttpError> {
        let cache = providers
            .iter()
            .map(|p| (p.config.name.clone(), tokio::sync::Mutex::default()))
            .collect();
        let http = match providers.is_empty() {
            true => None,
            false => Some(http::ProviderHttp::new()?),
        };
        Ok(Self {
            providers,
            origin: origin.to_owned(),
            http,
            pending: Mutex::new(HashMap::new()),
            cache,
            password_sign_in,
        })
    }

    /// Whether local users may sign in with a password (config
    /// `password_sign_in`).
    pub fn password_sign_in(&self) -> bool {
        self.password_sign_in
    }

    /// The HTTP client for provider `name` (there is one when there are
    /// providers at all).
    fn http(&self, name: &str) -> Result<&http::ProviderHttp, SsoError> {
        self.http
            .as_ref()
            .ok_or_else(|| SsoError::NoSuchProvider(name.chars().take(64).collect()))
    }

    /// The providers, in config order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    fn provider(&self, name: &str) -> Result<&Provider, SsoError> {
        self.providers
            .iter()
            .find(|p| p.config.name == name)
            .ok_or_else(|| SsoError::NoSuchProvider(name.chars().take(64).collect()))
    }

    /// `ORIGIN/auth/oidc/NAME/callback`, registered at the provider.
    pub fn redirect_uri(&self, name: &str) -> String {
        format!("{}/auth/oidc/{name}/callback", self.origin)
    }

    /// The provider's metadata: cached, or fetched by discovery. With
    /// `refresh` (a token named an unknown key), fetched again unless the
    /// last such fetch was within [`MIN_REFRESH_INTERVAL`].
    async fn metadata(
        &self,
        p: &Provider,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, SsoError> {
        let name = &p.config.name;
        let Some(lock) = self.cache.get(name) else {
            return Err(SsoError::NoSuchProvider(name.clone()));
        };
        let mut cached = lock.lock().await;
        let fresh = cached.fetched.is_some_and(|t| t.elapsed() < METADATA_TTL);
        let recently_refreshed = cached
            .refreshed
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL);
        if let Some(metadata) = &cached.metadata {
            if (fresh && !refresh) || (refresh && recently_refreshed) {
                return Ok(metadata.clone());
            }
        }
        if refresh {
            cached.refreshed = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(p.config.issuer.clone())
            .map_err(|e| SsoError::Provider(name.clone(), e.to_string()))?;
        let fetched = CoreProviderMetadata::discover_async(issuer, self.http(name)?)
            .await
            .map_err(|e| SsoError::Provider(name.clone(), error_chain(&e)));
        cached.fetched = Some(Instant::now());
        let metadata = fetched?;
        tracing::info!(provider = %name, keys = metadata.jwks().keys().len(), "OpenID provider metadata fetched");
        cached.metadata = Some(metadata.clone());
        Ok(metadata)
    }

    fn client(&self, p: &Provider, metadata: CoreProviderMetadata) -> Result<Client, SsoError> {
        let redirect = RedirectUrl::new(self.redirect_uri(&p.config.name))
            .map_err(|e| SsoError::Provider(p.config.name.clone(), e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.config.client_id.clone()),
            Some(ClientSecret::new(p.secret.0.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in with provider `name` for the browser whose binding
    /// cookie holds `browser_secret`: returns the provider's authorization
    /// URL to send the browser to. `next` is where the browser asked to go
    /// afterwards ([`after_sign_in`] decides).
    pub async fn start(
        &self,
        name: &str,
        browser_secret: &str,
        next: Option<&str>,
    ) -> Result<String, SsoError> {
        let p = self.provider(name)?;
        let metadata = self.metadata(p, false).await?;
        let client = self.client(p, metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &p.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, v| v.started.elapsed() < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(SsoError::TooManyPending);
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                provider: name.to_owned(),
                nonce,
                verifier,
                browser: sallyport_common::hash::sha256_hex(browser_secret.as_bytes()),
                next: after_sign_in(next),
                started: Instant::now(),
            },
        );
        Ok(url.to_string())
    }

    /// Finishes a sign-in: `state` and `code` from the provider's redirect,
    /// `browser_secret` from the binding cookie (if the browser sent it).
    pub async fn finish(
        &self,
        name: &str,
        state: &str,
        code: &str,
        browser_secret: Option<&str>,
    ) -> Result<SsoIdentity, SsoError> {
        let p = self.provider(name)?;
        // Taken out first: a state is good for one try, whatever follows.
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
            .filter(|v| v.started.elapsed() < PENDING_TTL && v.provider == name)
            .ok_or(SsoError::UnknownState)?;
        // Hashes of secrets: comparing them tells a guesser nothing.
        let same_browser = browser_secret
            .is_some_and(|s| sallyport_common::hash::sha256_hex(s.as_bytes()) == pending.browser);
        if !same_browser {
            return Err(SsoError::OtherBrowser);
        }
        let metadata = self.metadata(p, false).await?;
        let client = self.client(p, metadata)?;
        let provider_err = |e: String| SsoError::Provider(name.to_owned(), e);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| provider_err(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(self.http(name)?)
            .await
            .map_err(|e| provider_err(error_chain(&e)))?;
        use openidconnect::TokenResponse as _;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::BadIdToken("the provider sent no ID token".into()))?;
        let verified = id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .map(|c| c.subject().to_string());
        let subject = match verified {
            Ok(s) => s,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // Perhaps the provider rotated its keys: fetch them again.
                let metadata = self.metadata(p, true).await?;
                let client = self.client(p, metadata)?;
                let verifier = client.id_token_verifier();
                let subject = id_token
                    .claims(&verifier, &pending.nonce)
                    .map(|c| c.subject().to_string());
                subject.map_err(|e| SsoError::BadIdToken(e.to_string()))?
            }
            Err(e) => return Err(SsoError::BadIdToken(e.to_string())),
        };
        // The signature is good: the payload's other claims can be read.
        let claims = payload(&id_token.to_string())?;
        let mut id = identity(p, subject, &claims)?;
        id.next = pending.next;
        Ok(id)
    }
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// An error with its sources, for a message that says what failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The JSON payload of a compact JWS (already verified).
fn payload(jws: &str) -> Result<serde_json::Map<String, serde_json::Value>, SsoError> {
    let bad = |why: &str| SsoError::BadIdToken(why.to_owned());
    let part = jws.split('.').nth(1).ok_or_else(|| bad("not a JWS"))?;
    if part.len() > MAX_ID_TOKEN_BYTES {
        return Err(bad("the ID token is too large"));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad("its payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("its payload is not a JSON object"))
}

/// The Sallyport identity in a verified ID token's claims, if the
/// provider's allow-lists admit it.
fn identity(
    p: &Provider,
    subject: String,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<SsoIdentity, SsoError> {
    let text = |claim: &str| claims.get(claim).and_then(|v| v.as_str());
    let (claim, user) = match &p.config.user_claim {
        Some(c) => (c.as_str(), text(c)),
        None => match text("preferred_username") {
            Some(u) => ("preferred_username", Some(u)),
            None => ("email", text("email")),
        },
    };
    let user = user.ok_or_else(|| {
        SsoError::NotAllowed(format!(
            "the provider's ID token has no {claim} claim to name the user; ask an admin to set user_claim"
        ))
    })?;
    check_name("user name", user).map_err(|_| {
        SsoError::NotAllowed(format!(
            "the {claim} claim {user:?} is not a valid Sallyport user name (letters, digits, '.', '_', '-'); \
             ask an admin to set user_claim to a claim that is"
        ))
    })?;
    let groups: Vec<String> = match claims.get(&p.config.groups_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|g| check_name("group", g).is_ok())
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(g)) if check_name("group", g).is_ok() => vec![g.clone()],
        _ => Vec::new(),
    };
    if !p.config.allowed_domains.is_empty() {
        let verified = claims.get("email_verified").and_then(|v| v.as_bool()) != Some(false);
        let domain = text("email")
            .filter(|_| verified)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let ok = domain.is_some_and(|d| {
            p.config
                .allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d))
        });
        if !ok {
            return Err(SsoError::NotAllowed(format!(
                "{user} has no verified e-mail address in a domain allowed to sign in with {}",
                p.config.name
            )));
        }
    }
    if !p.config.allowed_groups.is_empty()
        && !groups.iter().any(|g| p.config.allowed_groups.contains(g))
    {
        return Err(SsoError::NotAllowed(format!(
            "{user} is in none of the groups allowed to sign in with {}",
            p.config.name
        )));
    }
    let amr = claims.get("amr").and_then(|v| v.as_array());
    let amr_ok = amr.is_some_and(|values| {
        values
            .iter()
            .filter_map(|v| v.as_str())
            .any(|v| p.config.second_factor_amr.iter().any(|a| a == v))
    });
    let acr_ok = text("acr").is_some_and(|v| p.config.second_factor_acr.iter().any(|a| a == v));
    Ok(SsoIdentity {
        provider: p.config.name.clone(),
        subject,
        user: user.to_owned(),
        groups,
        second_factor: amr_ok || acr_ok,
        next: "/services".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &str) -> Provider {
        Provider {
            config: toml::from_str(&format!(
                "name = \"corp\"\nissuer = \"https://i\"\nclient_id = \"c\"\nclient_secret_env = \"V\"\n{extra}"
            ))
            .unwrap(),
            secret: config::Secret("s".into()),
        }
    }

    fn claims(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn user_and_groups_from_claims() {
        let p = provider("");
        let c = claims(serde_json::json!({
            "preferred_username": "alice", "email": "a@x.com",
            "groups": ["ops", "bad group", "dev"]
        }));
        let id = identity(&p, "sub1".into(), &c).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["ops", "dev"]);
        // Falls back to email, which is not a valid user name: a clear refusal.
        let c = claims(serde_json::json!({ "email": "a@x.com" }));
        let e = identity(&p, "sub1".into(), &c).unwrap_err().to_string();
        assert!(e.contains("email claim"), "{e}");
    }

    #[test]
    fn amr_and_acr_count_as_a_second_factor_as_configured() {
        let base = serde_json::json!({ "preferred_username": "alice" });
        let with = |extra: serde_json::Value| {
            let mut c = claims(base.clone());
            c.extend(claims(extra));
            c
        };
        let p = provider("");
        let second = |p: &Provider, c| identity(p, "s".into(), &c).unwrap().second_factor;
        assert!(!second(&p, with(serde_json::json!({}))));
        assert!(!second(&p, with(serde_json::json!({ "amr": ["pwd"] }))));
        assert!(second(
            &p,
            with(serde_json::json!({ "amr": ["pwd", "mfa"] }))
        ));
        // A string is not an amr array (RFC 8176 says array).
        assert!(!second(&p, with(serde_json::json!({ "amr": "mfa" }))));
        let p = provider("second_factor_amr = [\"otp\", \"hwk\"]\nsecond_factor_acr = [\"gold\"]");
        assert!(!second(&p, with(serde_json::json!({ "amr": ["mfa"] }))));
        assert!(second(&p, with(serde_json::json!({ "amr": ["hwk"] }))));
        assert!(second(&p, with(serde_json::json!({ "acr": "gold" }))));
        assert!(!second(&p, with(serde_json::json!({ "acr": "bronze" }))));
    }

    #[test]
    fn only_the_cli_sign_in_is_followed_after_sign_in() {
        assert_eq!(after_sign_in(None), "/services");
        assert_eq!(
            after_sign_in(Some("/cli/login?port=1&state=s")),
            "/cli/login?port=1&state=s"
        );
        assert_eq!(after_sign_in(Some("https://evil.example/")), "/services");
        assert_eq!(
            after_sign_in(Some("//evil.example/cli/login?")),
            "/services"
        );
        assert_eq!(after_sign_in(Some("/cli/login?a b")), "/services");
    }

    #[test]
    fn allow_lists() {
        let p = provider("allowed_domains = [\"example.com\"]\nallowed_groups = [\"staff\"]");
        let ok = claims(serde_json::json!({
            "preferred_username": "bob", "email": "bob@Example.com", "groups": ["staff"]
        }));
        assert!(identity(&p, "s".into(), &ok).is_ok());
        let other_domain = claims(serde_json::json!({
            "preferred_username": "bob", "email": "bob@evil.com", "groups": ["staff"]
        }));
        assert!(identity(&p, "s".into(), &other_domain).is_err());
        let unverified = claims(serde_json::json!({
            "preferred_username": "bob", "email": "bob@example.com",
            "email_verified": false, "groups": ["staff"]
        }));
        assert!(identity(&p, "s".into(), &unverified).is_err());
        let no_group = claims(serde_json::json!({
            "preferred_username": "bob", "email": "bob@example.com", "groups": ["x"]
        }));
        assert!(identity(&p, "s".into(), &no_group).is_err());
    }
}
