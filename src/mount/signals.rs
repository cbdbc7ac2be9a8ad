//! SIGINT, SIGTERM and SIGHUP stop the mount cleanly: commit everything pending, then unmount
//! (a busy mount is detached lazily and served until its last user leaves).
//!
//! The signals are caught by signal-hook (its handler only writes to a pipe) and blocked in
//! the thread that installs them before the FUSE threads are spawned, so those inherit the
//! block; one thread unblocks them and acts. No signal can then end the process in the middle of
//! a commit, whichever thread it lands on (threads started earlier, like librados', run only the
//! handler).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use super::mountinfo::{find_mount, Ours};
use super::teardown::{detach, umount2};
use crate::fs::ChunkFs;
use crate::sys::mounts::Unmount;

/// Signals that stop the mount.
const STOP_SIGNALS: [libc::c_int; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The stop signals, caught and blocked in the calling thread (see the module doc).
pub(super) struct StopSignals(Signals);

/// The thread that turns a stop signal into commit + unmount.
pub(super) struct Waiter {
    handle: Handle,
    thread: JoinHandle<()>,
}

/// Blocks (`SIG_BLOCK`) or unblocks the stop signals in the calling thread.
fn mask_stop_signals(how: SigmaskHow) {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = pthread_sigmask(how, Some(&set), None) {
        log::error!("pthread_sigmask: {e}");
    }
}

impl StopSignals {
    /// Catches the stop signals; call before spawning the FUSE threads.
    pub fn install() -> io::Result<StopSignals> {
        let signals = Signals::new(STOP_SIGNALS)?;
        mask_stop_signals(SigmaskHow::SIG_BLOCK);
        Ok(StopSignals(signals))
    }

    /// Starts the thread that commits and unmounts on the first stop signal. `dev` is our
    /// mount's device ("major:minor"): a mount found at the mountpoint with another device (the
    /// user unmounted ours and mounted something else there) is not touched.
    pub fn spawn_waiter(
        self,
        core: Arc<ChunkFs>,
        mountpoint: &Path,
        dev: Option<String>,
    ) -> io::Result<Waiter> {
        let mut signals = self.0;
        let handle = signals.handle();
        let mountpoint: PathBuf = mountpoint.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                mask_stop_signals(SigmaskHow::SIG_UNBLOCK);
                let mut stopping = false;
                for sig in signals.forever() {
                    if stopping {
                        log::warn!("signal {sig}: already unmounting");
                        continue;
                    }
                    stopping = true;
                    super::systemd::stopping(&format!(
                        "signal {sig}: committing pending writes, then unmounting {}",
                        mountpoint.display()
                    ));
                    log::warn!(
                        "signal {sig}: committing pending writes, then unmounting {}",
                        mountpoint.display()
                    );
                    if let Err(e) = core.commit_all() {
                        log::error!("commit before unmount: {e}");
                    }
                    let ours = find_mount(&mountpoint)
                        .is_some_and(|m| m.is_ours() && dev.as_ref().is_none_or(|d| *d == m.dev));
                    if !ours {
                        log::info!(
                            "{}: already unmounted; the session ends",
                            mountpoint.display()
                        );
                        continue;
                    }
                    match umount2(&mountpoint, Unmount::Normal) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&mountpoint),
                        Err(e) => {
                            log::error!("unmount {}: {e}; detaching", mountpoint.display());
                            detach(&mountpoint);
                        }
                    }
                }
            })?;
        Ok(Waiter { handle, thread })
    }
}

impl Waiter {
    /// Ends the thread (the mount is gone).
    pub fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
