//! Document files in OSCAR's flat `DOCUMENT_DIR`: checking client-supplied names, storing an
//! upload durably without holding it in memory, and opening a stored file for download.
//!
//! OSCAR names a stored document `yyyyMMddHHmmss` followed by the file name the user's computer
//! gave it, in one directory shared by every instance on the box. The caller writes the
//! `document` row only after [`store`] returns, and [`store`] returns only once both the file's
//! contents and its name are on disk, so a row never points at a file a crash could lose.
//!
//! File names are patient data ("lab result for Jane Doe.pdf"), so no error or log line from this
//! module contains one. Temporary files carry random names, which are not patient data.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use rand::distr::{Alphanumeric, SampleString as _};
use sha2::{Digest as _, Sha256};

/// The longest original file name we accept, in bytes of UTF-8. `docfilename` is varchar(255)
/// and we prepend 14 digits; the rest is headroom for a suffix when the name is already taken.
pub const MAX_ORIGINAL_NAME_BYTES: usize = 200;

/// The longest stored name we open or create: the `docfilename` column and the file system's
/// name limit (`NAME_MAX`) are both 255.
pub const MAX_STORED_NAME_BYTES: usize = 255;

/// Temporary files start with a dot so that they are hidden, and cannot be mistaken for a
/// document, which [`check_original_name`] never lets start with a dot.
const TEMP_PREFIX: &str = ".upload-";
const TEMP_SUFFIX: &str = ".part";

/// Documents hold clinical information: the group (the box's backup user) may read them, nobody
/// else may, and nobody executes them.
const FILE_MODE: u32 = 0o640;

/// How much of the body we gather before handing it to a blocking thread: large enough that
/// the thread hand-offs cost little, small enough that memory stays bounded per upload.
const BATCH_BYTES: usize = 256 * 1024;

/// Why a file name was refused. No message contains the name itself: it is patient data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the file name is empty; give the name the document had on the uploading computer, e.g. `lab result.pdf`")]
    Empty,
    #[error(
        "the file name is `.` or `..`, which name directories; give the document's own file name"
    )]
    DotOrDotDot,
    #[error("the file name starts with `.`, which would make it a hidden file; give a name that starts with another character")]
    Hidden,
    #[error("the file name contains `/` or `\\`, which separate folders; give the file name alone, without any folder")]
    Separator,
    #[error("the file name contains the control character U+{code:04X}; only printable characters are allowed")]
    Control { code: u32 },
    #[error("the file name contains the invisible character U+{code:04X}, which can disguise a file's type; remove it")]
    Invisible { code: u32 },
    #[error("the file name is {len} bytes long; at most {max} bytes (in UTF-8) are allowed")]
    TooLong { len: usize, max: usize },
}

/// Accepts a client-supplied original file name only if it names a plain file in the document
/// directory and nothing else: no path separators, no `.`/`..`, no hidden name, no control or
/// text-direction characters, and at most [`MAX_ORIGINAL_NAME_BYTES`] bytes.
///
/// A bad name is refused, never rewritten: a silently changed name is one the user cannot find.
pub fn check_original_name(name: &str) -> Result<&str, NameError> {
    check_name(name, MAX_ORIGINAL_NAME_BYTES)
}

/// The same rules as [`check_original_name`] with the longer limit of a stored name (digits
/// prefixed, perhaps a suffix added); documents imported from OSCAR may be named otherwise, so
/// the digits are not required.
pub fn check_stored_name(name: &str) -> Result<&str, NameError> {
    check_name(name, MAX_STORED_NAME_BYTES)
}

fn check_name(name: &str, max: usize) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotOrDotDot);
    }
    // Checked before the rest so that a traversal attempt is reported as what it is.
    for c in name.chars() {
        if c == '/' || c == '\\' {
            // `\` is harmless on Linux, but the name travels to Windows clients and to OSCAR's
            // Java code, where it separates folders.
            return Err(NameError::Separator);
        }
        if c.is_control() {
            // NUL truncates the name in C; newlines split log lines and HTTP headers.
            return Err(NameError::Control { code: u32::from(c) });
        }
        if is_disguising(c) {
            return Err(NameError::Invisible { code: u32::from(c) });
        }
    }
    if name.starts_with('.') {
        return Err(NameError::Hidden);
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            len: name.len(),
            max,
        });
    }
    Ok(name)
}

