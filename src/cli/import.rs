//! `import DIR`: stores every regular file of DIR named by a chunk name, through
//! `set_chunk_batch` in batches bounded by count and bytes; other names, symlinks (never
//! followed) and other kinds of files are reported and skipped.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::batch::Batcher;
use super::chunk::stdout_result;
use super::progress::Progress;
use super::{CliError, CliResult};
use crate::config::Config;
use crate::keyname;
use crate::store::{Cloudstore, RawChunk};

struct Import<'a> {
    store: &'a dyn Cloudstore,
    progress: Progress,
    batch: Batcher,
    skipped: u64,
    failed: u64,
}

impl Import<'_> {
    fn skip(&mut self, path: &Path, why: impl std::fmt::Display) {
        self.skipped += 1;
        self.progress
            .report(&format!("skipping {}: {why}", path.display()));
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        self.progress.report(&what);
    }

    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> CliResult {
        let len = value.len() as u64;
        if self.batch.full_for(len) {
            self.flush()?;
        }
        self.batch.push(RawChunk::for_set(key, value), len);
        Ok(())
    }

    /// Stores the pending batch. A failure of the whole call ends the import; a chunk's own
    /// failure is reported and counted.
    fn flush(&mut self) -> CliResult {
        let Some(mut batch) = self.batch.take() else {
            return Ok(());
        };
        if let Err(e) = self.store.set_chunk_batch(&mut batch) {
            return Err(CliError::Failed(format!(
                "import stopped after {} chunks: a batch of {} failed: {e}",
                self.progress.chunks,
                batch.len()
            )));
        }
        for chunk in &batch {
            match &chunk.error {
                Some(e) => self.fail(format!(
                    "chunk {} could not be stored: {e}",
                    hex::encode(&chunk.key)
                )),
                None => self.progress.add(chunk.value.len() as u64),
            }
        }
        self.progress.update();
        self.batch.reuse(batch);
        Ok(())
    }
}

/// How many names in `dir` are chunk names: the bar's total (a names-only pass, no stat).
fn count_chunk_names(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok())
            .filter(|e| keyname::key_from_os_name(&e.file_name()).is_ok())
            .count() as u64
    })
}

/// Reads a file, refusing a symlink (O_NOFOLLOW) or a FIFO (O_NONBLOCK: no waiting for a
/// writer) put in its place since it was looked at.
fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut value = Vec::new();
    file.read_to_end(&mut value)?;
    Ok(value)
}

/// Runs `import DIR`.
pub fn run(store: &dyn Cloudstore, config: &Config, dir: &Path) -> CliResult {
    let entries = fs::read_dir(dir)
        .map_err(|e| CliError::Invalid(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut import = Import {
        store,
        progress: Progress::start(
            "importing",
            Progress::visible().then(|| count_chunk_names(dir)),
        ),
        batch: Batcher::new(),
        skipped: 0,
        failed: 0,
    };
    for entry in entries {
        let entry = entry.map_err(|e| CliError::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let name = entry.file_name();
        let key = match keyname::key_from_os_name(&name) {
            Ok(key) => key,
            Err(why) => {
                // Upper case hex is another spelling of a chunk name: say which one.
                let lower = name.to_str().map(str::to_ascii_lowercase);
                match lower.filter(|l| keyname::parse_key_name(l).is_some()) {
                    Some(l) => import.skip(
                        &path,
                        format_args!(
                            "not a chunk name ({why}; chunk names are lowercase: rename it to {l})"
                        ),
                    ),
                    None => import.skip(&path, format_args!("not a chunk name ({why})")),
                }
                continue;
            }
        };
        // Symlinks are not followed: a link could bring in any file of the system.
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                import.fail(format!("cannot stat {}: {e}", path.display()));
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            import.skip(&path, "a symlink (not followed)");
            continue;
        }
        if !meta.is_file() {
            import.skip(&path, "not a regular file");
            continue;
        }
        if meta.len() > config.max_chunk_size {
            import.fail(format!(
                "{}: {} bytes exceed the maximum chunk size of {} bytes",
                path.display(),
                meta.len(),
                config.max_chunk_size
            ));
            continue;
        }
        match read_no_follow(&path) {
            Ok(value) => import.push(key, value)?,
            Err(e) => import.fail(format!("cannot read {}: {e}", path.display())),
        }
    }
    import.flush()?;
    let secs = import.progress.finish();
    let failed = match import.failed {
        0 => String::new(),
        n => format!(", {n} failed"),
    };
    stdout_result(writeln!(
        io::stdout().lock(),
        "imported {} chunks ({} bytes), skipped {} files{failed} in {secs:.1} s",
        import.progress.chunks,
        import.progress.bytes,
        import.skipped,
    ))?;
    match import.failed {
        0 => Ok(()),
        n => Err(CliError::Failed(format!("{n} files could not be imported"))),
    }
}
