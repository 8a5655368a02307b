//! The browser pages and their assets. `scripts/build-web.sh` builds them
//! into `web-client/dist/` (committed), and they are embedded here, so a
//! relay binary needs no files beside it and no toolchain to build.
//!
//! Each file is embedded twice: as built and gzipped (`NAME.gz`, written by
//! the build script with `gzip -9n`, so deterministic). A browser that
//! accepts gzip gets the gzipped bytes (the terminal page: about 545 KB
//! instead of 1.48 MB), and nothing is compressed per request.
//!
//! Pages need a signed-in session except the sign-in page itself; they
//! redirect to it rather than answer 401, because a person reads them.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sallyport_proto::frame::service_name;

use super::auth::{require_admin, require_sign_in};
use super::client_addr::ClientAddr;
use super::{access, AppState, TERMINAL_CSP};
use crate::policy::Stage;

/// One embedded file of `web-client/dist/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// `body` gzipped: `dist/NAME.gz`, written by `scripts/build-web.sh`.
    gzip: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../web-client/dist/",
                $name
            )),
            gzip: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../web-client/dist/",
                $name,
                ".gz"
            )),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("services.html", HTML),
    asset!("account.html", HTML),
    asset!("audit.html", HTML),
    asset!("admin.html", HTML),
    asset!("replay.html", HTML),
    asset!("terminal.html", HTML),
    asset!("page.css", CSS),
    asset!("terminal.css", CSS),
    asset!("signin.js", JS),
    asset!("services.js", JS),
    asset!("account.js", JS),
    asset!("audit.js", JS),
    asset!("admin.js", JS),
    asset!("replay.js", JS),
    asset!("replay.css", CSS),
    asset!("terminal.js", JS),
    asset!("sallyport_web.js", JS),
    asset!("sallyport_web_bg.wasm", "application/wasm"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Strong ETags (a hash of the bytes sent), computed once: browsers
/// revalidate assets and get 304 while the relay binary is the same. The
/// plain and the gzipped file are different bytes, so each has its own tag.
fn etag(index: usize, gzipped: bool) -> &'static str {
    static ETAGS: OnceLock<Vec<[String; 2]>> = OnceLock::new();
    let tag = |bytes: &[u8]| {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hex: String = d.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("\"{hex}\"")
    };
    let tags = ETAGS.get_or_init(|| ASSETS.iter().map(|a| [tag(a.body), tag(a.gzip)]).collect());
    &tags[index][usize::from(gzipped)]
}

/// Whether an `Accept-Encoding` header lets the answer be gzipped: `gzip`
/// (or `x-gzip`, or else `*`) listed with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut wildcard = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if coding == "*" {
            wildcard = Some(weight > 0.0);
        }
    }
    wildcard.unwrap_or(false)
}

/// An embedded file as a response, gzipped if the browser accepts it (304
/// when the browser has it already).
pub(super) fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let asset = &ASSETS[i];
    let gzipped = asset.gzip.len() < asset.body.len() && accepts_gzip(headers);
    let tag = etag(i, gzipped);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut resp = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzipped {
        (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            asset.gzip,
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Caches must key on the header that chose the bytes.
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    resp
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    require_sign_in(state, headers).await.is_ok()
}

/// `/`: the sign-in page, or the services page for someone signed in.
pub async fn signin(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).await {
        return Redirect::to("/services").into_response();
    }
    serve("index.html", &headers)
}

/// `/services`: the services the user may reach.
pub async fn services(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !signed_in(&state, &headers).await {
        return Redirect::to("/").into_response();
    }
    serve("services.html", &headers)
}

/// `/account`: the signed-in user's own settings (one-time codes).
pub async fn account(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !signed_in(&state, &headers).await {
        return Redirect::to("/").into_response();
    }
    serve("account.html", &headers)
}

/// `/audit`: the audit log, for admins.
pub async fn audit(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin_page(&state, &headers, "audit.html").await
}

/// `/replay/{session}`: one session's recording, for admins. The page
/// fetches the recording itself (`/api/recordings/{session}`).
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(_session): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin_page(&state, &headers, "replay.html").await
}

async fn admin_page(state: &AppState, headers: &HeaderMap, page: &str) -> Response {
    match require_admin(state, headers).await {
        Ok(_) => serve(page, headers),
        Err(e) if e.0 == StatusCode::UNAUTHORIZED => Redirect::to("/").into_response(),
        Err(e) => denied_page(e.0, &e.1),
    }
}

