//! Behind a load balancer: the relay takes the client's address from a PROXY
//! protocol header (v1 and v2) or an `X-Forwarded-For` header only when the
//! connection comes from one of its `trusted_proxies`, and then everything
//! that judges the client by address sees that address: the sign-in in the
//! audit log, a policy's `cidr` rule, the per-address connection cap. The
//! test plays the balancer from 127.0.0.1 (trusted) and a stranger from
//! 127.0.0.2 (not), writing the header bytes itself before TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sallyport_relay::limits;
use sallyport_tests::proxy::{
    self, get, login, sign_in_addresses, tls_after, v1_header, v2_header, v2_local,
};
use sallyport_tests::*;

/// The balancer, in `trusted_proxies`.
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Anyone else.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// A client on the internet.
const REMOTE: &str = "198.51.100.7:40001";
/// A client in the office (the policy's 10.0.0.0/8).
const OFFICE: &str = "10.1.2.3:40002";

/// A policy with `office` open to [`USER`] from 10.0.0.0/8 only, and the
/// forwarding settings `forwarding` (TOML lines).
fn config(forwarding: &str) -> String {
    format!(
        "trusted_proxies = [\"127.0.0.1\"]\n{forwarding}\n[policy]\n\
         [[policy.services.office.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\ncidr = [\"10.0.0.0/8\"]\n"
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A relay behind a PROXY-protocol balancer, with [`USER`].
fn relay_behind_proxy(dir: &std::path::Path, extra: &str) -> RelayProc {
    let relay = RelayProc::start_with_config(
        dir,
        Some(&config(&format!("proxy_protocol = true\n{extra}"))),
    );
    relay.add_user(USER, PASSWORD);
    relay
}

/// The bearer token of a sign-in.
fn token_of(answer: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(answer).expect("login answer is JSON");
    v["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn proxy_headers_from_a_trusted_proxy_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_behind_proxy(dir.path(), "");
    let at = relay.https_addr();

    // v1: the sign-in is recorded under the address the balancer named.
    let (code, answer) = login(
        &relay,
        PROXY,
        &v1_header(addr(REMOTE), at),
        &[],
        USER,
        PASSWORD,
    )
    .await
    .expect("login through the balancer (v1)");
    assert_eq!(code, 200, "{answer}");
    let token = token_of(&answer);
    // v2, IPv6 client over an IPv4 balancer connection (v2 wants one family).
    let v6_client = addr("[2001:db8::7]:40003");
    let v6_relay = SocketAddr::new("2001:db8::1".parse().unwrap(), at.port());
    let (code, answer) = login(
        &relay,
        PROXY,
        &v2_header(v6_client, v6_relay),
        &[],
        USER,
        "wrong",
    )
    .await
    .expect("login through the balancer (v2)");
    assert_eq!(code, 401, "{answer}");
    assert_eq!(
        sign_in_addresses(&relay),
        ["198.51.100.7", "2001:db8::7"],
        "the audit log names the clients, not the balancer"
    );

    // A cidr rule sees the named address: the office is let in, the internet is not.
    let (code, page) = get(
        &relay,
        PROXY,
        &v2_header(addr(OFFICE), at),
        &[],
        &token,
        "/t/office",
    )
    .await
    .expect("terminal page from the office");
    assert_eq!(code, 200, "{page}");
    let (code, page) = get(
        &relay,
        PROXY,
        &v1_header(addr(REMOTE), at),
        &[],
        &token,
        "/t/office",
    )
    .await
    .expect("terminal page from the internet");
    assert_eq!(code, 403, "{page}");

    // A health check (v2 LOCAL) is the balancer itself, and is served.
    let mut check = tls_after(&relay, PROXY, &v2_local())
        .await
        .expect("a health check");
    let (code, _) = proxy::request(&mut check, "GET", "/healthz", &[], None)
        .await
        .expect("healthz");
    assert_eq!(code, 200);
}

#[tokio::test]
async fn sign_in_limits_count_the_client_a_proxy_names() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_behind_proxy(dir.path(), "");
    let at = relay.https_addr();
    let guesser = v1_header(addr(REMOTE), at);
    // One client's guesses (each at another name, so only its address
    // counts) use up that client's budget...
    for i in 0..limits::MAX_FAILURES_PER_WINDOW {
        let (code, answer) = login(&relay, PROXY, &guesser, &[], &format!("nobody{i}"), "guess")
            .await
            .expect("a guess");
        assert_eq!(code, 401, "{answer}");
    }
    let (code, answer) = login(&relay, PROXY, &guesser, &[], "nobody-else", "guess")
        .await
        .expect("one guess too many");
    assert_eq!(code, 429, "{answer}");
    // ...and not the budget of another client behind the same balancer.
    let (code, answer) = login(
        &relay,
        PROXY,
        &v1_header(addr(OFFICE), at),
        &[],
        USER,
        PASSWORD,
    )
    .await
    .expect("another client's sign-in");
    assert_eq!(code, 200, "{answer}");
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_address_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_behind_proxy(dir.path(), "");
    let at = relay.https_addr();

    // A stranger who claims to be in the office gets no connection at all:
    // no header is read from it, and the header is no TLS handshake.
    let claim = v1_header(addr(OFFICE), at);
    assert!(
        login(&relay, STRANGER, &claim, &[], USER, PASSWORD)
            .await
            .is_err(),
        "a stranger's PROXY header was taken"
    );
    assert!(tls_after(&relay, STRANGER, &v2_header(addr(OFFICE), at))
        .await
        .is_err());

    // Without a header the stranger is itself: signed in as 127.0.0.2, and
    // outside the office.
    let (code, answer) = login(&relay, STRANGER, b"", &[], USER, PASSWORD)
        .await
        .expect("a direct login");
    assert_eq!(code, 200, "{answer}");
    let (code, page) = get(&relay, STRANGER, b"", &[], &token_of(&answer), "/t/office")
        .await
        .expect("terminal page");
    assert_eq!(code, 403, "{page}");
    assert_eq!(sign_in_addresses(&relay), ["127.0.0.2"]);
}

#[tokio::test]
async fn a_malformed_proxy_header_ends_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_behind_proxy(dir.path(), "");
    let at = relay.https_addr();
    // One client is connected (TLS done) while another's header is garbage.
    let mut held = tls_after(&relay, PROXY, &v1_header(addr(REMOTE), at))
        .await
        .expect("a client through the balancer");
    for bad in [
        &b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n"[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00 no header at all"[..],
    ] {
        assert!(
            tls_after(&relay, PROXY, bad).await.is_err(),
            "a connection with a malformed header was served"
        );
    }
    let log = wait_for("the relay to log the refused header", || {
        let log = relay.proc.as_ref().expect("relay").log_text();
        log.contains("PROXY header refused").then_some(log)
    });
    assert!(log.contains("malformed PROXY header"), "{log}");
    // The others keep working: the held connection and a new one.
    let (code, _) = proxy::request(&mut held, "GET", "/healthz", &[], None)
        .await
        .expect("the held connection still serves");
    assert_eq!(code, 200);
    let (code, answer) = login(
        &relay,
        PROXY,
        &v1_header(addr(REMOTE), at),
        &[],
        USER,
        PASSWORD,
    )
    .await
    .expect("a new connection is served");
    assert_eq!(code, 200, "{answer}");
}

#[tokio::test]
async fn the_per_address_cap_counts_the_client_a_proxy_names() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_behind_proxy(dir.path(), "max_https_connections_per_address = 2");
    let at = relay.https_addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tls_after(&relay, PROXY, &v1_header(addr(REMOTE), at))
                .await
                .expect("a connection under the cap"),
        );
    }
    // The third of one client is refused, though all come from the balancer...
    assert!(
        tls_after(&relay, PROXY, &v1_header(addr(REMOTE), at))
            .await
            .is_err(),
        "a client over its cap was served"
    );
    // ...and another client behind the same balancer is not.
    let (code, answer) = login(
        &relay,
        PROXY,
        &v2_header(addr(OFFICE), at),
        &[],
        USER,
        PASSWORD,
    )
    .await
    .expect("another client behind the balancer");
    assert_eq!(code, 200, "{answer}");
    drop(held);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProc::start_with_config(dir.path(), Some(&config("")));
    relay.add_user(USER, PASSWORD);

    // The balancer appended the client it saw (10.1.2.3) to what the client
    // claimed (192.0.2.66): the right-most untrusted entry counts.
    let xff = [("x-forwarded-for", "192.0.2.66, 10.1.2.3")];
    let (code, answer) = login(&relay, PROXY, b"", &xff, USER, PASSWORD)
        .await
        .expect("login through an HTTP balancer");
    assert_eq!(code, 200, "{answer}");
    let token = token_of(&answer);
    let (code, page) = get(&relay, PROXY, b"", &xff, &token, "/t/office")
        .await
        .expect("terminal page");
    assert_eq!(code, 200, "{page}");

    // The same header from a stranger is ignored: it is 127.0.0.2.
    let forged = [("x-forwarded-for", "10.1.2.3")];
    let (code, answer) = login(&relay, STRANGER, b"", &forged, USER, "wrong")
        .await
        .expect("a direct login");
    assert_eq!(code, 401, "{answer}");
    let (code, page) = get(&relay, STRANGER, b"", &forged, &token, "/t/office")
        .await
        .expect("terminal page");
    assert_eq!(code, 403, "{page}");
    assert_eq!(sign_in_addresses(&relay), ["10.1.2.3", "127.0.0.2"]);
}

#[tokio::test]
async fn rfc_7239_forwarded_is_read_instead_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProc::start_with_config(
        dir.path(),
        Some(&config("forwarded_header = \"forwarded\"")),
    );
    relay.add_user(USER, PASSWORD);
    // The balancer writes Forwarded; an X-Forwarded-For is the client's own
    // and is not read.
    let headers = [
        (
            "forwarded",
            "for=192.0.2.66, for=\"10.1.2.3:40002\";proto=https",
        ),
        ("x-forwarded-for", "10.9.9.9"),
    ];
    let (code, answer) = login(&relay, PROXY, b"", &headers, USER, PASSWORD)
        .await
        .expect("login through an HTTP balancer");
    assert_eq!(code, 200, "{answer}");
    let (code, page) = get(
        &relay,
        PROXY,
        b"",
        &headers,
        &token_of(&answer),
        "/t/office",
    )
    .await
    .expect("terminal page");
    assert_eq!(code, 200, "{page}");
    assert_eq!(sign_in_addresses(&relay), ["10.1.2.3"]);
}
