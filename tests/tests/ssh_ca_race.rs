//! Relay processes that create the SSH user CA at once on one fresh data
//! dir agree on one key: every one of them prints the same public key, and
//! the private key on disk is that key, complete and readable by its owner
//! only. (With a shared temporary name, one process could rename another's
//! half-written key into place, or two could each think they had won.)

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::{Command, Stdio};

use russh::keys::ssh_key::PrivateKey;
use sallyport_tests::bin;

/// Processes racing on each data dir.
const RACERS: usize = 4;
/// Fresh data dirs raced on, one after the other.
const ROUNDS: usize = 5;

#[test]
fn relays_creating_the_ssh_ca_at_once_all_use_one_complete_private_key() {
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                Command::new(bin("sallyport-relay"))
                    .args(["ssh-ca", "show", "--data-dir"])
                    .arg(&data_dir)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let printed: Vec<String> = racers
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "round {round}: ssh-ca show failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).unwrap().trim().to_owned()
            })
            .collect();
        assert!(printed[0].starts_with("ssh-ed25519 "), "{}", printed[0]);
        assert!(
            printed.iter().all(|p| *p == printed[0]),
            "round {round}: the processes print different CA keys: {printed:#?}"
        );

        let key_path = data_dir.join("ssh_ca");
        let key = PrivateKey::from_openssh(std::fs::read_to_string(&key_path).unwrap())
            .expect("the CA key on disk is a complete OpenSSH private key");
        assert_eq!(
            key.public_key().to_openssh().unwrap(),
            printed[0],
            "round {round}: the key on disk is not the one the processes print"
        );
        assert_eq!(std::fs::metadata(&key_path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(data_dir.join("ssh_ca.pub"))
                .unwrap()
                .trim(),
            printed[0]
        );
        // Nothing half-written is left beside it.
        let mut names: Vec<String> = std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ssh_ca", "ssh_ca.pub"], "round {round}");

        // A later start loads that key rather than making another.
        let again = Command::new(bin("sallyport-relay"))
            .args(["ssh-ca", "show", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(again.status.success());
        assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), printed[0]);
    }
}
