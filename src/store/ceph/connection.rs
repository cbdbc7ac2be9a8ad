//! The connection to the cluster: calls guarded against an unreachable cluster (fail at once
//! while a thread waits for it to answer), a deleted pool (named in every error) and a pool
//! created again (reconnected).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::rados::{Cluster, ConnectParams, PoolState};

use super::{CephStore, BACKEND};
use crate::store::{Result, StoreError};

impl CephStore {
    pub(super) fn cluster(&self) -> Result<Arc<Cluster>> {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed { backend: BACKEND })
    }

    /// Runs `f` on the cluster, then makes sure its answer is not the pool's absence in
    /// disguise: librados answers an operation on a deleted pool like one on a missing object
    /// (ENOENT, an empty listing). The cluster map, which the client keeps up to date without a
    /// round trip, tells them apart: a deleted pool fails the operation naming the pool, and a
    /// pool created again under the same name is picked up by reconnecting, and `f` runs again.
    pub(super) fn guarded<T>(
        &self,
        op: &'static str,
        f: impl Fn(&Cluster) -> Result<T>,
    ) -> Result<T> {
        let cluster = self.cluster()?;
        if self.unreachable.load(Ordering::Acquire) {
            return Err(StoreError::Backend {
                backend: BACKEND,
                op,
                key: self.location.clone(),
                errno: libc::EIO,
                message: format!(
                    "the cluster gave no answer within {}s to an earlier call and has not \
                     answered since: failing at once (nothing was sent) until it does",
                    self.op_timeout.as_secs()
                ),
            });
        }
        let out = f(&cluster);
        if matches!(out, Err(StoreError::TimedOut { .. })) {
            self.watch_until_it_answers(&cluster);
        }
        match cluster.pool_state() {
            PoolState::Same => {
                if self.pool_gone.swap(false, Ordering::Relaxed) {
                    log::warn!("{BACKEND}: {} is back", self.location);
                }
                out
            }
            PoolState::Gone => Err(self.gone(op)),
            PoolState::Recreated => {
                drop(cluster);
                let cluster = self.reconnect(op)?;
                f(&cluster)
            }
        }
    }

    /// After a timeout: calls fail at once until the cluster answers a probe again (a thread
    /// asks it, one timeout at a time, then every 250 ms).
    pub(super) fn watch_until_it_answers(&self, cluster: &Arc<Cluster>) {
        if self.unreachable.swap(true, Ordering::AcqRel) {
            return;
        }
        log::warn!(
            "{BACKEND}: no answer within {}s: operations fail at once until the cluster \
             answers again",
            self.op_timeout.as_secs()
        );
        let (cluster, flag) = (cluster.clone(), self.unreachable.clone());
        let spawned = std::thread::Builder::new()
            .name("ceph-probe".into())
            .spawn(move || {
                while !cluster.answers() {
                    std::thread::sleep(Duration::from_millis(250));
                }
                flag.store(false, Ordering::Release);
                log::warn!("{BACKEND}: the cluster answers again");
            });
        if spawned.is_err() {
            self.unreachable.store(false, Ordering::Release);
        }
    }

    /// The error for any operation while the pool does not exist; logged once.
    pub(super) fn gone(&self, op: &'static str) -> StoreError {
        let err = StoreError::Backend {
            backend: BACKEND,
            op,
            key: self.location.clone(),
            errno: libc::EIO,
            message: format!(
                "the pool no longer exists (deleted?); every operation fails until a pool \
                 named {:?} is created again, which the mount then picks up",
                self.params.pool
            ),
        };
        if !self.pool_gone.swap(true, Ordering::Relaxed) {
            log::error!("{err}");
        }
        err
    }

    /// Connects again (the pool was created anew under its name): later operations use the new
    /// pool. Several threads may find it at once; one reconnects.
    pub(super) fn reconnect(&self, op: &'static str) -> Result<Arc<Cluster>> {
        let _one = self.reconnecting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.cluster()?;
        match current.pool_state() {
            PoolState::Same => return Ok(current),
            PoolState::Gone => return Err(self.gone(op)),
            PoolState::Recreated => {}
        }
        // The access was probed at mount: a reconnect only has to reach the new pool.
        let params = ConnectParams::of(&self.params, false, &self.trips);
        let cluster = Arc::new(Cluster::connect(&params).map_err(|message| {
            let err = StoreError::Backend {
                backend: BACKEND,
                op,
                key: self.location.clone(),
                errno: libc::EIO,
                message: format!(
                    "the pool was created again and reconnecting to it failed: {message}"
                ),
            };
            log::error!("{err}");
            err
        })?);
        let mut slot = self.cluster.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            return Err(StoreError::Closed { backend: BACKEND });
        }
        *slot = Some(cluster.clone());
        self.pool_gone.store(false, Ordering::Relaxed);
        log::warn!(
            "{BACKEND}: {} was deleted and created again: reconnected to the new pool",
            self.location
        );
        Ok(cluster)
    }
}
