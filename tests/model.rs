//! A model test through a real mount (issue 7): random sequences of open (read-only, read-write,
//! O_TRUNC, O_APPEND), pwrite, pread, ftruncate, fsync, close, rename and unlink over 3 names and
//! 3 file descriptors, run with std::fs and libc against a small reference model of the rule: a
//! handle opened for writing builds its own value (empty with O_TRUNC or on create, else from the
//! committed one at its first write or ftruncate), reads through it see its own writes,
//! flush/fsync/close publish it whole; other handles see committed values only; an open file
//! follows its inode through rename and keeps its bytes after unlink. O_APPEND handles (several
//! at once on a file) append their own bytes at commit to the value as it then stands.
//! One mount per test; the mount is emptied between cases. Proptest shrinks a failure to a short
//! sequence, printed with the step that failed. PROPTEST_CASES overrides the case count (32).

mod ceph_support;
mod common;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use common::files::{close, errno};
use common::mount::TestMount;

/// Three chunk names and a scratch name (a temporary file's: never in the store).
const NAMES: [&str; 4] = ["aa", "bb", "cc", "tmpX"];
const SLOTS: usize = 3;
/// Offsets and lengths stay within this, so that values stay small and steps quick.
const SPAN: u64 = 300_000;

/// How a descriptor is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadOnly,
    /// O_RDWR | O_CREAT.
    ReadWrite,
    /// O_RDWR | O_CREAT | O_TRUNC.
    Trunc,
    /// O_WRONLY | O_CREAT | O_APPEND.
    Append,
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        slot: usize,
        name: usize,
        mode: Mode,
    },
    Write {
        slot: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    Read {
        slot: usize,
        offset: u64,
        len: usize,
    },
    Truncate {
        slot: usize,
        size: u64,
    },
    Fsync {
        slot: usize,
    },
    Close {
        slot: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Unlink {
        name: usize,
    },
    ReadWhole {
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let name = 0..NAMES.len();
    let mode = prop_oneof![
        Just(Mode::ReadOnly),
        Just(Mode::ReadWrite),
        Just(Mode::Trunc),
        Just(Mode::Append)
    ];
    prop_oneof![
        3 => (slot.clone(), name.clone(), mode).prop_map(|(slot, name, mode)| Op::Open { slot, name, mode }),
        4 => (slot.clone(), 0..SPAN, 1..70_000usize, any::<u8>())
            .prop_map(|(slot, offset, len, seed)| Op::Write { slot, offset, len, seed }),
        3 => (slot.clone(), 0..SPAN, 1..140_000usize).prop_map(|(slot, offset, len)| Op::Read { slot, offset, len }),
        1 => (slot.clone(), 0..SPAN).prop_map(|(slot, size)| Op::Truncate { slot, size }),
        1 => slot.clone().prop_map(|slot| Op::Fsync { slot }),
        2 => slot.prop_map(|slot| Op::Close { slot }),
        1 => (name.clone(), name.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => name.clone().prop_map(|name| Op::Unlink { name }),
        2 => name.prop_map(|name| Op::ReadWhole { name }),
    ]
}

/// A file (an inode) of the model: its committed values, oldest first (empty: never committed).
#[derive(Debug, Default)]
struct Inode {
    versions: Vec<Vec<u8>>,
    linked: bool,
}

#[derive(Debug)]
struct Handle {
    inode: usize,
    /// Opened for writing.
    write: bool,
    /// The handle's own value (writing handles): empty when opened with O_TRUNC or when it
    /// created the file, else built from the committed one at its first write or ftruncate.
    buf: Option<Vec<u8>>,
    /// The committed value when a writing handle first read, before it had a value of its own:
    /// where the daemon holds what the handle read (LevelDB, or a value already loaded), its
    /// first write builds on that rather than on a value committed since. See [`own_value`].
    read_before: Option<Vec<u8>>,
    append: bool,
    /// An appender that has only appended: its value is a base of this many bytes, then its
    /// own bytes, which its commit appends to the committed value of then.
    append_base: Option<usize>,
    /// The first version a read-only handle may see (the one committed when it opened).
    since: usize,
    /// Changed since it opened or last published: written, truncated, opened with O_TRUNC, or
    /// it created the file. A clean writing handle may publish its (unchanged) value or nothing.
    dirty: bool,
}

#[derive(Debug, Default)]
struct Model {
    inodes: Vec<Inode>,
    names: HashMap<usize, usize>,
    handles: [Option<Handle>; SLOTS],
}

impl Model {
    fn committed(&self, ino: usize) -> Option<&Vec<u8>> {
        self.inodes[ino].versions.last()
    }

    /// A name whose file was created but never committed: what others see of it is unsettled
    /// (absent or empty), so the sequences leave such names alone except to read them whole.
    fn unsettled(&self, name: usize) -> bool {
        self.names
            .get(&name)
            .is_some_and(|&ino| self.inodes[ino].versions.is_empty())
    }

    /// The name of file `ino`, if it has one.
    fn name_of(&self, ino: usize) -> Option<usize> {
        self.names.iter().find(|(_, &v)| v == ino).map(|(&n, _)| n)
    }

    /// flush/fsync/close of handle `slot`: its value becomes the file's. For a clean handle whose
    /// value is no longer the committed one (another handle published since), either outcome is
    /// right; `shown` (what a new open reads now) tells which one the filesystem chose.
    fn publish(
        &mut self,
        slot: usize,
        shown: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        let h = self.handles[slot].as_mut().unwrap();
        let Some(buf) = &h.buf else {
            return Ok(());
        };
        let (ino, dirty) = (h.inode, h.dirty);
        h.dirty = false;
        if !self.inodes[ino].linked {
            return Ok(());
        }
        let mut buf = buf.clone();
        if let (true, Some(base)) = (dirty, h.append_base) {
            let mut value = self.inodes[ino]
                .versions
                .last()
                .cloned()
                .unwrap_or_default();
            value.extend_from_slice(&buf[base..]);
            h.buf = Some(value.clone());
            buf = value;
        }
        if dirty && h.append {
            // Later appends go after what it committed (a truncation it made is committed).
            h.append_base = Some(buf.len());
        }
        let committed = self.inodes[ino].versions.last();
        if dirty || committed.is_none() {
            self.inodes[ino].versions.push(buf);
        } else if committed != Some(&buf) {
            match shown() {
                Some(v) if v == buf => self.inodes[ino].versions.push(buf),
                Some(v) if Some(&v) == committed => {}
                other => {
                    return Err(format!(
                        "a clean handle's flush left {:?} bytes, neither its value ({}) nor the \
                         committed one ({})",
                        other.map(|v| v.len()),
                        buf.len(),
                        committed.map_or(0, |c| c.len())
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The real side: the mount and the open descriptors.
struct Real<'a> {
    m: &'a TestMount,
    files: [Option<File>; SLOTS],
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 4096) as u8) ^ (i as u8))
        .collect()
}

fn fail(step: usize, op: &Op, what: String) -> TestCaseError {
    TestCaseError::fail(format!("step {step} ({op:?}): {what}"))
}

/// Runs one op on both sides and compares; ops the model leaves alone are no-ops on both.
fn step(model: &mut Model, real: &mut Real, i: usize, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Open { slot, name, mode } => {
            if model.handles[slot].is_some() || model.unsettled(name) {
                return Ok(());
            }
            // The kernel picks an O_APPEND write's offset from its own idea of the size, which
            // other writers of the file change: appending handles share their file only with
            // other appenders.
            if let Some(&ino) = model.names.get(&name) {
                let open_on = |append: bool| {
                    model
                        .handles
                        .iter()
                        .flatten()
                        .any(|h| h.inode == ino && h.append == append)
                };
                let appending = mode == Mode::Append;
                if open_on(!appending) {
                    return Ok(());
                }
            }
            let path = real.m.path(NAMES[name]);
            let mut o = OpenOptions::new();
            match mode {
                Mode::ReadOnly => o.read(true),
                Mode::ReadWrite => o.read(true).write(true).create(true),
                Mode::Trunc => o.read(true).write(true).create(true).truncate(true),
                Mode::Append => o.append(true).create(true),
            };
            let got = o.open(&path);
            let exists = model.names.contains_key(&name);
            if mode == Mode::ReadOnly && !exists {
                return match got {
                    Err(e) if errno(&e) == libc::ENOENT => Ok(()),
                    other => Err(fail(i, op, format!("want ENOENT, got {other:?}"))),
                };
            }
            let f = got.map_err(|e| fail(i, op, format!("open: {e}")))?;
            let ino = match model.names.get(&name) {
                Some(&ino) => ino,
                None => {
                    model.inodes.push(Inode {
                        versions: Vec::new(),
                        linked: true,
                    });
                    let ino = model.inodes.len() - 1;
                    model.names.insert(name, ino);
                    ino
                }
            };
            let created = model.inodes[ino].versions.is_empty();
            let buf = match mode {
                Mode::ReadOnly => None,
                Mode::Trunc => Some(Vec::new()),
                Mode::ReadWrite | Mode::Append => created.then(Vec::new),
            };
            model.handles[slot] = Some(Handle {
                inode: ino,
                write: mode != Mode::ReadOnly,
                buf,
                read_before: None,
                append: mode == Mode::Append,
                append_base: (mode == Mode::Append && created).then_some(0),
                since: model.inodes[ino].versions.len().saturating_sub(1),
                dirty: mode == Mode::Trunc || (mode != Mode::ReadOnly && created),
            });
            real.files[slot] = Some(f);
        }
        Op::Write {
            slot,
            offset,
            len,
            seed,
        } => {
            let Some(h) = model.handles[slot].as_ref().filter(|h| h.write) else {
                return Ok(());
            };
            let append = h.append;
            let first = h.buf.is_none();
            let bytes = data(seed, len);
            let f = real.files[slot].as_ref().unwrap();
            // O_APPEND writes go to the end whatever the offset.
            f.write_all_at(&bytes, offset)
                .map_err(|e| fail(i, op, format!("write: {e}")))?;
            change_own_value(model, slot, f, |buf| {
                let at = if append { buf.len() } else { offset as usize };
                let end = at + len;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[at..end].copy_from_slice(&bytes);
            })
            .map_err(|w| fail(i, op, w))?;
            if append && first {
                let h = model.handles[slot].as_mut().unwrap();
                h.append_base = h.buf.as_ref().map(|b| b.len() - len);
            }
        }
        Op::Read { slot, offset, len } => {
            let Some(h) = &model.handles[slot] else {
                return Ok(());
            };
            if h.append {
                return Ok(()); // opened write-only
            }
            if h.write && h.buf.is_none() && h.read_before.is_none() {
                let committed = model.committed(h.inode).cloned().unwrap_or_default();
                model.handles[slot].as_mut().unwrap().read_before = Some(committed);
            }
            let h = model.handles[slot].as_ref().unwrap();
            let f = real.files[slot].as_ref().unwrap();
            let mut got = vec![0u8; len];
            let n = read_at(f, &mut got, offset).map_err(|e| fail(i, op, format!("read: {e}")))?;
            got.truncate(n);
            let slice = |v: &[u8]| -> Vec<u8> {
                let a = (offset as usize).min(v.len());
                v[a..(a + len).min(v.len())].to_vec()
            };
            let ok = match &h.buf {
                Some(buf) => got == slice(buf),
                None => {
                    let versions = &model.inodes[h.inode].versions;
                    (versions.is_empty() && got.is_empty())
                        || versions[h.since.min(versions.len().saturating_sub(1))..]
                            .iter()
                            .any(|v| got == slice(v))
                }
            };
            if !ok {
                return Err(fail(
                    i,
                    op,
                    format!("read {} bytes that are not the model's", got.len()),
                ));
            }
        }
        Op::Truncate { slot, size } => {
            if !model.handles[slot].as_ref().is_some_and(|h| h.write) {
                return Ok(());
            }
            let f = real.files[slot].as_ref().unwrap();
            f.set_len(size)
                .map_err(|e| fail(i, op, format!("ftruncate: {e}")))?;
            change_own_value(model, slot, f, |buf| buf.resize(size as usize, 0))
                .map_err(|w| fail(i, op, w))?;
            // From now on the handle replaces the value whole.
            model.handles[slot].as_mut().unwrap().append_base = None;
        }
        Op::Fsync { slot } => {
            let Some(h) = model.handles[slot].as_ref() else {
                return Ok(());
            };
            let orphan = !model.inodes[h.inode].linked;
            let name = model.name_of(h.inode);
            let got = real.files[slot].as_ref().unwrap().sync_all();
            // A writer of an unlinked file may be told so; nothing of it is published anyway.
            if !orphan {
                got.map_err(|e| fail(i, op, format!("fsync: {e}")))?;
            }
            model
                .publish(slot, || shown(real.m, name))
                .map_err(|w| fail(i, op, w))?;
        }
        Op::Close { slot } => {
            let Some(h) = model.handles[slot].as_ref() else {
                return Ok(());
            };
            let orphan = !model.inodes[h.inode].linked;
            let name = model.name_of(h.inode);
            let got = close(real.files[slot].take().unwrap());
            if !orphan {
                got.map_err(|e| fail(i, op, format!("close: {e}")))?;
            }
            model
                .publish(slot, || shown(real.m, name))
                .map_err(|w| fail(i, op, w))?;
            model.handles[slot] = None;
        }
        Op::Rename { from, to } => {
            if model.unsettled(from) || model.unsettled(to) {
                return Ok(());
            }
            let got = fs::rename(real.m.path(NAMES[from]), real.m.path(NAMES[to]));
            let Some(&ino) = model.names.get(&from) else {
                return match got {
                    Err(e) if errno(&e) == libc::ENOENT => Ok(()),
                    other => Err(fail(i, op, format!("want ENOENT, got {other:?}"))),
                };
            };
            got.map_err(|e| fail(i, op, format!("rename: {e}")))?;
            if from != to {
                model.names.remove(&from);
                if let Some(old) = model.names.insert(to, ino) {
                    model.inodes[old].linked = false;
                }
            }
        }
        Op::Unlink { name } => {
            if model.unsettled(name) {
                return Ok(());
            }
            let got = fs::remove_file(real.m.path(NAMES[name]));
            match model.names.remove(&name) {
                Some(ino) => {
                    got.map_err(|e| fail(i, op, format!("unlink: {e}")))?;
                    model.inodes[ino].linked = false;
                }
                None => match got {
                    Err(e) if errno(&e) == libc::ENOENT => {}
                    other => return Err(fail(i, op, format!("want ENOENT, got {other:?}"))),
                },
            }
        }
        Op::ReadWhole { name } => check_name(model, real.m, name).map_err(|w| fail(i, op, w))?,
    }
    Ok(())
}

/// Applies `change` (a write or ftruncate that the real handle `f` has just made) to writing
/// handle `slot`'s own value, building that value first if this is its first change: from the
/// committed value now, or, for a handle that read before, possibly from what it read (the
/// daemon builds on the value the handle holds, which LevelDB's whole-value reads and a value
/// already loaded give it). When the two differ, what the real handle now reads tells which.
fn change_own_value(
    model: &mut Model,
    slot: usize,
    f: &File,
    change: impl Fn(&mut Vec<u8>),
) -> Result<(), String> {
    let h = model.handles[slot].as_mut().unwrap();
    h.dirty = true;
    if let Some(buf) = &mut h.buf {
        change(buf);
        return Ok(());
    }
    let ino = h.inode;
    let mut now = model.committed(ino).cloned().unwrap_or_default();
    change(&mut now);
    let h = model.handles[slot].as_mut().unwrap();
    let read = h.read_before.take().map(|mut v| {
        change(&mut v);
        v
    });
    h.buf = Some(match read {
        Some(read) if read != now => {
            let mut got = vec![0u8; 4 * SPAN as usize];
            let n = read_at(f, &mut got, 0).map_err(|e| format!("read back: {e}"))?;
            got.truncate(n);
            if got == now {
                now
            } else if got == read {
                read
            } else {
                return Err(format!(
                    "the handle's own value ({} bytes) was built neither on the committed value \
                     nor on what it read",
                    got.len()
                ));
            }
        }
        _ => now,
    });
    Ok(())
}

/// What a new open of name `name` reads (`None`: absent or unreadable).
fn shown(m: &TestMount, name: Option<usize>) -> Option<Vec<u8>> {
    fs::read(m.path(NAMES[name?])).ok()
}

/// pread until `buf` is full or the end.
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// What a new open of `name` reads equals the model's committed value.
fn check_name(model: &Model, m: &TestMount, name: usize) -> Result<(), String> {
    let got = fs::read(m.path(NAMES[name]));
    match model.names.get(&name).map(|&ino| model.committed(ino)) {
        None => match got {
            Err(e) if errno(&e) == libc::ENOENT => Ok(()),
            Ok(v) => Err(format!(
                "{} is absent in the model, read {} bytes",
                NAMES[name],
                v.len()
            )),
            Err(e) => Err(format!("{}: {e}", NAMES[name])),
        },
        Some(None) => match got {
            Err(e) if errno(&e) == libc::ENOENT => Ok(()),
            Ok(v) if v.is_empty() => Ok(()),
            other => Err(format!(
                "{}: a new file, not committed yet: {other:?}",
                NAMES[name]
            )),
        },
        Some(Some(want)) => match got {
            Ok(v) if &v == want => Ok(()),
            Ok(v) => Err(format!(
                "{}: read {} bytes, the model has {} (first difference at {})",
                NAMES[name],
                v.len(),
                want.len(),
                common::files::first_difference(&v, want)
            )),
            Err(e) => Err(format!("{}: {e}", NAMES[name])),
        },
    }
}

/// One case: the ops, then every handle closed and every name checked; the mount is emptied.
fn run_case(m: &TestMount, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut real = Real {
        m,
        files: [None, None, None],
    };
    let result = (|| {
        for (i, op) in ops.iter().enumerate() {
            step(&mut model, &mut real, i, op)?;
        }
        for slot in 0..SLOTS {
            step(&mut model, &mut real, ops.len(), &Op::Close { slot })?;
        }
        for name in 0..NAMES.len() {
            check_name(&model, m, name).map_err(|w| fail(ops.len(), &Op::ReadWhole { name }, w))?;
        }
        Ok(())
    })();
    // Empty the mount for the next case, whatever happened.
    real.files = [None, None, None];
    for name in NAMES {
        let _ = fs::remove_file(m.path(name));
    }
    result
}

fn model_sequences(m: &mut TestMount) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let config = Config {
        cases,
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let m = &*m;
    match runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        run_case(m, &ops)
    }) {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => {
            let steps: Vec<String> = ops
                .iter()
                .enumerate()
                .map(|(i, o)| format!("  {i}: {o:?}"))
                .collect();
            panic!("{why}\nminimal sequence:\n{}", steps.join("\n"));
        }
        Err(e) => panic!("{e}"),
    }
}

/// A sequence the random ones seldom make: a handle reads, another handle commits, then the
/// first one writes. Its value builds on what it read (LevelDB) or on the newer committed value;
/// the model takes what the handle reads back, and fails on anything else.
fn a_handle_that_read_writes_after_another_commit(m: &mut TestMount) {
    use Mode::ReadWrite;
    let ops = [
        Op::Open {
            slot: 0,
            name: 2,
            mode: ReadWrite,
        },
        Op::Write {
            slot: 0,
            offset: 0,
            len: 3,
            seed: 7,
        },
        Op::Close { slot: 0 },
        Op::Open {
            slot: 2,
            name: 2,
            mode: ReadWrite,
        },
        Op::Read {
            slot: 2,
            offset: 0,
            len: 10,
        },
        Op::Open {
            slot: 1,
            name: 2,
            mode: ReadWrite,
        },
        Op::Write {
            slot: 1,
            offset: 0,
            len: 1,
            seed: 1,
        },
        Op::Close { slot: 1 },
        Op::Write {
            slot: 2,
            offset: 1,
            len: 1,
            seed: 0,
        },
        Op::Close { slot: 2 },
        Op::ReadWhole { name: 2 },
    ];
    if let Err(e) = run_case(m, &ops) {
        panic!("{e}");
    }
}

/// Two appenders of one chunk and of a scratch file, each committing after the other wrote:
/// both handles' bytes land, the later commit's after the earlier's.
fn two_appenders_both_land(m: &mut TestMount) {
    let write = |slot, seed| Op::Write {
        slot,
        offset: 0,
        len: 3,
        seed,
    };
    for name in [0, 3] {
        let open = |slot| Op::Open {
            slot,
            name,
            mode: Mode::Append,
        };
        let ops = [
            open(0),
            write(0, 1),
            Op::Close { slot: 0 },
            open(1),
            open(2),
            write(1, 2),
            write(2, 3),
            Op::Close { slot: 2 },
            write(1, 4),
            Op::Fsync { slot: 1 },
            write(1, 5),
            Op::Close { slot: 1 },
            Op::ReadWhole { name },
        ];
        if let Err(e) = run_case(m, &ops) {
            panic!("{e}");
        }
    }
}

mount_suites!([
    model_sequences,
    a_handle_that_read_writes_after_another_commit,
    two_appenders_both_land
]);
