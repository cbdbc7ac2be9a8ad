//! Helpers shared by the integration tests that mount the filesystem.
pub mod chunks;
pub mod files;
pub mod mount;
pub mod refusals;

/// Instantiates each case once per backend: `mount_suite!(leveldb, Store::Leveldb, [a, b])`
/// makes `leveldb::a` and `leveldb::b`, each running `a(&mut TestMount)` on a fresh mount. A case
/// may name extra store options for its mount: `[a, b(&["--max-chunk-size", "4M"])]`.
#[macro_export]
macro_rules! mount_suite {
    ($backend:ident, $store:expr, [$($case:ident $(($args:expr))?),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    let test = concat!(stringify!($backend), "::", stringify!($case));
                    #[allow(unused_variables)]
                    let args: &[&str] = &[];
                    $(let args: &[&str] = $args;)?
                    if let Some(mut m) = common::mount::TestMount::with_args($store, test, args) {
                        super::$case(&mut m);
                    }
                }
            )*
            use super::common;
        }
    };
}

/// The same cases over both backends: `mount_suites!([a, b])` makes `leveldb::a`, `leveldb::b`,
/// `ceph::a` and `ceph::b` (see [`mount_suite!`]).
#[macro_export]
macro_rules! mount_suites {
    ([$($cases:tt)*]) => {
        mount_suite!(leveldb, common::mount::Store::Leveldb, [$($cases)*]);
        mount_suite!(ceph, common::mount::Store::Ceph, [$($cases)*]);
    };
}
