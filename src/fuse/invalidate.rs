//! Dropping what the kernel caches of an inode after a change.

use fuser::INodeNo;

use crate::fs::ChunkFs;

/// Hands the core a way to drop the kernel's cache of an inode after a change (its pages, used
/// by mmap, and its attributes). The notifications go out from a thread of their own: one sent
/// from a request handler could wait on a page that a pending read of ours holds locked.
pub fn wire_invalidation(core: &ChunkFs, notifier: fuser::Notifier) {
    // Attributes alone (offset -1: no page is touched) are dropped at once, from the request
    // handler: an open that found a newer version than the kernel's attributes must not be
    // followed by a stat of the old size.
    let attrs = notifier.clone();
    core.set_attr_invalidator(Box::new(move |ino| {
        let _ = attrs.inval_inode(INodeNo(ino), -1, 0);
    }));
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let spawned = std::thread::Builder::new()
        .name("inval".into())
        .spawn(move || {
            for ino in rx {
                match notifier.inval_inode(INodeNo(ino), 0, 0) {
                    Ok(()) => {}
                    // The kernel does not know the inode (never looked up, or forgotten).
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        log::debug!("invalidating inode {ino}: {e}; no more invalidations");
                        return;
                    }
                }
            }
        });
    match spawned {
        Ok(_) => core.set_invalidator(Box::new(move |ino| {
            let _ = tx.send(ino);
        })),
        Err(e) => log::warn!("no kernel cache invalidation (cannot start its thread: {e})"),
    }
}
