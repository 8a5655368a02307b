//! Enrolment: a connector without a certificate trades a one-time token
//! secret and a certificate request for a client certificate.

use sallyport_proto::io::{read_frame, write_frame};
use sallyport_proto::tunnel::{EnrolReply, EnrolRequest};

use super::server::TunnelCtx;
use super::HANDSHAKE_TIMEOUT;
use crate::util::sha256_hex;

/// Serves one enrolment on `conn`, then closes it.
pub(super) async fn serve(ctx: &TunnelCtx, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let req: EnrolRequest = read_frame(&mut recv).await.map_err(|e| e.to_string())?;
        let reply = match enrol(ctx, &req) {
            Ok(reply) => reply,
            Err(reason) => EnrolReply::Refused { reason },
        };
        write_frame(&mut send, &reply)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        // Let the connector read the answer; it closes the connection.
        let _ = send.stopped().await;
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
    conn.close(0u32.into(), b"enrolment done");
}

fn enrol(ctx: &TunnelCtx, req: &EnrolRequest) -> Result<EnrolReply, String> {
    let connector = match ctx.store.redeem_token(&req.secret) {
        Ok(Ok(name)) => name,
        Ok(Err(refusal)) => return Err(refusal.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "enrolment: store failed");
            return Err("the relay could not record the enrolment; try again".into());
        }
    };
    let cert = ctx
        .ca
        .sign_connector(&req.csr_pem, &connector)
        .map_err(|e| e.to_string())?;
    ctx.store
        .enrol_connector(&connector, &sha256_hex(cert.der()))
        .map_err(|e| {
            tracing::error!(error = %e, "enrolment: store failed");
            "the relay could not record the enrolment; try again".to_string()
        })?;
    crate::metrics::Metrics::add(&ctx.metrics.enrolments, 1);
    Ok(EnrolReply::Enrolled {
        connector,
        cert_pem: cert.pem(),
        ca_pem: ctx.ca.cert_pem().to_owned(),
    })
}
