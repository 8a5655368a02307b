//! `sallyport ssh-config --write`: the blocks merged into `~/.ssh/config`
//! between marker lines of their own, one pair per relay:
//!
//! ```text
//! # BEGIN sallyport https://relay.example.com
//! …
//! # END sallyport https://relay.example.com
//! ```
//!
//! A second run replaces what is between its markers and leaves every
//! other byte of the file as it was. A file without them gets the block at
//! its top: ssh uses the first value it finds for most options, so a
//! `Host *` further up (say, `StrictHostKeyChecking no`) would otherwise
//! override the block's. The file is not written through a symbolic link
//! (whose target may be shared or managed elsewhere) nor when its markers
//! are broken (a `BEGIN` without its `END`): the error says which, and the
//! file is left alone.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::ClientError;

/// Largest ssh_config file merged into: a user's file is a few kilobytes.
pub const MAX_CONFIG_LEN: u64 = 4 * 1024 * 1024;

/// The marker line that opens `relay`'s block.
pub fn begin_marker(relay: &str) -> String {
    format!("# BEGIN sallyport {relay}")
}

/// The marker line that closes `relay`'s block.
pub fn end_marker(relay: &str) -> String {
    format!("# END sallyport {relay}")
}

/// `relay`'s block with its markers around `blocks` (an empty `blocks`
/// still gets its markers, so a later run finds the place).
pub fn wrap(relay: &str, blocks: &str) -> String {
    format!(
        "{}\n# Written by `sallyport ssh-config --write`; replaced on the next run.\n{blocks}{}\n",
        begin_marker(relay),
        end_marker(relay)
    )
}

/// `existing` (a whole ssh_config file) with `relay`'s marked block
/// replaced by `block` (already wrapped), or `block` put at the top when
/// there is none. Every byte outside the old block is kept.
///
/// Errors: markers that do not pair up (a second `BEGIN`, an `END` with no
/// `BEGIN` before it, a `BEGIN` with no `END`).
pub fn merge(existing: &str, relay: &str, block: &str) -> Result<String, String> {
    let begin = begin_marker(relay);
    let end = end_marker(relay);
    // Byte offsets of each line's start and end (after its newline).
    let mut open: Option<usize> = None;
    let mut span: Option<(usize, usize)> = None;
    let mut at = 0;
    for (n, line) in existing.split_inclusive('\n').enumerate() {
        let start = at;
        at += line.len();
        let text = line.trim_end_matches(['\n', '\r']).trim_end();
        if text == begin {
            if open.is_some() || span.is_some() {
                return Err(format!(
                    "line {}: a second {begin:?}; remove one of the blocks",
                    n + 1
                ));
            }
            open = Some(start);
        } else if text == end {
            match open.take() {
                Some(s) => span = Some((s, at)),
                None => {
                    return Err(format!(
                        "line {}: {end:?} with no {begin:?} before it",
                        n + 1
                    ))
                }
            }
        }
    }
    if open.is_some() {
        return Err(format!("{begin:?} with no {end:?} after it"));
    }
    Ok(match span {
        Some((s, e)) => format!("{}{block}{}", &existing[..s], &existing[e..]),
        None => format!("{block}{existing}"),
    })
}

/// `~/.ssh/config`, from `$HOME`.
pub fn default_path() -> Result<PathBuf, ClientError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| ClientError::Usage("set HOME: --write writes ~/.ssh/config".into()))?;
    Ok(PathBuf::from(home).join(".ssh/config"))
}

