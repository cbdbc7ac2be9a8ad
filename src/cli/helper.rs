//! `mount.cloudstore-fs`: the mount helper that mount(8) runs for `mount -t cloudstore-fs` and
//! for fstab lines of type `cloudstore-fs` (this binary, called by that name, as rclone does),
//! and `umount.fuse.cloudstore-fs`, the helper umount(8) runs for our mounts (their type in
//! mountinfo is `fuse.cloudstore-fs`), so that `umount MOUNTPOINT` returns only once the daemon
//! has committed everything and exited, exactly as `cloudstore-fs unmount` does (without it,
//! umount(8) returns as soon as the kernel lets go, while the daemon still holds the store).
//!
//! mount(8) calls `mount.cloudstore-fs SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS]`. The
//! helper turns that into `cloudstore-fs [STORE FLAGS] mount --daemon [FLAGS] MOUNTPOINT` and
//! runs it, so that mount(8) returns once the filesystem answers (or with the reason it cannot).
//! SOURCE is `leveldb:DIR` or `ceph:POOL[/NAMESPACE]`; OPTIONS are the mount's own options
//! spelled with underscores (`allow_other`, `config=FILE`, ...) and the standard ones mount(8)
//! passes, handled or ignored as mount(8) expects. An unknown option is invalid input (exit 2),
//! named, and nothing is mounted (unless `-s`, mount's "sloppy" flag, asks to ignore it).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{CliError, CliResult};

/// The name mount(8) calls the helper by (`mount.<type>` for `-t cloudstore-fs`).
pub const HELPER_NAME: &str = "mount.cloudstore-fs";

/// The name umount(8) calls its helper by for a mount of type `fuse.cloudstore-fs`.
pub const UMOUNT_HELPER_NAME: &str = "umount.fuse.cloudstore-fs";

/// Which helper this process was started as (by its argv[0]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    Mount,
    Umount,
}

impl Helper {
    /// The helper named by `argv0`, if it names one.
    pub fn from_argv0(argv0: &OsStr) -> Option<Helper> {
        let name = Path::new(argv0).file_name()?.as_bytes();
        if name == HELPER_NAME.as_bytes() {
            Some(Helper::Mount)
        } else if name == UMOUNT_HELPER_NAME.as_bytes() {
            Some(Helper::Umount)
        } else {
            None
        }
    }

    /// Runs the helper with its arguments (after argv[0]).
    pub fn run(self, args: &[OsString]) -> std::process::ExitCode {
        match self {
            Helper::Mount => run(args),
            Helper::Umount => run_umount(args),
        }
    }
}

/// `umount.fuse.cloudstore-fs MOUNTPOINT [-flnrv] [-N NS] [-t TYPE]`: `cloudstore-fs unmount`
/// (`-l`: `--lazy`). Its failure is printed once; exit 3 (umount(8) reports it).
fn run_umount(args: &[OsString]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut opts = crate::mount::UnmountOptions::default();
    let mut mountpoint = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"-t" || bytes == b"-N" {
            it.next();
        } else if bytes.len() > 1 && bytes[0] == b'-' {
            // -f (force), -n (no mtab), -r (remount ro on failure), -v: nothing to do here.
            opts.lazy |= bytes.contains(&b'l');
        } else if mountpoint.is_none() {
            mountpoint = Some(Path::new(arg));
        } else {
            eprintln!("{UMOUNT_HELPER_NAME}: unexpected argument {arg:?}");
            return ExitCode::from(2);
        }
    }
    let Some(mountpoint) = mountpoint else {
        eprintln!("{UMOUNT_HELPER_NAME}: expected MOUNTPOINT");
        return ExitCode::from(2);
    };
    match crate::mount::unmount_with(mountpoint, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{UMOUNT_HELPER_NAME}: {e}");
            ExitCode::from(3)
        }
    }
}

/// Standard options mount(8) may pass that need nothing from the daemon: the mount is always
/// nodev, nosuid and noatime, and a chunk's 0644 mode has no exec bit, so `noexec` holds anyway.
/// fstab-only ones (`noauto`, `nofail`, `user`, `_netdev`, ...) are mount(8)'s and systemd's.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "async",
    "sync",
    "dirsync",
    "silent",
    "loud",
    "nomand",
];

