//! What a chunk holds, seen through the mount and in the store: the assertions of the
//! integrity tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;

use super::files::{assert_bytes, describe};
use super::mount::TestMount;

/// The chunk's value as the store holds it, through the CLI (`get`), bypassing the mount and the
/// kernel's caches (LevelDB: the mount is taken down around the command). `None`: absent.
pub fn stored(m: &mut TestMount, name: &str) -> Option<Vec<u8>> {
    let out = m.cli(&["get", name]);
    match out.status.code() {
        Some(0) => Some(out.stdout),
        Some(1) => None,
        _ => panic!(
            "cloudstore-fs get {name}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// What the mount shows under `name`: `None` when absent (ENOENT).
pub fn shown(m: &TestMount, name: &str) -> Option<Vec<u8>> {
    match fs::read(m.path(name)) {
        Ok(v) => Some(v),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => panic!("read {name}: {e}"),
    }
}

/// The names the mount lists.
pub fn listed(m: &TestMount) -> BTreeSet<String> {
    fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Asserts `name` holds `want` through the mount and in the store (`None`: absent in both).
#[track_caller]
pub fn assert_chunk(m: &mut TestMount, name: &str, want: Option<&[u8]>, when: &str) {
    for (whose, got) in [("mount", shown(m, name)), ("store", stored(m, name))] {
        match (got.as_deref(), want) {
            (Some(g), Some(w)) => assert_bytes(g, w, &format!("{name} in the {whose} {when}")),
            (None, None) => {}
            (g, w) => panic!(
                "{name} in the {whose} {when}: got {}, want {}",
                g.map_or("absent".into(), describe),
                w.map_or("absent".into(), describe)
            ),
        }
    }
}
