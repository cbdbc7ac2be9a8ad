//! `export DIR`: writes every chunk to DIR as a file named by its hex key, streaming the listing
//! and fetching values with `get_chunk_batch` in batches bounded by count and bytes.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::batch::Batcher;
use super::chunk::stdout_result;
use super::progress::Progress;
use super::{CliError, CliResult};
use crate::keyname;
use crate::store::{Cloudstore, RawChunk};

struct Export<'a> {
    store: &'a dyn Cloudstore,
    dir: &'a Path,
    progress: Progress,
    batch: Batcher,
    vanished: u64,
    /// Chunks whose keys cannot be file names (empty, or longer than 127 bytes).
    unnamed: u64,
    failed: u64,
}

impl Export<'_> {
    /// Reports a chunk whose key cannot be a file name; its value is not fetched.
    fn skip_unnamed(&mut self, key: &[u8]) {
        self.unnamed += 1;
        self.progress.report(&format!(
            "skipping the chunk with key {}: {}",
            keyname::display_key(key),
            keyname::why_not_a_name(key).unwrap_or_default()
        ));
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        self.progress.report(&what);
    }

    fn push(&mut self, key: Vec<u8>, size: u64) -> CliResult {
        if self.batch.full_for(size) {
            self.flush()?;
        }
        self.batch.push(RawChunk::for_get(key), size);
        Ok(())
    }

    /// Fetches the pending batch and writes each value. A failure of the whole call ends the
    /// export; a chunk's own failure is reported and counted.
    fn flush(&mut self) -> CliResult {
        let Some(mut batch) = self.batch.take() else {
            return Ok(());
        };
        if let Err(e) = self.store.get_chunk_batch(&mut batch) {
            return Err(CliError::Failed(format!(
                "export stopped after {} chunks: a batch of {} failed: {e}",
                self.progress.chunks,
                batch.len()
            )));
        }
        for chunk in batch.drain(..) {
            let name = keyname::name_of_key(&chunk.key);
            if let Some(e) = &chunk.error {
                self.fail(format!("chunk {name} could not be read: {e}"));
            } else if !chunk.ok {
                // Deleted between the listing and the read: nothing to export, not a failure.
                self.vanished += 1;
                self.progress
                    .report(&format!("chunk {name} vanished during the export"));
            } else {
                let path = self.dir.join(&name);
                match fs::write(&path, &chunk.value) {
                    Ok(()) => self.progress.add(chunk.value.len() as u64),
                    Err(e) => self.fail(format!("chunk {name}: writing {}: {e}", path.display())),
                }
            }
        }
        self.progress.update();
        self.batch.reuse(batch);
        Ok(())
    }
}

/// Runs `export DIR`.
pub fn run(store: &dyn Cloudstore, dir: &Path) -> CliResult {
    fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format_args!("creating {}", dir.display()), e))?;
    let list = store
        .list(None)
        .map_err(|e| CliError::Failed(format!("export: listing failed: {e}")))?;
    let mut export = Export {
        store,
        dir,
        progress: Progress::start("exporting", None),
        batch: Batcher::new(),
        vanished: 0,
        unnamed: 0,
        failed: 0,
    };
    for item in list {
        let info = item.map_err(|e| {
            CliError::Failed(format!(
                "export stopped after {} chunks: listing failed: {e}",
                export.progress.chunks
            ))
        })?;
        if keyname::why_not_a_name(&info.key).is_some() {
            export.skip_unnamed(&info.key);
            continue;
        }
        export.push(info.key, info.size)?;
    }
    export.flush()?;
    let secs = export.progress.finish();
    let mut extra = String::new();
    if export.vanished > 0 {
        extra += &format!(", {} vanished", export.vanished);
    }
    if export.unnamed > 0 {
        extra += &format!(
            ", {} skipped (keys that cannot be file names)",
            export.unnamed
        );
    }
    if export.failed > 0 {
        extra += &format!(", {} failed", export.failed);
    }
    stdout_result(writeln!(
        io::stdout().lock(),
        "exported {} chunks ({} bytes){extra} in {secs:.1} s",
        export.progress.chunks,
        export.progress.bytes,
    ))?;
    match (export.failed, export.unnamed) {
        (0, 0) => Ok(()),
        (0, n) => Err(CliError::Failed(format!(
            "{n} chunks were not exported: their keys cannot be file names (empty, or longer \
             than 127 bytes); read them with `cloudstore-fs get`"
        ))),
        (n, 0) => Err(CliError::Failed(format!(
            "{n} chunks could not be exported"
        ))),
        (n, u) => Err(CliError::Failed(format!(
            "{n} chunks could not be exported, and {u} were not: their keys cannot be file names"
        ))),
    }
}