/// Prefixes of standard options that are ignored the same way (systemd's and mount(8)'s own).
const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "_netdev"];

/// What a helper command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HelperCall {
    /// The `cloudstore-fs` command line to run (without argv[0]).
    pub args: Vec<OsString>,
    /// `-f`: mount(8)'s fake mount: do everything but mount.
    pub fake: bool,
    /// Options ignored because of `-s` (sloppy), to say so.
    pub sloppy_ignored: Vec<String>,
}

/// Turns the helper's arguments (after argv[0]) into a `cloudstore-fs mount --daemon` command
/// line; bad input (unknown option, bad source, missing operand) is [`CliError::Invalid`].
pub fn translate(args: &[OsString]) -> CliResult<HelperCall> {
    let mut operands: Vec<&OsString> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut sloppy = false;
    let mut fake = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"-o" {
            let value = it
                .next()
                .ok_or_else(|| CliError::Invalid("-o needs a list of options".into()))?;
            options.push(utf8(value, "mount options")?);
        } else if let Some(value) = bytes.strip_prefix(b"-o") {
            options.push(utf8(OsStr::from_bytes(value), "mount options")?);
        } else if bytes == b"-t" || bytes == b"-N" {
            // The type (always ours) and the namespace mount(8) already entered.
            it.next();
        } else if bytes.len() > 1 && bytes[0] == b'-' {
            for &flag in &bytes[1..] {
                match flag {
                    b's' => sloppy = true,
                    b'f' => fake = true,
                    // -n: no mtab (there is none); -v: verbose (the daemon's log says more).
                    b'n' | b'v' => {}
                    _ => {
                        return Err(CliError::Invalid(format!(
                            "{HELPER_NAME}: unknown flag -{}",
                            flag as char
                        )))
                    }
                }
            }
        } else {
            operands.push(arg);
        }
    }
    let [source, mountpoint] = operands[..] else {
        return Err(CliError::Invalid(format!(
            "{HELPER_NAME}: expected SOURCE MOUNTPOINT (SOURCE: leveldb:DIR or \
             ceph:POOL[/NAMESPACE]), got {} operand(s)",
            operands.len()
        )));
    };
    let mut store: Vec<OsString> = source_args(source)?;
    let mut mount: Vec<OsString> = vec!["mount".into(), "--daemon".into()];
    let mut read_only = false;
    let mut sloppy_ignored = Vec::new();
    for option in options.iter().flat_map(|o| o.split(',')) {
        if option.is_empty() {
            continue;
        }
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (option, None),
        };
        let flag = match (name, value) {
            ("ro" | "read_only", None) => {
                read_only = true;
                continue;
            }
            // mount(8) passes "rw" for the default; a later rw undoes an earlier ro.
            ("rw", None) => {
                read_only = false;
                continue;
            }
            ("allow_other", None) => Some(("--allow-other", None)),
            ("nonempty", None) => Some(("--nonempty", None)),
            ("uid", Some(v)) => Some(("--uid", Some(v))),
            ("gid", Some(v)) => Some(("--gid", Some(v))),
            ("file_mode", Some(v)) => Some(("--file-mode", Some(v))),
            ("metrics_addr", Some(v)) => Some(("--metrics-addr", Some(v))),
            ("metrics_allow_remote", None) => Some(("--metrics-allow-remote", None)),
            ("config", Some(v)) => Some(("--config", Some(v))),
            ("ceph_conf", Some(v)) => Some(("--ceph-conf", Some(v))),
            ("ceph_user", Some(v)) => Some(("--ceph-user", Some(v))),
            ("memory_budget", Some(v)) => Some(("--memory-budget", Some(v))),
            ("max_chunk_size", Some(v)) => Some(("--max-chunk-size", Some(v))),
            ("cache_size", Some(v)) => Some(("--cache-size", Some(v))),
            ("log_file", Some(v)) => Some(("--log-file", Some(v))),
            ("log_level", Some(v)) => Some(("--log-level", Some(v))),
            _ if value.is_none() && IGNORED.contains(&name) => None,
            _ if IGNORED_PREFIXES.iter().any(|p| option.starts_with(p)) => None,
            _ if sloppy => {
                sloppy_ignored.push(option.to_string());
                None
            }
            _ => return Err(unknown_option(option, name, value)),
        };
        if let Some((flag, value)) = flag {
            if value == Some("") {
                return Err(CliError::Invalid(format!(
                    "mount option {name}= needs a value"
                )));
            }
            // Store flags go before the subcommand; the mount's own after it.
            let to = if matches!(
                flag,
                "--allow-other"
                    | "--nonempty"
                    | "--uid"
                    | "--gid"
                    | "--file-mode"
                    | "--metrics-addr"
                    | "--metrics-allow-remote"
            ) {
                &mut mount
            } else {
                &mut store
            };
            to.push(flag.into());
            to.extend(value.map(OsString::from));
        }
    }
    if read_only {
        mount.push("--read-only".into());
    }
    mount.push(mountpoint.clone());
    store.extend(mount);
    Ok(HelperCall {
        args: store,
        fake,
        sloppy_ignored,
    })
}

