//! Integrity through a real FUSE mount, over LevelDB and over Ceph: what close() acknowledges is
//! exactly what the store holds (issue 7). Renames against commits are in
//! tests/integrity_names.rs, the memory budget in tests/integrity_memory.rs. A handle opened for writing builds its own value and
//! publishes it whole on flush/fsync/close; other handles see the last committed value; a handle
//! whose write failed (EFBIG, ENOMEM) is poisoned and commits nothing; rename and unlink are ordered
//! with commits; the memory budget bounds the daemon's real memory. Values are self-identifying
//! (`common::files::tagged`), so a failure says which writers' pieces a stored value is made of.
//! Needs root and /dev/fuse (SKIPPED otherwise; a failure under CI=true); the Ceph variants need
//! CLOUDSTORE_TEST_CEPH_CONF (see scripts/test.sh).

mod ceph_support;
mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::chunks::{assert_chunk, listed, stored};
use common::files::{
    absent, assert_bytes, close, describe, errno, identify, read_file, tagged, write_file,
    write_in_pieces,
};
use common::mount::TestMount;

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// 1. EFBIG: a write past --max-chunk-size poisons the handle; the chunk keeps its old value.

/// The --max-chunk-size of the EFBIG test (small, so that over-size files are quick to write).
const SMALL_MAX: usize = 4 * MIB;

fn efbig_keeps_the_old_value(m: &mut TestMount) {
    let old = tagged(1, 0, 100_000);
    write_file(&m.path("aa"), &old);
    let big = tagged(2, 0, SMALL_MAX + 8);
    write_file(&m.outside("big"), &big);
    write_file(&m.outside("max"), &big[..SMALL_MAX]);

    // The option reached the daemon: exactly the maximum is accepted.
    m.sh("cp max \"$MNT\"/bb");
    assert_chunk(
        m,
        "bb",
        Some(&big[..SMALL_MAX]),
        "after cp of exactly the maximum",
    );

    // cp, dd conv=notrunc and >> onto an existing chunk fail with EFBIG, and the chunk keeps
    // its old bytes.
    for (tool, script) in [
        ("cp", "cp big \"$MNT\"/aa"),
        (
            "dd conv=notrunc",
            "dd if=big of=\"$MNT\"/aa bs=256k conv=notrunc status=none",
        ),
        ("cat >>", "cat big >> \"$MNT\"/aa"),
    ] {
        let out = m.sh_output(script);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{tool} of max+8 bytes onto aa succeeded"
        );
        assert!(stderr.contains("File too large"), "{tool}: {stderr}");
        assert_chunk(m, "aa", Some(&old), &format!("after a failed {tool}"));
    }
    // Plain dd truncates first: it opens with O_TRUNC, dups the descriptor and closes the
    // original, and that close (its own, before any write) commits the empty file it asked
    // for. The failed writes that follow commit nothing: the chunk is empty, never a prefix.
    let out = m.sh_output("dd if=big of=\"$MNT\"/aa bs=1M status=none");
    assert!(!out.status.success(), "dd of max+8 bytes onto aa succeeded");
    assert_chunk(m, "aa", Some(&[]), "after a failed plain dd");
    write_file(&m.path("aa"), &old);

    // The syscalls: the crossing write fails with EFBIG, the handle stays poisoned (a small
    // write at offset 0 fails too), close() returns the error; nothing is committed.
    let mut f = OpenOptions::new().write(true).open(m.path("aa")).unwrap();
    f.write_all(&big[..SMALL_MAX - 4096]).unwrap();
    let e = f.write_all(&big[SMALL_MAX - 4096..]).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "the write past the maximum: {e}");
    f.seek(SeekFrom::Start(0)).unwrap();
    assert!(
        f.write_all(b"x").is_err(),
        "a poisoned handle accepted a write"
    );
    let e = close(f).expect_err("close() of a poisoned handle returned 0");
    assert_eq!(
        errno(&e),
        libc::EFBIG,
        "close() of the poisoned handle: {e}"
    );
    assert_chunk(m, "aa", Some(&old), "after a poisoned handle closed");

    // A new name whose only write fails: close() fails and the name is gone at once (the
    // kernel held the attributes its create answered).
    let mut f = File::create(m.path("cc")).unwrap();
    f.seek(SeekFrom::Start(SMALL_MAX as u64)).unwrap();
    let e = f.write_all(b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "a write past the maximum: {e}");
    close(f).expect_err("close() of a poisoned new file returned 0");
    assert!(
        absent(&m.path("cc")),
        "a new name whose only write failed exists"
    );
    assert_chunk(m, "cc", None, "after a poisoned new file closed");

    // Append across the maximum onto a chunk just under it.
    let near = tagged(3, 0, SMALL_MAX - 16);
    write_file(&m.path("cc"), &near);
    let mut f = OpenOptions::new().append(true).open(m.path("cc")).unwrap();
    let e = f.write_all(&[7u8; 64]).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "append past the maximum: {e}");
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert_chunk(m, "cc", Some(&near), "after a failed append");

    // truncate past the maximum is refused and changes nothing.
    let out = m.sh_output(&format!("truncate -s {} \"$MNT\"/aa", SMALL_MAX + 1));
    assert!(!out.status.success(), "truncate past the maximum succeeded");
    assert_chunk(m, "aa", Some(&old), "after a failed truncate");

    // A new name: cp fails and the name does not exist afterwards.
    let out = m.sh_output("cp big \"$MNT\"/dd");
    assert!(
        !out.status.success(),
        "cp of max+8 bytes to a new name succeeded"
    );
    assert!(absent(&m.path("dd")), "dd exists after a failed cp");
    assert!(!listed(m).contains("dd"), "dd is listed after a failed cp");
    assert_chunk(m, "dd", None, "after a failed cp to a new name");

    // All of it holds after a remount.
    m.remount();
    assert_chunk(m, "aa", Some(&old), "after a remount");
    assert_chunk(m, "bb", Some(&big[..SMALL_MAX]), "after a remount");
    assert_chunk(m, "cc", Some(&near), "after a remount");
    assert_chunk(m, "dd", None, "after a remount");
}

