//! Side records (`Cloudstore::side_get`): one object each, `cloudstore-fs.side.NAME`, in the
//! pool and namespace of the chunks. The name is not lowercase hex, so it is never a chunk:
//! listings skip it, and no key maps to it.

use std::ffi::CString;
use std::time::SystemTime;

use super::{CephStore, ReadRequest};
use crate::store::Result;

fn side_object(name: &str) -> CString {
    CString::new(format!("cloudstore-fs.side.{name}")).expect("side names have no NUL byte")
}

impl CephStore {
    pub(super) fn side_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.guarded("read", |cluster| {
            let mut req = [ReadRequest {
                oid: side_object(name),
                start: 0,
                end: None,
                result: None,
            }];
            self.read_all(cluster, &mut req);
            req[0]
                .result
                .take()
                .expect("read_all fills every result")
                .map_err(|e| self.error("read side record", name.as_bytes(), e, None))
        })
    }

    pub(super) fn side_write(&self, name: &str, value: &[u8]) -> Result<()> {
        self.guarded("write", |cluster| {
            let oid = side_object(name);
            if value.is_empty() {
                return match cluster.remove(&oid) {
                    Ok(()) | Err(libc::ENOENT) => Ok(()),
                    Err(e) => Err(self.error("remove side record", name.as_bytes(), e, None)),
                };
            }
            let results = self.write_all(cluster, &[(oid, value)], SystemTime::now());
            results[0]
                .map_err(|e| self.error("write side record", name.as_bytes(), e, Some(value.len())))
        })
    }
}