/// The store flags for a SOURCE: `leveldb:DIR` or `ceph:POOL[/NAMESPACE]`.
fn source_args(source: &OsStr) -> CliResult<Vec<OsString>> {
    let bad = |why: &str| {
        CliError::Invalid(format!(
            "source {:?}: {why} (expected leveldb:DIR or ceph:POOL[/NAMESPACE])",
            source.to_string_lossy()
        ))
    };
    let bytes = source.as_bytes();
    if let Some(dir) = bytes.strip_prefix(b"leveldb:") {
        if dir.is_empty() {
            return Err(bad("no directory"));
        }
        return Ok(vec![
            "--backend".into(),
            "leveldb".into(),
            "--data-dir".into(),
            OsStr::from_bytes(dir).into(),
        ]);
    }
    if let Some(rest) = bytes.strip_prefix(b"ceph:") {
        let rest = std::str::from_utf8(rest).map_err(|_| bad("not UTF-8"))?;
        let (pool, namespace) = match rest.split_once('/') {
            Some((p, ns)) => (p, Some(ns)),
            None => (rest, None),
        };
        if pool.is_empty() || namespace == Some("") {
            return Err(bad("empty pool or namespace"));
        }
        let mut args: Vec<OsString> = vec![
            "--backend".into(),
            "ceph".into(),
            "--pool".into(),
            pool.into(),
        ];
        if let Some(ns) = namespace {
            args.extend(["--namespace".into(), ns.into()]);
        }
        return Ok(args);
    }
    Err(bad("unknown store type"))
}

/// Runs the mount helper with its arguments (after argv[0]): the translated `cloudstore-fs` command
/// line in a child (this same program under its own name), whose exit code it returns.
fn run(args: &[OsString]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let call = match translate(args) {
        Ok(call) => call,
        Err(e) => {
            eprintln!("{HELPER_NAME}: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    for option in &call.sloppy_ignored {
        eprintln!("{HELPER_NAME}: warning: ignoring unknown mount option {option:?} (-s)");
    }
    if call.fake {
        return ExitCode::SUCCESS;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("{HELPER_NAME}: cannot find this program: {e}");
            return ExitCode::from(3);
        }
    };
    match std::process::Command::new(exe).args(&call.args).status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(3)),
            None => ExitCode::from(3),
        },
        Err(e) => {
            eprintln!("{HELPER_NAME}: cannot run cloudstore-fs mount: {e}");
            ExitCode::from(3)
        }
    }
}

fn unknown_option(option: &str, name: &str, value: Option<&str>) -> CliError {
    let known_without_value = [
        "ro",
        "read_only",
        "rw",
        "allow_other",
        "nonempty",
        "metrics_allow_remote",
    ];
    let known_with_value = [
        "config",
        "ceph_conf",
        "ceph_user",
        "memory_budget",
        "max_chunk_size",
        "cache_size",
        "log_file",
        "log_level",
        "uid",
        "gid",
        "file_mode",
        "metrics_addr",
    ];
    let why = if value.is_some() && known_without_value.contains(&name) {
        format!("{name} takes no value")
    } else if value.is_none() && known_with_value.contains(&name) {
        format!("{name} needs a value ({name}=...)")
    } else {
        "unknown option".into()
    };
    CliError::Invalid(format!(
        "mount option {option:?}: {why}; cloudstore-fs takes {}, {} and the standard ones \
         (rw, ro, defaults, noauto, nofail, _netdev, user, x-systemd.*, ...); nothing was mounted",
        known_without_value.join(", "),
        known_with_value.map(|k| format!("{k}=")).join(", "),
    ))
}