// ---------------------------------------------------------------------------------------------
// 2. Parallel writers of one chunk: the stored value is one writer's whole value.

const WRITERS: u16 = 8;
const TRIALS: u32 = 10;

fn parallel_writers_leave_one_whole_value(m: &mut TestMount) {
    write_file(&m.path("ab"), &tagged(99, 0, 200_000));
    fs::create_dir(m.outside("in")).unwrap();
    let mut mixes = Vec::new();
    for trial in 0..TRIALS {
        // Six 1 MiB values and two 3 MiB ones, different in every trial.
        let inputs: Vec<Vec<u8>> = (0..WRITERS)
            .map(|w| tagged(w, trial, if w < 6 { MIB } else { 3 * MIB }))
            .collect();
        for (w, v) in inputs.iter().enumerate() {
            write_file(&m.outside(&format!("in/{w}")), v);
        }
        let children: Vec<_> = (0..WRITERS)
            .map(|w| {
                Command::new("cp")
                    .arg(m.outside(&format!("in/{w}")))
                    .arg(m.path("ab"))
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (w, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "trial {trial}: cp of writer {w} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = read_file(&m.path("ab"));
        match identify(&got) {
            Some((w, t)) if t == trial && w < WRITERS && got == inputs[w as usize] => {}
            _ => mixes.push(format!("trial {trial}: {}", describe(&got))),
        }
        // The store holds what the mount showed (LevelDB: read after a remount).
        let s = stored(m, "ab").expect("ab is gone from the store");
        assert_bytes(&s, &got, &format!("trial {trial}: the store vs the mount"));
    }
    assert!(
        mixes.is_empty(),
        "{} of {TRIALS} trials stored something other than one writer's whole value:\n{}",
        mixes.len(),
        mixes.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Readers during writers see only whole committed values.

const RW_WRITERS: u16 = 4;
const RW_ROUNDS: u32 = 12;

/// The size of writer `w`'s value in round `r`: 64 KiB to 768 KiB, different from round to round.
fn rw_size(w: u16, r: u32) -> usize {
    64 * 1024 * (1 + (w as usize * 7 + r as usize * 5) % 12)
}

fn readers_see_only_whole_committed_values(m: &mut TestMount) {
    const INITIAL: u16 = 200;
    let initial = tagged(INITIAL, 0, 300_000);
    write_file(&m.path("cc"), &initial);
    let path = Arc::new(m.path("cc"));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..RW_WRITERS)
        .map(|w| {
            let path = path.clone();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for r in 0..RW_ROUNDS {
                    // 64 KiB writes, so that the writers' pieces interleave.
                    let out = write_in_pieces(&path, &tagged(w, r, rw_size(w, r)), 64 * 1024, true);
                    if !out.ok() {
                        failures.push(format!("writer {w} round {r}: {out:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done) = (path.clone(), done.clone());
            let initial = initial.clone();
            thread::spawn(move || {
                let (mut reads, mut bad) = (0u32, Vec::new());
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    reads += 1;
                    match fs::read(&*path) {
                        Ok(v) if v == initial => {}
                        Ok(v) => match identify(&v) {
                            Some((w, r)) if w < RW_WRITERS && r < RW_ROUNDS => {
                                if v.len() != rw_size(w, r) {
                                    bad.push(format!("a cut-off value: {}", describe(&v)));
                                }
                            }
                            _ => bad.push(describe(&v)),
                        },
                        Err(e) => bad.push(format!("read failed: {e}")),
                    }
                    // One last read after the writers finished.
                    if finished || bad.len() > 20 {
                        return (reads, bad);
                    }
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.join().unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let mut bad_reads = Vec::new();
    let mut total = 0;
    for r in readers {
        let (reads, bad) = r.join().unwrap();
        total += reads;
        bad_reads.extend(bad);
    }
    assert!(
        failures.is_empty(),
        "writes failed:\n{}",
        failures.join("\n")
    );
    assert!(
        bad_reads.is_empty(),
        "{} of {total} whole-file reads were not one committed value:\n{}",
        bad_reads.len(),
        bad_reads.join("\n")
    );
    // The final value: one writer's whole value, the same in the store.
    let last = read_file(&m.path("cc"));
    let id = identify(&last);
    assert!(
        matches!(id, Some((w, r)) if w < RW_WRITERS && last.len() == rw_size(w, r)),
        "the final value: {}",
        describe(&last)
    );
    assert_chunk(m, "cc", Some(&last), "after the writers");
}

// ---------------------------------------------------------------------------------------------
// 5. An unlinked open file keeps its bytes for its handles.

fn unlinked_open_file_reads_its_bytes(m: &mut TestMount) {
    for (i, size) in [(0u16, MIB), (1, 9 * MIB)] {
        let name = format!("f{i}");
        let v = tagged(50 + i, 0, size);
        write_file(&m.path(&name), &v);
        m.remount(); // nothing cached in the kernel or the daemon

        // Opened, not read yet, unlinked: the handle reads all of it.
        let mut f = File::open(m.path(&name)).unwrap();
        fs::remove_file(m.path(&name)).unwrap();
        assert!(absent(&m.path(&name)), "{name} is there after unlink");
        // fstat: its size, no link (not ENOENT: the file is still open).
        let meta = f.metadata().unwrap();
        assert_eq!(
            (meta.len(), meta.nlink()),
            (size as u64, 0),
            "{name}: fstat"
        );
        assert!(!listed(m).contains(&name), "{name} is listed after unlink");
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_bytes(
            &got,
            &v,
            &format!("{name} read through the unlinked handle"),
        );
        // Ranged reads too, from the end backwards.
        let mut piece = vec![0u8; 100_000];
        let off = (size - 150_000) as u64;
        f.read_exact_at(&mut piece, off).unwrap();
        assert_bytes(
            &piece,
            &v[off as usize..off as usize + 100_000],
            "a ranged read",
        );
        // A new file of the same name is another file.
        let new = tagged(60 + i, 0, 5000);
        write_file(&m.path(&name), &new);
        f.read_exact_at(&mut piece, 0).unwrap();
        assert_bytes(
            &piece,
            &v[..100_000],
            "the unlinked handle after a new file took the name",
        );
        drop(f);
        assert_chunk(m, &name, Some(&new), "after the unlinked handle closed");
        fs::remove_file(m.path(&name)).unwrap();
        assert_chunk(m, &name, None, "after the second unlink");
    }

    // A writing handle of an unlinked file: its close brings nothing back.
    let v = tagged(70, 0, 2 * MIB);
    write_file(&m.path("f2"), &v);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f2"))
        .unwrap();
    f.write_all(&tagged(71, 0, MIB)).unwrap();
    fs::remove_file(m.path("f2")).unwrap();
    f.write_all(&tagged(72, 0, MIB)).unwrap();
    let _ = close(f);
    thread::sleep(Duration::from_millis(200));
    assert_chunk(m, "f2", None, "after an unlinked writer closed");
    m.remount();
    assert_chunk(m, "f2", None, "after a remount");
}

// ---------------------------------------------------------------------------------------------
// After a successful close, a new open sees the new value (no stale kernel pages).

fn a_new_open_sees_the_committed_value(m: &mut TestMount) {
    let first = tagged(1, 0, 3 * MIB);
    write_file(&m.path("ff"), &first);
    // A reader holds the file open (its pages cached) across several rewrites.
    let reader = File::open(m.path("ff")).unwrap();
    let mut buf = vec![0u8; first.len()];
    reader.read_exact_at(&mut buf, 0).unwrap();
    for r in 1..6u32 {
        // Shorter and longer values, rewritten in the middle without O_TRUNC too.
        let v = tagged(1, r, MIB * (1 + (r as usize % 3)));
        assert!(write_in_pieces(&m.path("ff"), &v, 128 * 1024, true).ok());
        assert_bytes(
            &read_file(&m.path("ff")),
            &v,
            &format!("round {r}: a new open after close"),
        );
        assert_eq!(
            fs::metadata(m.path("ff")).unwrap().len(),
            v.len() as u64,
            "round {r}: size"
        );
        let mut patch = v.clone();
        patch[4096..8192].copy_from_slice(&tagged(2, r, 4096));
        let f = OpenOptions::new().write(true).open(m.path("ff")).unwrap();
        f.write_all_at(&patch[4096..8192], 4096).unwrap();
        close(f).unwrap();
        assert_bytes(
            &read_file(&m.path("ff")),
            &patch,
            &format!("round {r}: after a patch"),
        );
    }
    drop(reader);
}

// ---------------------------------------------------------------------------------------------
// A writer killed with SIGKILL: the kernel closes its descriptor (a flush, like any close), so
// what it wrote so far is published, as a local filesystem keeps it. Documented in SEMANTICS.md.

fn a_killed_writer_publishes_what_it_wrote(m: &mut TestMount) {
    let name = "c0ffee01";
    write_file(&m.path(name), &tagged(1, 1, 3 * MIB));
    let part = tagged(2, 1, 700 * 1024);
    fs::write(m.outside("part"), &part).unwrap();
    // The shell opens the file (O_TRUNC), writes the part, says so, then becomes a sleep that
    // still holds the descriptor: the SIGKILL lands with the file open and written.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"exec 3>"$MNT/$1"; cat "$2" >&3; echo written; exec sleep 120"#)
        .arg("bash")
        .arg(name)
        .arg(m.outside("part"))
        .env("MNT", &m.mnt)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        said.push(byte[0] as char);
    }
    assert_eq!(said, "written", "the writer did not finish its writes");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_chunk(m, name, Some(&part), "after its writer was killed");
}

// A close() by another thread of the process that opened the file publishes it, as a close by
// the opening thread does (FUSE names the calling thread; a descriptor belongs to the process).
// A dup of the descriptor stays open, so no release can publish it instead.

fn a_close_by_another_thread_publishes(m: &mut TestMount) {
    let name = "c0ffee02";
    write_file(&m.path(name), &tagged(1, 1, 1000));
    let new = tagged(2, 1, 300 * 1024);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path(name))
        .unwrap();
    f.write_all(&new).unwrap();
    let keep = f.try_clone().unwrap();
    thread::spawn(move || close(f)).join().unwrap().unwrap();
    assert_bytes(
        &read_file(&m.path(name)),
        &new,
        "after a close by another thread, with a dup still open",
    );
    drop(keep);
    assert_chunk(m, name, Some(&new), "after the last close");
}

mount_suites!([
    efbig_keeps_the_old_value(&["--max-chunk-size", "4M"]),
    parallel_writers_leave_one_whole_value,
    readers_see_only_whole_committed_values,
    unlinked_open_file_reads_its_bytes,
    a_new_open_sees_the_committed_value,
    a_killed_writer_publishes_what_it_wrote,
    a_close_by_another_thread_publishes,
]);
