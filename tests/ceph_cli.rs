//! The chunk commands with `--backend ceph` on the real cluster named by
//! CLOUDSTORE_TEST_CEPH_CONF, checked against what the `rados` tool sees.
#![cfg(feature = "ceph")]

mod ceph_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use ceph_support::{bytes, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_cloudstore-fs");

/// `cloudstore-fs ARGS --backend ceph --ceph-conf CONF --pool POOL --namespace NS`.
fn cli(c: &TestCluster, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--backend", "ceph", "--ceph-conf"])
        .arg(&c.conf)
        .args(["--pool", &c.pool, "--namespace", &c.namespace])
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run cloudstore-fs");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(c: &TestCluster, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let out = cli(c, args, stdin);
    assert!(
        out.status.success(),
        "cloudstore-fs {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn rados(c: &TestCluster, args: &[&str]) -> Output {
    c.rados_command().args(args).output().expect("run rados")
}

#[test]
fn put_get_stat_rm_ls_with_backend_ceph() {
    let Some(c) = ceph_support::cluster("cli") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let value = bytes(1, 100_000);
    let file = tmp.path().join("value");
    fs::write(&file, &value).unwrap();

    ok(&c, &["put", "00ff10", file.to_str().unwrap()], None);
    ok(&c, &["put", "0a0b"], Some(b"from stdin"));
    ok(&c, &["put", "ee"], Some(b""));

    // The object rados sees is the value, under the lowercase hex name.
    let out = tmp.path().join("via-rados");
    let r = rados(&c, &["get", "00ff10", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(fs::read(&out).unwrap() == value);

    assert!(ok(&c, &["get", "00ff10"], None) == value);
    assert!(ok(&c, &["get", "00ff10", "--range", "10..20"], None) == value[10..20]);
    assert!(ok(&c, &["get", "00ff10", "--range", "99990.."], None) == value[99_990..]);
    assert_eq!(ok(&c, &["get", "0a0b"], None), b"from stdin");
    assert_eq!(ok(&c, &["get", "ee"], None), b"");
    assert_eq!(
        String::from_utf8(ok(&c, &["stat", "00ff10"], None))
            .unwrap()
            .trim(),
        "100000"
    );
    assert_eq!(
        String::from_utf8(ok(&c, &["stat", "ee"], None))
            .unwrap()
            .trim(),
        "0"
    );

    let listed: BTreeMap<String, u64> = String::from_utf8(ok(&c, &["ls"], None))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, s) = l.split_once(' ').expect("KEY SIZE");
            (k.to_string(), s.trim().parse().unwrap())
        })
        .collect();
    let want: BTreeMap<String, u64> = [("00ff10", 100_000), ("0a0b", 10), ("ee", 0)]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
    assert_eq!(listed, want);

    ok(&c, &["rm", "0a0b"], None);
    let missing = cli(&c, &["get", "0a0b"], None);
    assert_eq!(missing.status.code(), Some(1), "a missing chunk exits 1");
    assert_eq!(cli(&c, &["stat", "0a0b"], None).status.code(), Some(1));
    assert!(!rados(&c, &["stat", "0a0b"]).status.success());
}

#[test]
fn import_and_export_with_backend_ceph() {
    let Some(c) = ceph_support::cluster("cli-io") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..500u64 {
        let name = hex::encode(i.to_be_bytes());
        let v = bytes(i, (i as usize * 37) % 9000);
        fs::write(src.join(&name), &v).unwrap();
        want.insert(name, v);
    }
    ok(&c, &["import", src.to_str().unwrap()], None);

    // Every chunk is there for rados, byte for byte (spot check) and by name (all).
    let names = rados(&c, &["ls"]);
    let mut names: Vec<_> = String::from_utf8(names.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, want.keys().cloned().collect::<Vec<_>>());
    let probe = tmp.path().join("probe");
    let name = hex::encode(123u64.to_be_bytes());
    assert!(rados(&c, &["get", &name, probe.to_str().unwrap()])
        .status
        .success());
    assert!(fs::read(&probe).unwrap() == want[&name]);

    let dst = tmp.path().join("dst");
    ok(&c, &["export", dst.to_str().unwrap()], None);
    let mut got = BTreeMap::new();
    for e in fs::read_dir(&dst).unwrap() {
        let e = e.unwrap();
        got.insert(
            e.file_name().to_str().unwrap().to_string(),
            fs::read(e.path()).unwrap(),
        );
    }
    assert!(got == want, "export gives back what import stored");
}

#[test]
fn unreachable_or_missing_ceph_is_a_clear_failure() {
    let Some(c) = ceph_support::cluster("cli-err") else {
        return;
    };
    let bad_pool = TestCluster {
        pool: "cli-no-such-pool".into(),
        ..c.clone()
    };
    let out = cli(&bad_pool, &["ls"], None);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cli-no-such-pool"), "{err}");

    let bad_conf = TestCluster {
        conf: "/nonexistent/ceph.conf".into(),
        ..c
    };
    let out = cli(&bad_conf, &["stat", "00"], None);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ceph.conf"), "{err}");
}