/// Characters that are invisible yet change how a name reads: text-direction overrides turn
/// `report\u{202E}fdp.exe` into what looks like `reportexe.pdf`, and line separators split a
/// name across lines. Zero-width joiners are not here: Persian, Indic scripts and emoji need them.
fn is_disguising(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{FEFF}'
    )
}

/// OSCAR's stored name: `yyyyMMddHHmmss` in `now`'s zone, then the original name.
pub fn stored_name(now: &jiff::Zoned, original: &str) -> String {
    // Formatted from the fields rather than with strftime, whose Display can fail.
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{original}",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A document file that is durably in the document directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub file_name: String,
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// Why a document could not be stored or opened. No message contains a file name: file names
/// are patient data. The cause is part of the message because this crate logs errors with
/// their `Display` alone.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the document is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the uploaded document failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a document file with this name already exists")]
    Exists,
    #[error("the document file is not in the document directory")]
    NotFound,
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("cannot {what} in the document directory: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl StoreError {
    /// Whether the client caused this (an HTTP 4xx: 413 for `TooLarge`, 400 for `Body`) rather
    /// than the server (500). `Exists` and `NotFound` are for the caller to handle (retry with
    /// another name; 404 or a missing-file report), and `Name` means the caller passed a name
    /// it should have checked, or the database holds a bad one: both are the server's fault.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::Body(_))
    }
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io { what, source }
}

/// Removes the temporary file when the upload does not complete, however it ends: an error
/// return, or the future being dropped midway (the client went away, the server shut down).
#[derive(Debug)]
struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("the path is only taken when the guard is disarmed, which consumes it")
    }

    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        // Synchronous because Drop cannot await; one unlink is far below the async budget.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            // A blocking step already removed it, or clean_stale_uploads did.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                temp = %path.display(),
                error = %e,
                "cannot remove a temporary upload file; it is removed at the next start"
            ),
        }
    }
}

/// The temporary file and the running hash, moved into each blocking write and back.
struct Sink {
    file: std::fs::File,
    hasher: Sha256,
}

impl Sink {
    fn write(mut self, batch: Vec<Bytes>) -> Result<Self, StoreError> {
        for chunk in &batch {
            // Hashed here rather than on the async thread: SHA-256 of a large chunk takes
            // longer than async code may block.
            self.hasher.update(chunk);
            self.file
                .write_all(chunk)
                .map_err(io_error("write an upload to its temporary file"))?;
        }
        Ok(self)
    }
}

/// The one blocking write that may be under way while the next batch is read from the body.
enum Slot {
    Idle(Sink),
    Busy(tokio::task::JoinHandle<Result<Sink, StoreError>>),
}

impl Slot {
    async fn ready(self) -> Result<Sink, StoreError> {
        match self {
            Slot::Idle(sink) => Ok(sink),
            Slot::Busy(handle) => joined(handle, "write an upload to its temporary file").await,
        }
    }
}

async fn joined<T>(
    handle: tokio::task::JoinHandle<Result<T, StoreError>>,
    what: &'static str,
) -> Result<T, StoreError> {
    // A blocking task fails to join only if it panicked or the runtime is shutting down.
    handle
        .await
        .map_err(|e| io_error(what)(io::Error::other(e)))?
}

