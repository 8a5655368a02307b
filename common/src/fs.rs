//! Files only their owner may read, written so that no reader and no other
//! writer ever sees half of one.
//!
//! Every write goes to a temporary file with a name of its own (random,
//! created exclusively, in the target's directory so the rename stays on one
//! file system), with its final mode from creation; it is synced, renamed
//! over the target, and the directory is synced so the rename survives a
//! crash. Two processes writing the same target at once therefore each
//! rename a complete file of their own: the last rename wins, and neither
//! can move the other's half-written bytes into place (a shared `.tmp` name
//! allowed exactly that). [`create_private_new`] is the no-clobber variant,
//! for files that must be created once and then only read (keys).

use std::fs::Permissions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of a private file: read and write for its owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a private directory: its owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with mode 0700 (directories that
/// exist keep their mode).
///
/// # Errors
/// The I/O error of the first directory that cannot be created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Writes a file only its owner may read (mode 0600), replacing it atomically.
///
/// # Errors
/// The I/O error of creating, writing, syncing or renaming the temporary
/// file (which is then removed), or of syncing the directory.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic(path, contents, PRIVATE_FILE_MODE)
}

/// Writes `contents` to `path` with `mode` (less the umask), replacing it
/// atomically: readers see the old file or the new one, never a mix.
///
/// # Errors
/// As [`write_private`].
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = staged(path, contents, mode)?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(path)
}

/// Creates a file only its owner may read (mode 0600) with `contents`,
/// unless `path` exists: then it is left as it is. Returns whether this
/// call created it. Of several processes creating the same file at once,
/// exactly one does; the others get `false` and read the winner's file,
/// which is complete by the time it has its name.
///
/// # Errors
/// As [`write_private`]; an existing `path` is not an error.
pub fn create_private_new(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let tmp = staged(path, contents, PRIVATE_FILE_MODE)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        // The temporary file is removed as `e.file` drops.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e.error),
    }
    sync_dir(path)?;
    Ok(true)
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `contents` in a synced temporary file beside `path`, named
/// `.NAME.RANDOM.tmp`, created exclusively with `mode`.
fn staged(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    if let Some(name) = path.file_name() {
        prefix.push(name);
    }
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(parent(path))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Syncs the directory holding `path`, so a rename into it is durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(parent(path))?.sync_all()
}

/// Reads at most `max` bytes from `reader` to its end: for input a peer or an
/// admin controls (a config file, a certificate, a token on stdin), read
/// whole only when it is small enough.
///
/// # Errors
/// The reader's I/O error, or [`std::io::ErrorKind::FileTooLarge`] when it
/// holds more than `max` bytes.
pub fn read_bounded(reader: impl std::io::Read, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("over {max} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounded_reads_up_to_its_limit_and_refuses_more() {
        assert_eq!(read_bounded(&b"12345"[..], 5).unwrap(), b"12345");
        let err = read_bounded(&b"123456"[..], 5).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    }
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::{Arc, Barrier};

    /// Names in `dir` other than `keep`.
    fn strays(dir: &Path, keep: &str) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != keep)
            .collect()
    }

    /// A content that can be told apart and checked whole: writer `i`'s
    /// byte repeated, long enough that a torn write would show.
    fn content(i: usize) -> Vec<u8> {
        vec![b'a' + (i % 26) as u8; 256 * 1024 + i]
    }

    fn is_one_whole_content(bytes: &[u8], writers: usize) -> bool {
        (0..writers).any(|i| bytes == content(i).as_slice())
    }

    #[test]
    fn many_writers_of_one_file_leave_one_whole_content_and_no_temporary_files() {
        const WRITERS: usize = 16;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ssh_ca");
        let barrier = Arc::new(Barrier::new(WRITERS + 1));
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (target, barrier) = (target.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..4 {
                        write_private(&target, &content(i)).unwrap();
                    }
                })
            })
            .collect();
        barrier.wait();
        // Read while they write: every read sees one writer's whole content.
        while writers.iter().any(|w| !w.is_finished()) {
            if let Ok(bytes) = std::fs::read(&target) {
                assert!(is_one_whole_content(&bytes, WRITERS), "a torn file");
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        let bytes = std::fs::read(&target).unwrap();
        assert!(is_one_whole_content(&bytes, WRITERS));
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert_eq!(strays(dir.path(), "ssh_ca"), Vec::<String>::new());
    }

    #[test]
    fn of_many_creators_exactly_one_creates_and_all_read_its_content() {
        const CREATORS: usize = 16;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ssh_ca");
        let barrier = Arc::new(Barrier::new(CREATORS));
        let creators: Vec<_> = (0..CREATORS)
            .map(|i| {
                let (target, barrier) = (target.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let created = create_private_new(&target, &content(i)).unwrap();
                    (created, std::fs::read(&target).unwrap())
                })
            })
            .collect();
        let results: Vec<_> = creators.into_iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|(created, _)| *created).count(), 1);
        let on_disk = std::fs::read(&target).unwrap();
        assert!(is_one_whole_content(&on_disk, CREATORS));
        assert!(results.iter().all(|(_, read)| *read == on_disk));
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert_eq!(strays(dir.path(), "ssh_ca"), Vec::<String>::new());
    }

    #[test]
    fn an_existing_file_is_not_replaced_by_create_private_new() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("key");
        std::fs::write(&target, b"first").unwrap();
        assert!(!create_private_new(&target, b"second").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        assert_eq!(strays(dir.path(), "key"), Vec::<String>::new());
    }

    #[test]
    fn write_atomic_keeps_the_mode_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("svc-cert.pub");
        write_atomic(&target, b"cert\n", 0o644).unwrap();
        // Less the umask, which may take bits away but never adds any.
        let mode = std::fs::metadata(&target).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn private_dirs_are_0700_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).unwrap();
        for d in [dir.path().join("a"), nested] {
            assert_eq!(std::fs::metadata(d).unwrap().mode() & 0o777, 0o700);
        }
    }
}
