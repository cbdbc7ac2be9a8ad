//! The single-chunk commands (put, get, stat, rm) and ls.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::{ByteRange, CliError, CliResult};
use crate::config::Config;
use crate::keyname;
use crate::store::{Cloudstore, StoreError};

/// Turns a store failure on `key` into the command's error (printed once, by `main`; the
/// store's messages name the backend and the key). Logged at debug level with the operation.
pub(super) fn store_failure(
    store: &dyn Cloudstore,
    op: &str,
    key: &[u8],
    err: StoreError,
) -> CliError {
    log::debug!(
        "{} {op} of chunk {} failed: {err}",
        store.backend(),
        hex::encode(key)
    );
    CliError::from(err)
}

/// Logs a missing chunk and returns the not-found error.
fn missing(store: &dyn Cloudstore, op: &str, key: &[u8]) -> CliError {
    log::info!(
        "{} {op}: chunk {} not found",
        store.backend(),
        hex::encode(key)
    );
    CliError::not_found(key)
}

/// Ends a write to stdout: a reader that went away (`| head`) is not a failure.
pub(super) fn stdout_result(result: io::Result<()>) -> CliResult {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io("writing to stdout", e)),
        Ok(()) => Ok(()),
    }
}

/// `put KEY [FILE]`: stores FILE (or stdin) as the value of KEY.
pub fn put(store: &dyn Cloudstore, config: &Config, key: &[u8], file: Option<&Path>) -> CliResult {
    let (reader, origin): (Box<dyn Read>, String) = match file {
        None => (Box::new(io::stdin().lock()), "stdin".into()),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), "stdin".into()),
        Some(p) => {
            let f = File::open(p).map_err(|e| {
                CliError::Invalid(format!("cannot open input file {}: {e}", p.display()))
            })?;
            (Box::new(f), p.display().to_string())
        }
    };
    // Read at most one byte over the limit: a huge input is refused without being held whole.
    let max = config.max_chunk_size;
    let mut value = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut value)
        .map_err(|e| CliError::io(format_args!("reading {origin}"), e))?;
    if value.len() as u64 > max {
        return Err(CliError::Invalid(format!(
            "{origin} is larger than the maximum chunk size of {max} bytes (--max-chunk-size)"
        )));
    }
    store
        .set_chunk(key, &value)
        .map_err(|e| store_failure(store, "put", key, e))
}

/// `get KEY [--range START..END] [-o FILE]`: writes the value (or a range of it).
pub fn get(
    store: &dyn Cloudstore,
    key: &[u8],
    range: Option<ByteRange>,
    output: Option<&Path>,
) -> CliResult {
    let fail = |e| store_failure(store, "get", key, e);
    let value = match range {
        None => store.get_chunk(key).map_err(fail)?,
        // The store reads end 0 as "to the end"; an explicit ..0 is the empty range 0..0.
        Some(ByteRange { end: Some(0), .. }) => store.stat(key).map_err(fail)?.map(|_| Vec::new()),
        Some(ByteRange { start, end }) => store
            .get_chunk_with_range(key, start, end.unwrap_or(0))
            .map_err(fail)?,
    };
    let value = value.ok_or_else(|| missing(store, "get", key))?;
    match output {
        Some(path) => std::fs::write(path, &value)
            .map_err(|e| CliError::io(format_args!("writing {}", path.display()), e)),
        None => {
            let mut out = io::stdout().lock();
            stdout_result(out.write_all(&value).and_then(|()| out.flush()))
        }
    }
}

/// `stat KEY`: prints the size of the value in bytes.
pub fn stat(store: &dyn Cloudstore, key: &[u8]) -> CliResult {
    let size = store
        .stat(key)
        .map_err(|e| store_failure(store, "stat", key, e))?
        .ok_or_else(|| missing(store, "stat", key))?;
    stdout_result(writeln!(io::stdout().lock(), "{size}"))
}

/// `rm KEY`: deletes the chunk.
pub fn rm(store: &dyn Cloudstore, key: &[u8]) -> CliResult {
    let existed = store
        .delete(key)
        .map_err(|e| store_failure(store, "rm", key, e))?;
    if !existed {
        return Err(missing(store, "rm", key));
    }
    Ok(())
}

/// `ls`: one `KEYHEX SIZE` line per chunk, streamed from the listing (`"" SIZE` for the empty
/// key).
pub fn ls(store: &dyn Cloudstore) -> CliResult {
    let list = store
        .list(None)
        .map_err(|e| store_failure(store, "list", b"", e))?;
    let mut out = BufWriter::with_capacity(64 << 10, io::stdout().lock());
    let mut last_key = Vec::new();
    for item in list {
        let info = item.map_err(|e| {
            CliError::Failed(format!(
                "listing failed after chunk {}: {e}",
                hex::encode(&last_key)
            ))
        })?;
        // The empty key prints as `""`, never as an empty field.
        let line = writeln!(out, "{} {}", keyname::display_key(&info.key), info.size);
        if line.is_err() {
            return stdout_result(line);
        }
        last_key = info.key;
    }
    stdout_result(out.flush())
}