/// Streams `body` into the document directory `dir` as `file_name`, durably, and returns its size
/// and SHA-256.
///
/// The body goes to a hidden temporary file as it arrives (memory stays bounded whatever the
/// size), which is fsynced, then linked to `file_name` — never replacing an existing file, which
/// gives [`StoreError::Exists`] — and the directory is fsynced so that the name is durable too.
/// On any error, and if the future is dropped, the temporary file is removed. A future dropped
/// after the body has been read in full may still leave the document stored, without a row:
/// the final steps run on a blocking thread that finishes on its own.
pub async fn store<S, E>(
    dir: &Path,
    file_name: &str,
    mut body: S,
    max_bytes: u64,
) -> Result<Stored, StoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    check_stored_name(file_name)?;
    let (file, guard) = create_temp(dir).await?;
    let mut slot = Slot::Idle(Sink {
        file: file.into_std().await,
        hasher: Sha256::new(),
    });
    let mut size: u64 = 0;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len: usize = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StoreError::Body(Box::new(e)))?;
        size = size.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if size > max_bytes {
            return Err(StoreError::TooLarge { limit: max_bytes });
        }
        batch_len += chunk.len();
        batch.push(chunk);
        if batch_len >= BATCH_BYTES {
            // Waits for the previous batch, so at most two batches are in memory.
            let sink = slot.ready().await?;
            let full = std::mem::take(&mut batch);
            batch_len = 0;
            slot = Slot::Busy(tokio::task::spawn_blocking(move || sink.write(full)));
        }
    }

    let sink = slot.ready().await?;
    let temp = guard.path().to_owned();
    let dir_owned = dir.to_owned();
    let target = dir.join(file_name);
    let finish =
        tokio::task::spawn_blocking(move || finish(sink, batch, &temp, &target, &dir_owned));
    let digest = joined(finish, "finish storing an upload").await?;
    guard.disarm();
    Ok(Stored {
        file_name: file_name.to_owned(),
        size,
        sha256: lowercase_hex(&digest),
    })
}

/// The blocking end of [`store`]: last batch, fsync, no-replace rename, directory fsync.
fn finish(
    sink: Sink,
    batch: Vec<Bytes>,
    temp: &Path,
    target: &Path,
    dir: &Path,
) -> Result<Vec<u8>, StoreError> {
    let Sink { file, hasher } = sink.write(batch)?;
    file.sync_all()
        .map_err(io_error("fsync an upload's temporary file"))?;
    drop(file);
    // A hard link fails if the target exists, where rename would replace it; renameat2's
    // RENAME_NOREPLACE would do the same in one step but needs unsafe code or another crate.
    match std::fs::hard_link(temp, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(StoreError::Exists),
        Err(e) => return Err(io_error("link an upload to its document name")(e)),
    }
    if let Err(e) = std::fs::remove_file(temp) {
        // The document is stored; a leftover temporary file only wastes space until the next
        // start, so this is not worth failing the upload for.
        tracing::warn!(
            temp = %temp.display(),
            error = %e,
            "cannot remove a temporary upload file after storing it; it is removed at the next start"
        );
    }
    if let Err(e) = fsync_dir(dir) {
        // Without the fsync the name may not survive a crash, so the caller must not write the
        // row; remove the name too, so that no file is left without a row.
        if let Err(remove) = std::fs::remove_file(target) {
            tracing::warn!(error = %remove, "cannot remove a document file after failing to fsync its directory");
        }
        return Err(io_error("fsync the document directory")(e));
    }
    Ok(hasher.finalize().to_vec())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

async fn create_temp(dir: &Path) -> Result<(tokio::fs::File, TempGuard), StoreError> {
    // 16 alphanumerics are 95 bits: a collision is practically impossible, and create_new turns
    // one into a retry rather than two uploads sharing a file.
    let mut last = None;
    for _ in 0..4 {
        let random = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let path = dir.join(format!("{TEMP_PREFIX}{random}{TEMP_SUFFIX}"));
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .await;
        match opened {
            Ok(file) => return Ok((file, TempGuard { path: Some(path) })),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_error("create a temporary file for an upload")(e)),
        }
    }
    let source = last.unwrap_or_else(|| io::Error::other("no attempt made"));
    Err(io_error("create a temporary file for an upload")(source))
}

fn lowercase_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(hex, "{b:02x}").expect("writing to a String cannot fail");
    }
    hex
}

/// Removes temporary upload files (`.upload-*.part`) not written to for `older_than`, which a
/// crash or a kill left behind, and returns how many it removed. Run at start-up.
///
/// Other instances share the directory and may be uploading now, so only old files go; every
/// write updates a file's modification time, so a slow upload that is still moving is kept.
/// Files that cannot be removed are logged and skipped: only an unreadable directory is an error.
pub fn clean_stale_uploads(dir: &Path, older_than: Duration) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        // Does not follow symbolic links: we remove only files we could have made.
        let metadata = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(temp = name, error = %e, "cannot inspect a temporary upload file");
                continue;
            }
        };
        if !metadata.is_file() {
            continue;
        }
        let stale = metadata
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            // A modification time in the future (a clock step) is not evidence of staleness.
            .is_some_and(|age| age >= older_than);
        if !stale {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            // Another instance's clean-up got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(temp = name, error = %e, "cannot remove a stale temporary upload file");
            }
        }
    }
    Ok(removed)
}

