//! QUIC and the TCP fallback side by side on the same lossy link: a
//! network namespace whose link drops 5 % and then 10 % of the packets each
//! way at random (nftables), one connector on each transport serving the
//! same sshd. Both must carry a login and a transfer intact; the times and
//! rates are printed for comparison, not asserted (the machine is shared).

use std::time::Instant;

use sallyport_tests::netns::Netns;
use sallyport_tests::*;

/// Bytes uploaded and read back per transport and loss rate.
const TRANSFER: usize = 4 << 20;

#[test]
fn quic_and_tcp_both_carry_sessions_intact_at_5_and_10_percent_loss() {
    let netns = Netns::create();
    let host_ip = std::net::IpAddr::from(netns.host_ip);
    let env = netns.env();
    let target = format!("{host_ip}:{}", env.sshd.port);
    let mut connectors = Vec::new();
    for transport in ["quic", "tcp"] {
        let name = format!("c-{transport}");
        let service = format!("web-{transport}");
        let token = env.relay.token(&name, "10m", &[&service]);
        connectors.push(netns.start_connector(
            env.path(),
            &name,
            &token,
            &[format!("{service}={target}")],
            &["--transport", transport],
        ));
        env.relay.wait_online(&name, 2);
        assert_eq!(env.relay.connector_row(&name)[3], transport);
    }

    let data: Vec<u8> = (0..TRANSFER).map(|i| (i * 7 % 251) as u8).collect();
    let want = sallyport_common::hash::sha256_hex(&data);
    let mut table = vec![
        "| loss each way | transport | login (s) | upload (MB/s) | download (MB/s) |".to_owned(),
    ];
    for percent in [5, 10] {
        netns.drop_at_random(percent);
        for transport in ["quic", "tcp"] {
            let service = format!("web-{transport}");
            let file = env.path().join(format!("upload-{transport}-{percent}"));
            let start = Instant::now();
            let out = env.ssh(&service, "true", b"");
            assert!(
                out.status.success(),
                "{transport} at {percent} %: {}",
                stderr(&out)
            );
            let login = start.elapsed().as_secs_f64();

            let start = Instant::now();
            let out = env.ssh(&service, &format!("cat > {}", file.display()), &data);
            assert!(
                out.status.success(),
                "{transport} at {percent} %: {}",
                stderr(&out)
            );
            let up = TRANSFER as f64 / start.elapsed().as_secs_f64() / 1e6;
            let stored = std::fs::read(&file).expect("the uploaded file");
            assert_eq!(
                sallyport_common::hash::sha256_hex(&stored),
                want,
                "{transport} at {percent} %: upload"
            );

            let start = Instant::now();
            let out = env.ssh(&service, &format!("cat {}", file.display()), b"");
            assert!(
                out.status.success(),
                "{transport} at {percent} %: {}",
                stderr(&out)
            );
            let down = TRANSFER as f64 / start.elapsed().as_secs_f64() / 1e6;
            assert_eq!(
                sallyport_common::hash::sha256_hex(&out.stdout),
                want,
                "{transport} at {percent} %: download"
            );
            table.push(format!(
                "| {percent} % | {transport} | {login:.2} | {up:.2} | {down:.2} |"
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
}
