//! Processes and threads: who a thread belongs to, what a process runs and whether it lives.

use nix::sys::signal::kill;
use nix::unistd::Pid;
use procfs::process::Process;

/// This process's real uid.
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// This process's real gid.
pub fn gid() -> u32 {
    nix::unistd::getgid().as_raw()
}

/// This process's effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// The process (thread group) thread `tid` belongs to; `None` when the thread is gone.
pub fn thread_group(tid: u32) -> Option<u32> {
    let tgid = process(tid)?.status().ok()?.tgid;
    u32::try_from(tgid).ok()
}

/// The command line of process `pid` (empty when it cannot be read, or for a zombie).
pub fn command_line(pid: u32) -> Vec<String> {
    process(pid)
        .and_then(|p| p.cmdline().ok())
        .unwrap_or_default()
}

/// The command name and state letter ('R', 'S', 'Z', ...) of process `pid`.
pub fn command_and_state(pid: u32) -> Option<(String, char)> {
    let stat = process(pid)?.stat().ok()?;
    Some((stat.comm, stat.state))
}

/// Whether process `pid` exists (a zombie does) and may be signalled by us.
pub fn exists(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|p| p > 0 && kill(Pid::from_raw(p), None).is_ok())
}

/// Whether process `pid` exists and has not finished exiting: some thread of it is not yet a
/// zombie. A killed process's main thread turns zombie while its other threads still run their
/// exit, and the files they share (a FUSE connection) are closed only when the last is done.
pub fn running(pid: u32) -> bool {
    if !exists(pid) {
        return false;
    }
    let Some(tasks) = process(pid).and_then(|p| p.tasks().ok()) else {
        return command_and_state(pid).is_none_or(|(_, state)| !matches!(state, 'Z' | 'X'));
    };
    tasks.flatten().any(|task| {
        task.stat()
            .is_ok_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
    })
}

/// PF_EXITING in a thread's stat flags: the thread is in do_exit.
const PF_EXITING: u32 = 0x4;
/// SIGKILL's bit in the pending-signal masks of a thread's status.
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

/// Whether process `pid` is dying: every thread of it is a zombie, is exiting (PF_EXITING) or
/// has SIGKILL pending (or none is left to look at). Anything else lives.
pub fn dying(pid: u32) -> bool {
    let Some(tasks) = process(pid).and_then(|p| p.tasks().ok()) else {
        return true;
    };
    !tasks.flatten().any(|task| {
        // A thread whose stat cannot be read is gone; one without a readable status has no
        // SIGKILL we can see.
        let Ok(stat) = task.stat() else {
            return false;
        };
        let pending = task.status().map_or(0, |s| s.sigpnd | s.shdpnd);
        thread_alive(stat.state, stat.flags, pending)
    })
}

/// Whether a thread in `state` with stat `flags` and `pending` signals is alive.
fn thread_alive(state: char, flags: u32, pending: u64) -> bool {
    !matches!(state, 'Z' | 'X' | 'x') && flags & PF_EXITING == 0 && pending & SIGKILL_BIT == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_alive_unless_exiting_zombie_or_killed() {
        assert!(thread_alive('S', 0x400040, 0));
        assert!(thread_alive('D', 0x400040, 0));
        assert!(!thread_alive('Z', 0x400040, 0));
        assert!(!thread_alive('D', 0x400044, 0));
        assert!(!thread_alive('S', 0x400040, 0x100));
    }

    #[test]
    fn this_process_lives_and_a_reaped_one_is_gone() {
        let me = std::process::id();
        assert!(running(me) && !dying(me));
        assert_eq!(thread_group(me), Some(me));
        let (comm, state) = command_and_state(me).unwrap();
        assert!(!comm.is_empty() && state != 'Z');
        assert!(!command_line(me).is_empty());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid) && dying(pid));
        assert_eq!(thread_group(pid), None);
    }

    #[test]
    fn another_thread_belongs_to_this_process() {
        let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32)
            .join()
            .unwrap();
        // The thread is gone: no answer.
        assert_eq!(thread_group(tid), None);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_eq!(thread_group(tid), Some(std::process::id()));
        drop(done_tx);
        t.join().unwrap();
    }
}