/// Opens the stored document `file_name` in `dir` for a streaming download, with its size.
/// Names that could leave the directory are refused with [`StoreError::Name`], as is anything
/// [`check_stored_name`] refuses; a missing file, or something that is not a regular file, is
/// [`StoreError::NotFound`].
pub async fn open(dir: &Path, file_name: &str) -> Result<(tokio::fs::File, u64), StoreError> {
    check_stored_name(file_name)?;
    // Not through a symbolic link (a planted link could serve any file the EMR may read), and
    // without blocking on a FIFO; the non-blocking flag is harmless for a regular file.
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(dir.join(file_name))
        .await;
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        // ELOOP: the name is a symbolic link.
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(StoreError::NotFound)
        }
        Err(e) => return Err(io_error("open a document file")(e)),
    };
    // The metadata of the open file, not of the name, so a rename in between cannot mislead.
    let metadata = file
        .metadata()
        .await
        .map_err(io_error("read a document file's metadata"))?;
    if !metadata.is_file() {
        return Err(StoreError::NotFound);
    }
    Ok((file, metadata.len()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use futures_util::stream;
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt as _;

    use super::*;

    const LIMIT: u64 = 10 * 1024 * 1024;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read the test directory")
            .map(|e| {
                e.expect("read a directory entry")
                    .file_name()
                    .into_string()
                    .expect("test file names are UTF-8")
            })
            .collect();
        names.sort();
        names
    }

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        let items: Vec<Result<Bytes, io::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        stream::iter(items)
    }

    fn sha256_hex(data: &[u8]) -> String {
        lowercase_hex(&Sha256::digest(data))
    }

    #[test]
    fn traversal_and_confusing_names_are_refused() {
        let long = "a".repeat(201);
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (".", NameError::DotOrDotDot),
            ("..", NameError::DotOrDotDot),
            ("../x", NameError::Separator),
            ("a/b", NameError::Separator),
            ("/etc/passwd", NameError::Separator),
            ("a\\b", NameError::Separator),
            ("..\\x", NameError::Separator),
            (".hidden", NameError::Hidden),
            ("a\0b", NameError::Control { code: 0 }),
            ("a\nb.pdf", NameError::Control { code: 0x0A }),
            ("a\rb", NameError::Control { code: 0x0D }),
            ("tab\there", NameError::Control { code: 0x09 }),
            ("del\u{7F}", NameError::Control { code: 0x7F }),
            ("c1\u{85}", NameError::Control { code: 0x85 }),
            (
                "report\u{202E}fdp.exe",
                NameError::Invisible { code: 0x202E },
            ),
            ("line\u{2028}break", NameError::Invisible { code: 0x2028 }),
            (&long, NameError::TooLong { len: 201, max: 200 }),
        ];
        for (name, expected) in cases {
            assert_eq!(
                check_original_name(name).as_ref(),
                Err(expected),
                "{name:?}"
            );
        }
    }

    #[test]
    fn ordinary_names_are_accepted_unchanged() {
        let exactly_200 = format!("{}.pdf", "é".repeat(98));
        assert_eq!(exactly_200.len(), 200);
        for name in [
            "lab result.pdf",
            "résumé.pdf",
            "scan (2).jpg",
            "x",
            "a..b",
            "trailing dot.",
            "日本語のファイル.png",
            "family 👨\u{200D}👩\u{200D}👧.png",
            exactly_200.as_str(),
        ] {
            assert_eq!(check_original_name(name), Ok(name), "{name:?}");
        }
    }

    #[test]
    fn a_stored_name_may_be_longer_than_an_original_one() {
        let original = "a".repeat(MAX_ORIGINAL_NAME_BYTES);
        let now: jiff::Zoned = "2026-11-23T16:15:02[America/Toronto]"
            .parse()
            .expect("valid zoned time");
        let stored = stored_name(&now, &original);
        assert_eq!(check_stored_name(&stored), Ok(stored.as_str()));
        assert!(check_stored_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn errors_never_contain_the_name() {
        let name = "Jane Doe\u{0}.pdf";
        let message = check_original_name(name)
            .expect_err("NUL is refused")
            .to_string();
        assert!(!message.contains("Jane"), "{message}");
    }

    #[test]
    fn stored_name_is_local_time_digits_then_the_original() {
        let now: jiff::Zoned = "2026-11-23T16:15:02-05:00[America/Toronto]"
            .parse()
            .expect("valid zoned time");
        assert_eq!(
            stored_name(&now, "lab result.pdf"),
            "20261123161502lab result.pdf"
        );
        let early: jiff::Zoned = "2026-01-02T03:04:05+00:00[UTC]"
            .parse()
            .expect("valid zoned time");
        assert_eq!(stored_name(&early, "x"), "20260102030405x");
    }

    #[tokio::test]
    async fn stores_a_multi_chunk_body_durably_with_its_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Bigger than a batch, so that both the pipelined and the final write run.
        let big = vec![7_u8; BATCH_BYTES + 1000];
        let parts: Vec<&[u8]> = vec![b"%PDF-1.7\n", &big, b"", b"middle", &big, b"%%EOF"];
        let all: Vec<u8> = parts.concat();

        let stored = store(
            dir.path(),
            "20261123161502lab result.pdf",
            chunks(&parts),
            LIMIT,
        )
        .await
        .expect("store");

        assert_eq!(
            stored,
            Stored {
                file_name: "20261123161502lab result.pdf".to_owned(),
                size: u64::try_from(all.len()).expect("fits"),
                sha256: sha256_hex(&all),
            }
        );
        assert_eq!(names_in(dir.path()), ["20261123161502lab result.pdf"]);
        let path = dir.path().join("20261123161502lab result.pdf");
        assert_eq!(std::fs::read(&path).expect("read back"), all);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        // 0640 less the umask: never executable, never group-writable, nothing for others.
        assert_eq!(mode & 0o137, 0, "mode {mode:o}");
    }

    #[tokio::test]
    async fn an_empty_body_is_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stored = store(dir.path(), "empty.txt", chunks(&[]), LIMIT)
            .await
            .expect("store");
        assert_eq!(stored.size, 0);
        assert_eq!(stored.sha256, sha256_hex(b""));
        assert_eq!(names_in(dir.path()), ["empty.txt"]);
    }

    #[tokio::test]
    async fn too_large_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = vec![1_u8; BATCH_BYTES];
        let err = store(
            dir.path(),
            "big.pdf",
            chunks(&[&big, &big, b"x"]),
            2 * 256 * 1024,
        )
        .await
        .expect_err("over the limit");
        assert!(
            matches!(err, StoreError::TooLarge { limit } if limit == 2 * 256 * 1024),
            "{err}"
        );
        assert!(err.is_client_error());
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn exactly_the_limit_is_accepted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stored = store(dir.path(), "ten.bin", chunks(&[b"01234", b"56789"]), 10)
            .await
            .expect("store");
        assert_eq!(stored.size, 10);
    }

    #[tokio::test]
    async fn a_body_error_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let body = stream::iter(vec![
            Ok(Bytes::from_static(b"first part")),
            Err(io::Error::other("connection reset")),
            Ok(Bytes::from_static(b"never read")),
        ]);
        let err = store(dir.path(), "doc.pdf", body, LIMIT)
            .await
            .expect_err("body failed");
        assert!(matches!(err, StoreError::Body(_)), "{err}");
        assert!(err.is_client_error());
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("taken.pdf");
        std::fs::write(&path, b"the original").expect("write the existing file");

        let err = store(dir.path(), "taken.pdf", chunks(&[b"an impostor"]), LIMIT)
            .await
            .expect_err("name taken");

        assert!(matches!(err, StoreError::Exists), "{err}");
        assert!(!err.is_client_error());
        assert_eq!(std::fs::read(&path).expect("read"), b"the original");
        assert_eq!(names_in(dir.path()), ["taken.pdf"]);
    }

    #[tokio::test]
    async fn store_refuses_a_bad_name_before_touching_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = store(dir.path(), "../escape.pdf", chunks(&[b"x"]), LIMIT)
            .await
            .expect_err("bad name");
        assert!(
            matches!(err, StoreError::Name(NameError::Separator)),
            "{err}"
        );
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_dropped_upload_removes_its_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // One chunk, then a client that never sends the rest.
        let body = stream::iter(vec![Ok::<_, io::Error>(Bytes::from_static(b"partial"))])
            .chain(stream::pending());
        let path = dir.path().to_owned();
        let task = tokio::spawn(async move { store(&path, "doc.pdf", body, LIMIT).await });
        let mut seen = false;
        for _ in 0..500 {
            if names_in(dir.path())
                .iter()
                .any(|n| n.starts_with(TEMP_PREFIX))
            {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen, "the upload never created its temporary file");
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn the_store_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = PathBuf::from("/nonexistent");
        let future = store(&dir, "x", chunks(&[]), 1);
        assert_send(&future);
    }

    #[tokio::test]
    async fn open_streams_a_stored_document_and_reports_missing_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        store(
            dir.path(),
            "20261123161502scan (1).jpg",
            chunks(&[b"jpeg", b"data"]),
            LIMIT,
        )
        .await
        .expect("store");

        let (mut file, size) = open(dir.path(), "20261123161502scan (1).jpg")
            .await
            .expect("open");
        assert_eq!(size, 8);
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).await.expect("read");
        assert_eq!(contents, b"jpegdata");

        let missing = open(dir.path(), "20261123161503other.pdf")
            .await
            .expect_err("missing");
        assert!(matches!(missing, StoreError::NotFound), "{missing}");

        std::fs::create_dir(dir.path().join("a directory")).expect("mkdir");
        let directory = open(dir.path(), "a directory")
            .await
            .expect_err("a directory is no document");
        assert!(matches!(directory, StoreError::NotFound), "{directory}");

        // A planted link to a file outside the directory is not followed, nor a FIFO waited on.
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("20261123161504link.pdf"))
            .expect("symlink");
        let link = open(dir.path(), "20261123161504link.pdf")
            .await
            .expect_err("a symbolic link is no document");
        assert!(matches!(link, StoreError::NotFound), "{link}");
        nix::unistd::mkfifo(
            &dir.path().join("20261123161505fifo.pdf"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .expect("mkfifo");
        let fifo = open(dir.path(), "20261123161505fifo.pdf")
            .await
            .expect_err("a FIFO is no document");
        assert!(matches!(fifo, StoreError::NotFound), "{fifo}");

        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "..",
            ".upload-x.part",
            "a\0b",
        ] {
            let err = open(dir.path(), bad).await.expect_err("bad name");
            assert!(matches!(err, StoreError::Name(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn clean_stale_uploads_removes_only_old_temporary_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let make = |name: &str, modified: Option<SystemTime>| {
            let file = std::fs::File::create(dir.path().join(name)).expect("create");
            if let Some(t) = modified {
                file.set_modified(t).expect("set mtime");
            }
        };
        make(".upload-old1.part", Some(hour_ago));
        make(".upload-old2.part", Some(hour_ago));
        make(".upload-fresh.part", None);
        make("20261123161502old document.pdf", Some(hour_ago));
        make(".upload-old.txt", Some(hour_ago));
        make("x.upload-old.part", Some(hour_ago));
        std::fs::create_dir(dir.path().join(".upload-dir.part")).expect("mkdir");

        let removed = clean_stale_uploads(dir.path(), Duration::from_secs(600)).expect("clean up");

        assert_eq!(removed, 2);
        assert_eq!(
            names_in(dir.path()),
            [
                ".upload-dir.part",
                ".upload-fresh.part",
                ".upload-old.txt",
                "20261123161502old document.pdf",
                "x.upload-old.part",
            ]
        );
    }

    proptest! {
        #[test]
        fn no_accepted_name_can_leave_the_directory(
            name in prop_oneof![
                any::<String>(),
                // Mostly dots, slashes and NULs, so the dangerous cases come up often.
                "[a./\\\\\\x00 ]{0,8}",
            ]
        ) {
            if let Ok(accepted) = check_original_name(&name) {
                prop_assert!(!accepted.contains('/'));
                prop_assert!(!accepted.contains('\0'));
                prop_assert!(accepted != ".." && accepted != ".");
                let components: Vec<_> = Path::new(accepted).components().collect();
                prop_assert!(
                    matches!(components.as_slice(), [std::path::Component::Normal(_)]),
                    "{:?}", components
                );
            }
        }
    }
}
