//! The HTTP client the ACME client talks to its CA with. An ACME server is
//! a peer like any other, so each request is bounded in time
//! ([`REQUEST_TIMEOUT`]) and its answer in size ([`MAX_RESPONSE_BYTES`]),
//! and redirects are not followed (RFC 8555 gives every URL in the
//! directory and in the server's answers; none needs a redirect).
//!
//! TLS is rustls with the ring provider, as everywhere in Sallyport. It
//! trusts the web PKI roots, the operating system's store, and the
//! `acme_ca_root` file when one is configured (a private ACME server such
//! as step-ca, or Pebble in tests).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// How long one request to the ACME server may take, connecting to the last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from the ACME server: a certificate chain is a few
/// KB, a directory or an order less.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A bounded client for one ACME server (cheap to clone).
#[derive(Clone)]
pub struct AcmeHttp {
    client: reqwest::Client,
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(e))
}

/// Why the client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AcmeHttpError {
    /// The CA root file could not be read.
    #[error("cannot read the ACME CA root {path}: {reason}")]
    Root {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// TLS or the client could not be set up.
    #[error("cannot set up the ACME client: {0}")]
    Setup(String),
}

/// The answer was larger than [`MAX_RESPONSE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the ACME server's answer is over {MAX_RESPONSE_BYTES} bytes")]
struct TooLarge;

impl AcmeHttp {
    /// A client trusting the web PKI, the system's store and `extra_root`.
    pub fn new(extra_root: Option<&Path>) -> Result<Self, AcmeHttpError> {
        let mut roots = crate::http_client::public_roots();
        if let Some(path) = extra_root {
            let root_err = |reason: String| AcmeHttpError::Root {
                path: path.display().to_string(),
                reason,
            };
            let pem = super::read_bounded(path).map_err(|e| root_err(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| root_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(root_err("it holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| root_err(e.to_string()))?;
            }
        }
        let client = crate::http_client::bounded_client(roots, REQUEST_TIMEOUT)
            .map_err(AcmeHttpError::Setup)?;
        Ok(Self { client })
    }

    async fn send(
        client: reqwest::Client,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Result<BytesResponse, instant_acme::Error> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let mut response = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(other)?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(other(TooLarge));
        }
        let mut head = http::Response::builder().status(response.status());
        if let Some(headers) = head.headers_mut() {
            *headers = response.headers().clone();
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(other)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(other(TooLarge));
            }
            bytes.extend_from_slice(&chunk);
        }
        let (parts, ()) = head.body(()).map_err(other)?.into_parts();
        Ok(BytesResponse {
            parts,
            body: Box::new(Bytes::from(bytes)),
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        Box::pin(Self::send(self.client.clone(), req))
    }
}
