//! Enrolment: a connector without a certificate trades a one-time token
//! secret and a certificate request for a client certificate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sallyport_common::transport::Connection;
use sallyport_proto::io::{write_frame, FrameReader};
use sallyport_proto::tunnel::{Code, EnrolReply, EnrolRequest};

use super::server::TunnelCtx;
use super::HANDSHAKE_TIMEOUT;
use sallyport_common::hash::sha256_hex;

/// Connections without a certificate served at once; each holds a task and
/// a QUIC connection (a few KiB) until its enrolment ends, at most
/// [`ENROL_REQUEST_TIMEOUT`] plus [`HANDSHAKE_TIMEOUT`].
pub const MAX_ENROLMENTS: usize = 64;
/// Of those, at most this many from one address (IPv6: one /64), so one
/// host holding idle connections cannot take every slot.
pub const MAX_ENROLMENTS_PER_ADDRESS: usize = 4;
/// A connection without a certificate must open its enrolment stream and
/// send the whole request (a few hundred bytes) this soon after the
/// handshake; a real connector does at once. A slow drip cannot hold a slot.
pub const ENROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The enrolment slots: [`MAX_ENROLMENTS`] in all, [`MAX_ENROLMENTS_PER_ADDRESS`]
/// per address.
#[derive(Default)]
pub struct EnrolSlots {
    taken: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One slot, given back on drop.
pub struct EnrolSlot {
    taken: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for EnrolSlot {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = taken.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                taken.remove(&self.key);
            }
        }
    }
}

impl EnrolSlots {
    /// A slot for a connection from `ip`, or why there is none.
    pub fn try_take(&self, ip: IpAddr) -> Result<EnrolSlot, &'static str> {
        // One address as the HTTPS listener counts it (IPv6: its /64).
        let key = crate::web::listener::address_key(ip);
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.values().sum::<usize>() >= MAX_ENROLMENTS {
            return Err("too many enrolments in progress; try again");
        }
        let mine = taken.entry(key).or_insert(0);
        if *mine >= MAX_ENROLMENTS_PER_ADDRESS {
            return Err("too many enrolments in progress from your address; try again");
        }
        *mine += 1;
        Ok(EnrolSlot {
            taken: self.taken.clone(),
            key,
        })
    }
}

/// Serves one enrolment on `conn`, then closes it.
pub(super) async fn serve(ctx: &TunnelCtx, conn: Connection) {
    let remote = conn.remote_address();
    let request = tokio::time::timeout(ENROL_REQUEST_TIMEOUT, async {
        let (send, recv) = conn.accept_control().await.map_err(|e| e.to_string())?;
        let req: EnrolRequest = FrameReader::new(recv)
            .read_frame()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((send, req))
    })
    .await;
    let (mut send, req) = match request {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "enrolment connection failed");
            conn.close(Code::Protocol, &e);
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "no enrolment request in time; closing");
            conn.close(Code::Timeout, "no enrolment request in time");
            return;
        }
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let reply = match enrol(ctx, &req, remote).await {
            Ok(reply) => reply,
            Err(reason) => EnrolReply::Refused { reason },
        };
        write_frame(&mut send, &reply)
            .await
            .map_err(|e| e.to_string())?;
        send.finish();
        // Let the connector read the answer; it closes the connection.
        send.stopped().await;
        Ok::<_, String>(reply)
    })
    .await;
    match outcome {
        Ok(Ok(EnrolReply::Enrolled { connector, .. })) => {
            tracing::info!(%connector, %remote, "connector enrolled");
        }
        Ok(Ok(EnrolReply::Refused { reason })) => {
            tracing::warn!(%remote, %reason, "enrolment refused");
        }
        Ok(Err(e)) => tracing::warn!(%remote, error = %e, "enrolment failed"),
        Err(_) => tracing::warn!(%remote, "enrolment timed out"),
    }
    conn.close(Code::Done, "enrolment done");
}

async fn enrol(
    ctx: &TunnelCtx,
    req: &EnrolRequest,
    remote: std::net::SocketAddr,
) -> Result<EnrolReply, String> {
    let store_failed = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "enrolment: store failed");
        "the relay could not record the enrolment; try again".to_string()
    };
    // The token is spent only once everything else has worked: a bad
    // certificate request leaves it usable until it expires.
    let token = match ctx
        .store
        .check_token(&req.secret)
        .await
        .map_err(store_failed)?
    {
        Ok(token) => token,
        Err(refusal) => return Err(refusal.to_string()),
    };
    let cert = ctx
        .ca
        .sign_connector(&req.csr_pem, &token.connector)
        .map_err(|e| e.to_string())?;
    let token = match ctx
        .store
        .redeem_token(&req.secret)
        .await
        .map_err(store_failed)?
    {
        Ok(token) => token,
        Err(refusal) => return Err(refusal.to_string()),
    };
    let connector = token.connector;
    ctx.store
        .enrol_connector(&connector, &sha256_hex(cert.der()))
        .await
        .map_err(store_failed)?;
    if token.replace {
        // The old certificate no longer opens connections; close the ones it has.
        let closed = ctx.registry.close_connector(
            &connector,
            Code::Revoked,
            &format!("connector {connector} was replaced by a new enrolment"),
        );
        tracing::info!(%connector, closed, "enrolment replaced the connector's certificate");
    }
    let event = crate::audit::Event::ConnectorEnrolled {
        connector: connector.clone(),
        remote: remote.to_string(),
        replaced: token.replace,
    };
    ctx.audit.append(&event).await.map_err(store_failed)?;
    crate::metrics::Metrics::add(&ctx.metrics.enrolments, 1);
    Ok(EnrolReply::Enrolled {
        connector,
        cert_pem: cert.pem(),
        ca_pem: ctx.ca.cert_pem().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_enrolment_slot() {
        let slots = EnrolSlots::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_ENROLMENTS_PER_ADDRESS)
            .map(|_| slots.try_take(a).unwrap())
            .collect();
        assert!(slots.try_take(a).is_err());
        // IPv4-mapped is the same address; another /64 host is the same too.
        assert!(slots.try_take("::ffff:192.0.2.1".parse().unwrap()).is_err());
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _v6: Vec<_> = (0..MAX_ENROLMENTS_PER_ADDRESS)
            .map(|_| slots.try_take(v6a).unwrap())
            .collect();
        assert!(slots.try_take(v6b).is_err());
        // Someone else still gets one; a slot given back is free again.
        let _other = slots.try_take("198.51.100.7".parse().unwrap()).unwrap();
        drop(held);
        assert!(slots.try_take(a).is_ok());
    }

    #[test]
    fn the_total_is_capped() {
        let slots = EnrolSlots::default();
        let held: Vec<_> = (0..MAX_ENROLMENTS)
            .map(|i| slots.try_take(IpAddr::from([10, 0, 0, i as u8])).unwrap())
            .collect();
        assert!(slots.try_take("10.1.1.1".parse().unwrap()).is_err());
        drop(held);
        assert!(slots.taken.lock().unwrap().is_empty());
    }
}
