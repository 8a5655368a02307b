//! The relay's HTTP client for OpenID providers: discovery, keys (JWKS) and
//! the token endpoint. A provider is a peer like any other, so each request
//! is bounded in time ([`REQUEST_TIMEOUT`]) and its answer in size
//! ([`MAX_RESPONSE_BYTES`]), and redirects are not followed (a provider's
//! endpoints are the URLs in its discovery document, nothing else: this
//! keeps the relay from being sent to other hosts).
//!
//! TLS is rustls with the ring provider, as everywhere in Sallyport. It
//! trusts the web PKI roots (`webpki-roots`) and the operating system's
//! certificate store (`rustls-native-certs`), where an organization's own
//! CA for an internal provider goes (`update-ca-certificates`). Plain
//! `http://` is used only for issuers on a loopback address (see
//! `config::check_issuer`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{http, AsyncHttpClient, HttpRequest, HttpResponse};

/// How long one request to a provider may take, connecting to the last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from a provider (a discovery document or a key set
/// is a few KB; a token response with an ID token a few more).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// What went wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach the provider: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the provider's answer is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("TLS set-up for OpenID providers failed: {0}")]
    Tls(String),
    #[error("the provider's answer is not valid HTTP: {0}")]
    Http(#[from] http::Error),
}

/// A bounded client (cheap to clone).
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    /// A client trusting the web PKI roots and the system's store (a
    /// store that cannot be read adds nothing; its errors are logged).
    pub fn new() -> Result<Self, HttpError> {
        let client =
            crate::http_client::bounded_client(crate::http_client::public_roots(), REQUEST_TIMEOUT)
                .map_err(HttpError::Tls)?;
        Ok(Self { client })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.client.execute(request).await?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(builder.body(body)?)
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
