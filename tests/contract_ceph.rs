//! The contract suite on the Ceph RADOS backend, against the real cluster named by
//! CLOUDSTORE_TEST_CEPH_CONF (scripts/ceph-cluster.sh starts one), each test in a namespace of
//! its own.
#![cfg(feature = "ceph")]

mod ceph_support;
mod contract;

use std::sync::Arc;

use cloudstore_fs::store::{self, Cloudstore};

struct Ceph {
    cluster: ceph_support::TestCluster,
}

impl contract::Harness for Ceph {
    fn open(&self) -> Arc<dyn Cloudstore> {
        store::open(&self.cluster.config(self.max_chunk_size())).expect("open ceph")
    }

    fn max_chunk_size(&self) -> u64 {
        17 << 20
    }
}

fn ceph() -> Option<Ceph> {
    ceph_support::cluster("contract").map(|cluster| Ceph { cluster })
}

contract_tests!(ceph);