fn utf8(s: &OsStr, what: &str) -> CliResult<String> {
    s.to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::Invalid(format!("{what} {s:?} are not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> CliResult<HelperCall> {
        translate(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn argv(args: &[&str]) -> Vec<String> {
        call(args)
            .unwrap()
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sources_and_options_become_flags() {
        assert_eq!(
            argv(&[
                "leveldb:/var/lib/c",
                "/mnt/c",
                "-o",
                "rw,noatime,allow_other,memory_budget=1G,_netdev,x-systemd.automount"
            ]),
            [
                "--backend",
                "leveldb",
                "--data-dir",
                "/var/lib/c",
                "--memory-budget",
                "1G",
                "mount",
                "--daemon",
                "--allow-other",
                "/mnt/c"
            ]
        );
        assert_eq!(
            argv(&["ceph:pool/ns", "/m", "-n", "-oro,ceph_user=u,ceph_conf=/c"]),
            [
                "--backend",
                "ceph",
                "--pool",
                "pool",
                "--namespace",
                "ns",
                "--ceph-user",
                "u",
                "--ceph-conf",
                "/c",
                "mount",
                "--daemon",
                "--read-only",
                "/m"
            ]
        );
        assert!(!argv(&["leveldb:d", "/m", "-o", "ro,rw"]).contains(&"--read-only".into()));
        assert!(argv(&["leveldb:d", "/m", "-o", "read_only"]).contains(&"--read-only".into()));
        let owned = argv(&["leveldb:d", "/m", "-o", "uid=5,gid=6,file_mode=0600"]);
        let at = owned.iter().position(|a| a == "--uid").expect("--uid");
        assert_eq!(
            owned[at..at + 6],
            ["--uid", "5", "--gid", "6", "--file-mode", "0600"]
        );
        let metrics = argv(&["leveldb:d", "/m", "-o", "metrics_addr=127.0.0.1:9100"]);
        let at = metrics.iter().position(|a| a == "mount").expect("mount");
        assert!(
            metrics[at..].contains(&"--metrics-addr".into()),
            "{metrics:?}"
        );
        assert!(
            metrics[at..].contains(&"127.0.0.1:9100".into()),
            "{metrics:?}"
        );
    }

    #[test]
    fn bad_input_is_named() {
        let e = call(&["leveldb:d", "/m", "-o", "rw,noatime_typo"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("\"noatime_typo\""), "{e}");
        let e = call(&["leveldb:d", "/m", "-o", "config"]).unwrap_err();
        assert!(e.to_string().contains("config needs a value"), "{e}");
        let e = call(&["leveldb:d", "/m", "-o", "allow_other=1"]).unwrap_err();
        assert!(e.to_string().contains("takes no value"), "{e}");
        assert!(call(&["s3:b", "/m"]).is_err());
        assert!(call(&["ceph:", "/m"]).is_err());
        assert!(call(&["leveldb:d"]).is_err());
        let sloppy = call(&["leveldb:d", "/m", "-s", "-o", "bogus"]).unwrap();
        assert_eq!(sloppy.sloppy_ignored, ["bogus"]);
        assert!(call(&["leveldb:d", "/m", "-f"]).unwrap().fake);
    }

    #[test]
    fn the_helpers_are_known_by_their_names() {
        let of = |s: &str| Helper::from_argv0(OsStr::new(s));
        assert_eq!(of("/sbin/mount.cloudstore-fs"), Some(Helper::Mount));
        assert_eq!(of("mount.cloudstore-fs"), Some(Helper::Mount));
        assert_eq!(of("/sbin/umount.fuse.cloudstore-fs"), Some(Helper::Umount));
        assert_eq!(of("/usr/bin/cloudstore-fs"), None);
    }
}
