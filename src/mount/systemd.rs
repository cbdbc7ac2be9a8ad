//! systemd's readiness protocol (sd_notify(3)): with `$NOTIFY_SOCKET` set, the daemon sends
//! `READY=1` once the mount answers, `STOPPING=1` when it starts draining, and `STATUS=` lines
//! that `systemctl status` shows. One datagram each, to a path or an abstract socket (`@name`);
//! without the variable nothing is sent. A failure to send is logged once, never fatal.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable systemd sets for Type=notify services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

static WARNED: AtomicBool = AtomicBool::new(false);

/// Sends `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`, if set.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let sent = (|| {
        let addr = match path.as_encoded_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = sent {
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!("systemd notification to {path:?} failed: {e}");
        }
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    notify(&format!(
        "READY=1\nSTATUS={status}\nMAINPID={}",
        std::process::id()
    ));
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    notify(&format!("STOPPING=1\nSTATUS={status}"));
}

/// A `STATUS=` line alone.
pub fn status(status: &str) {
    notify(&format!("STATUS={status}"));
}