/// `/t/{service}`: a terminal for one service. The page finds the service
/// (and its host keys) through the API; here only the name's shape counts.
pub async fn terminal(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(service): Path<String>,
    tls: access::Tls,
    headers: HeaderMap,
) -> Response {
    let Ok(sign_in) = require_sign_in(&state, &headers).await else {
        return Redirect::to("/").into_response();
    };
    let Ok(service) = service_name("service name", &service) else {
        return (StatusCode::NOT_FOUND, "no such service\n").into_response();
    };
    if let Err(e) = access::check(&state, &sign_in, peer, &tls, &service, Stage::Page).await {
        return denied_page(e.0, &e.1);
    }
    let mut resp = serve("terminal.html", &headers);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(TERMINAL_CSP),
    );
    resp
}

/// A page saying why the terminal cannot open: the policy's reason, for a
/// person to read (and act on).
pub(super) fn denied_page(status: StatusCode, reason: &str) -> Response {
    let title = if status == StatusCode::FORBIDDEN {
        "Access denied"
    } else {
        "Cannot open the terminal"
    };
    let body = format!(
        "<h1>{title}</h1><p id=\"reason\">{}</p><p><a href=\"/services\">Back to your services</a></p>",
        escape(reason)
    );
    (
        status,
        [(header::CONTENT_TYPE, HTML)],
        server_page(title, "", &body),
    )
        .into_response()
}

/// A small page the relay writes itself (not from the bundle): `head` goes
/// into `<head>` as is, `body` into the page's card; both must be escaped
/// by the caller ([`escape`]).
pub(super) fn server_page(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>{title} · Sallyport</title>\
         <link rel=\"icon\" href=\"/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/page.css\"></head>\
         <body><main class=\"card\">{body}</main></body></html>\n"
    )
}

/// `text` safe in HTML text and in a quoted attribute value.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `/assets/{file}`: the bundle's scripts, styles, the wasm client.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_script_is_embedded_with_its_type() {
        for a in ASSETS {
            let ext = a.name.rsplit('.').next().unwrap_or_default();
            let want = match ext {
                "html" => HTML,
                "css" => CSS,
                "js" => JS,
                "wasm" => "application/wasm",
                "svg" => "image/svg+xml",
                other => panic!("unexpected asset type {other}"),
            };
            assert_eq!(a.content_type, want, "{}", a.name);
        }
        for page in [
            "index.html",
            "services.html",
            "account.html",
            "audit.html",
            "admin.html",
            "replay.html",
            "terminal.html",
        ] {
            let a = ASSETS.iter().find(|a| a.name == page).unwrap();
            let text = std::str::from_utf8(a.body).unwrap();
            // The CSP forbids inline scripts and styles: pages only link them.
            assert!(!text.contains("<script>"), "{page} has an inline script");
            assert!(!text.contains("<style"), "{page} has an inline style");
            assert!(!text.contains("style="), "{page} has a style attribute");
        }
    }

    #[test]
    fn etags_differ_per_body() {
        let a = ASSETS.iter().position(|a| a.name == "signin.js").unwrap();
        let b = ASSETS.iter().position(|a| a.name == "services.js").unwrap();
        assert_ne!(etag(a, false), etag(b, false));
        assert_ne!(etag(a, false), etag(a, true));
        assert!(etag(a, false).starts_with('"') && etag(a, false).len() == 26);
    }

    #[test]
    fn every_gzipped_file_is_its_plain_file_compressed() {
        for a in ASSETS {
            // A gzip member ends with the length of what it holds (the relay
            // has no inflater; tests/tests/browser.rs decodes them over HTTP).
            assert!(a.gzip.starts_with(&[0x1f, 0x8b, 8]), "{}.gz", a.name);
            let len: [u8; 4] = a.gzip[a.gzip.len() - 4..].try_into().unwrap();
            assert_eq!(
                u32::from_le_bytes(len) as usize,
                a.body.len(),
                "{}.gz",
                a.name
            );
        }
    }

    #[test]
    fn accept_encoding_chooses_gzip() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; q=0.0, *"));
        assert!(!with("br, deflate"));
        assert!(!with("identity"));
    }
}
