//! The data dir holds the relay's secrets: CA keys, the store with password
//! hashes and sign-ins, the audit log and its recordings. Only the relay's
//! user may read it, and nobody else may be able to swap it.
//!
//! The rule, like sshd's `StrictModes`:
//! - the data dir and every directory above it belong to root or to the
//!   user running the relay, and none of them is writable by group or
//!   others (a sticky directory such as `/tmp` is fine: others cannot move
//!   or replace what is not theirs there). Anyone who can write a parent
//!   can rename the data dir away and put one of their own in its place
//!   (their CA key, their admin socket that reads `user add`'s password);
//!   anyone who could write the data dir may have planted files in it. The
//!   relay refuses such a data dir rather than repair it: what is in it can
//!   no longer be trusted, and only the admin can tell.
//! - what is merely readable by others is repaired: the data dir and its
//!   directories become 0700 and every file 0600, however they were made
//!   (an earlier run with umask 022, a copied backup). And the process
//!   umask becomes 077, so files made later are private from the start:
//!   sled creates new files (snapshots, blobs) while it runs, with the
//!   umask, and a umask leaves no window between creating and chmod-ing.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Permission bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// Permission bits of a private directory and of a private file.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// The umask the relay runs with: nothing for group or others.
const PRIVATE_UMASK: u32 = 0o077;

/// Why the data dir is not used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "the data dir {dir} is writable by other users (mode {mode:04o}), who may have put files in it: \
         check what is in it, then run `chmod 700 {dir}`"
    )]
    DirWritable { dir: PathBuf, mode: u32 },
    #[error(
        "the data dir {dir} is unsafe: {parent} is writable by other users (mode {mode:04o}), who could \
         move the data dir away and put their own in its place: run `chmod go-w {parent}` (or `chmod +t`), \
         or pick a --data-dir elsewhere"
    )]
    ParentWritable {
        dir: PathBuf,
        parent: PathBuf,
        mode: u32,
    },
    #[error(
        "the data dir {dir} is unsafe: {path} belongs to another user (uid {owner}): run sallyport-relay \
         as that user, or pick a --data-dir that only root and you own"
    )]
    Owner {
        dir: PathBuf,
        path: PathBuf,
        owner: u32,
    },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What [`prepare`] changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Directories and files whose mode was changed.
    pub entries: u64,
    /// Of those, how many others could read before.
    pub were_readable: u64,
}