/// Merges `block` (wrapped) into the file at `path` as [`merge`] does,
/// atomically, keeping the file's mode; a missing file (and a missing
/// `~/.ssh`) is created, mode 0600 (0700).
///
/// Errors: `path` is a symbolic link or not a regular file, cannot be
/// read, is not UTF-8, is over [`MAX_CONFIG_LEN`], its markers do not pair
/// up, or it cannot be written.
pub fn write(path: &Path, relay: &str, block: &str) -> Result<(), ClientError> {
    let refuse = |why: String| {
        ClientError::Usage(format!(
            "{}: {why}; not written (print the block with `sallyport ssh-config` and add it yourself)",
            path.display()
        ))
    };
    let io = |source| ClientError::File {
        path: path.to_owned(),
        source,
    };
    let (existing, mode) = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse(
                "is a symbolic link, and sallyport does not write through one".into(),
            ))
        }
        Ok(meta) if !meta.is_file() => return Err(refuse("is not a regular file".into())),
        Ok(meta) if meta.len() > MAX_CONFIG_LEN => {
            return Err(refuse(format!(
                "is over {MAX_CONFIG_LEN} bytes, too large for an ssh_config file"
            )))
        }
        Ok(meta) => {
            let bytes = std::fs::read(path).map_err(io)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| refuse("is not UTF-8 text, so its markers cannot be found".into()))?;
            (text, meta.permissions().mode() & 0o7777)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                sallyport_common::fs::create_private_dir(dir).map_err(|source| {
                    ClientError::File {
                        path: dir.to_owned(),
                        source,
                    }
                })?;
            }
            (String::new(), sallyport_common::fs::PRIVATE_FILE_MODE)
        }
        Err(e) => return Err(io(e)),
    };
    let merged =
        merge(&existing, relay, block).map_err(|why| refuse(format!("its markers: {why}")))?;
    sallyport_common::fs::write_atomic(path, merged.as_bytes(), mode).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "https://relay.example";

    #[test]
    fn the_block_goes_on_top_then_replaces_itself_keeping_every_other_byte() {
        let user = "Host old\r\n  User me\n\n# mine\nHost *\n\tServerAliveInterval 30";
        let first = merge(user, R, &wrap(R, "Host a\n")).unwrap();
        assert!(first.starts_with("# BEGIN sallyport https://relay.example\n"));
        assert!(first.ends_with(user), "{first:?}");
        let second = merge(&first, R, &wrap(R, "Host b\n")).unwrap();
        assert_eq!(second, format!("{}{user}", wrap(R, "Host b\n")));
        // Another relay's block is someone else's.
        let other = merge(&second, "https://other", &wrap("https://other", "Host c\n")).unwrap();
        let again = merge(&other, R, &wrap(R, "Host d\n")).unwrap();
        assert_eq!(again.matches("# BEGIN sallyport").count(), 2);
        assert!(again.contains("Host c\n") && again.contains("Host d\n"));
        assert!(!again.contains("Host b\n"));
        // A block in the middle stays in the middle.
        let middle = format!("Host x\n{}Host y\n", wrap(R, "Host a\n"));
        assert_eq!(
            merge(&middle, R, &wrap(R, "Host z\n")).unwrap(),
            format!("Host x\n{}Host y\n", wrap(R, "Host z\n"))
        );
    }

    #[test]
    fn broken_markers_are_refused() {
        let b = begin_marker(R);
        let e = end_marker(R);
        assert!(merge(&format!("{b}\nHost a\n"), R, "").is_err());
        assert!(merge(&format!("{e}\n{b}\n{e}\n"), R, "").is_err());
        assert!(merge(&format!("{b}\n{e}\n{b}\n{e}\n"), R, "").is_err());
    }

    #[test]
    fn writes_a_new_file_private_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ssh/config");
        write(&path, R, &wrap(R, "Host a\n")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = write(&link, R, &wrap(R, "Host b\n")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let broken = dir.path().join("broken");
        std::fs::write(&broken, format!("{}\n", begin_marker(R))).unwrap();
        let err = write(&broken, R, &wrap(R, "Host b\n")).unwrap_err();
        assert!(err.to_string().contains("markers"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&broken).unwrap(),
            format!("{}\n", begin_marker(R)),
            "left alone"
        );
    }
}