/// Makes `dir` the relay's private data dir: checks the rule above (an
/// error that says what to do when it fails), creates it (0700) if
/// missing, sets the process umask to 077 and makes every directory in it
/// 0700 and every file 0600. Symbolic links in it are left alone (not
/// followed). `serve` and every admin command call this first.
pub fn prepare(dir: &Path) -> Result<Repaired, DataDirError> {
    check_parents(dir)?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(PRIVATE_UMASK));
    if !dir.exists() {
        sallyport_common::fs::create_private_dir(dir).map_err(io_err("create", dir))?;
    }
    let meta = std::fs::metadata(dir).map_err(io_err("read", dir))?;
    check_owner(dir, dir, &meta)?;
    if meta.mode() & GROUP_OTHER_WRITE != 0 {
        return Err(DataDirError::DirWritable {
            dir: dir.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    // A data dir that is a symbolic link: the directory it points to.
    let real = std::fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
    let mut repaired = Repaired::default();
    make_private(&real, &mut repaired)?;
    Ok(repaired)
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Belongs to root or to us.
fn check_owner(dir: &Path, path: &Path, meta: &std::fs::Metadata) -> Result<(), DataDirError> {
    let owner = meta.uid();
    if owner == 0 || owner == euid() {
        return Ok(());
    }
    Err(DataDirError::Owner {
        dir: dir.to_owned(),
        path: path.to_owned(),
        owner,
    })
}

/// Every existing directory above `dir`: owned by root or us, and not
/// writable by group or others unless sticky.
fn check_parents(dir: &Path) -> Result<(), DataDirError> {
    let absolute = std::path::absolute(dir).map_err(io_err("resolve", dir))?;
    // Where the data dir is or will be: its nearest existing ancestor,
    // with symbolic links resolved, and everything above that.
    let mut existing = absolute.parent().map(Path::to_owned);
    while let Some(p) = &existing {
        if p.exists() {
            break;
        }
        existing = p.parent().map(Path::to_owned);
    }
    let Some(existing) = existing else {
        return Ok(());
    };
    let mut parents = vec![std::fs::canonicalize(&existing).map_err(io_err("resolve", &existing))?];
    // The data dir may be a symbolic link: where it points counts too.
    if let Some(target) = std::fs::canonicalize(dir)
        .ok()
        .and_then(|t| t.parent().map(Path::to_owned))
    {
        parents.push(target);
    }
    // And the path as written: a symbolic link on the way (`/srv/relay ->
    // /data/relay`) can be re-pointed by whoever may write the directory
    // that holds it, whatever its target's parents allow.
    parents.extend(
        absolute
            .ancestors()
            .skip(1)
            .find(|p| p.exists())
            .map(Path::to_owned),
    );
    for real in parents {
        for parent in real.ancestors() {
            let meta = std::fs::metadata(parent).map_err(io_err("read", parent))?;
            check_owner(dir, parent, &meta)?;
            let sticky = meta.mode() & 0o1000 != 0;
            if meta.mode() & GROUP_OTHER_WRITE != 0 && !sticky {
                return Err(DataDirError::ParentWritable {
                    dir: dir.to_owned(),
                    parent: parent.to_owned(),
                    mode: meta.mode() & 0o7777,
                });
            }
        }
    }
    Ok(())
}

/// 0700 for `dir` and the directories in it, 0600 for the files.
fn make_private(dir: &Path, repaired: &mut Repaired) -> Result<(), DataDirError> {
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        // Not followed: a link's target is not the relay's to change.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since it was listed: another process's temporary file,
            // renamed into place or removed. Nothing to make private.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != dir => continue,
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let want = if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != dir => continue,
                Err(e) => return Err(io_err("list", &path)(e)),
            };
            for entry in entries {
                todo.push(entry.map_err(io_err("list", &path))?.path());
            }
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        if mode != want {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("make private", &path)(e)),
            }
            repaired.entries += 1;
            if mode & 0o044 != 0 {
                repaired.were_readable += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn an_existing_readable_dir_is_made_private_and_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "not the relay's").unwrap();
        chmod(&outside, 0o644);
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("db/blobs")).unwrap();
        for f in ["ca.key", "db/conf", "db/blobs/1"] {
            std::fs::write(dir.join(f), "x").unwrap();
            chmod(&dir.join(f), 0o644);
        }
        for d in ["", "db", "db/blobs"] {
            chmod(&dir.join(d), 0o755);
        }
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let repaired = prepare(&dir).unwrap();
        assert_eq!(repaired.entries, 6);
        assert_eq!(repaired.were_readable, 6);
        for d in ["", "db", "db/blobs"] {
            assert_eq!(mode(&dir.join(d)), 0o700, "{d}");
        }
        for f in ["ca.key", "db/conf", "db/blobs/1"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&outside), 0o644);
        // Files made from now on are private from the start.
        std::fs::write(dir.join("new"), "x").unwrap();
        assert_eq!(mode(&dir.join("new")), 0o600);
        assert_eq!(prepare(&dir).unwrap(), Repaired::default());
    }

    #[test]
    fn a_data_dir_that_is_a_link_is_made_private_where_it_points() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("ca.key"), "x").unwrap();
        chmod(&real, 0o755);
        chmod(&real.join("ca.key"), 0o644);
        let link = tmp.path().join("data");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        prepare(&link).unwrap();
        assert_eq!(mode(&real), 0o700);
        assert_eq!(mode(&real.join("ca.key")), 0o600);
    }

    #[test]
    fn a_dir_others_can_write_or_swap_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o777);
        assert!(matches!(
            prepare(&dir),
            Err(DataDirError::DirWritable { mode: 0o777, .. })
        ));
        chmod(&dir, 0o700);
        chmod(tmp.path(), 0o777);
        let err = prepare(&dir.join("nested")).unwrap_err();
        assert!(
            matches!(&err, DataDirError::ParentWritable { parent, .. } if parent == &std::fs::canonicalize(tmp.path()).unwrap()),
            "{err}"
        );
        // Sticky, like /tmp: others cannot move what is not theirs.
        chmod(tmp.path(), 0o1777);
        prepare(&dir).unwrap();
        chmod(tmp.path(), 0o700);
    }

    #[test]
    fn a_link_on_the_way_in_a_dir_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let safe = tmp.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        // open/relay -> safe: whoever may write `open` can re-point it.
        std::os::unix::fs::symlink(&safe, open.join("relay")).unwrap();
        let err = prepare(&open.join("relay").join("data")).unwrap_err();
        assert!(
            matches!(&err, DataDirError::ParentWritable { parent, .. } if parent.ends_with("open")),
            "{err}"
        );
        chmod(&open, 0o755);
        prepare(&open.join("relay").join("data")).unwrap();
    }
}
