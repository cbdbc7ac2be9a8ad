//! The listing that read-ahead follows: names in listing order and in name order, and where
//! an open stands in each.

use std::collections::{btree_map, BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

pub(super) type Key = Arc<[u8]>;

/// The two orders an open can follow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Order {
    Listing,
    Name,
}

pub(super) const ORDERS: [Order; 2] = [Order::Listing, Order::Name];

/// The most recent listing: names in listing order, their positions, and the same in name order.
#[derive(Default)]
pub(super) struct Listing {
    pub(super) id: u64,
    pub(super) order: Vec<(Key, u64)>,
    pub(super) index: HashMap<Key, usize>,
    pub(super) by_name: BTreeMap<Key, u64>,
}

impl Listing {
    /// Up to `n` names (with listed sizes) of `order` from `start`.
    pub(super) fn walk(&self, order: Order, start: Start<'_>, n: usize) -> Vec<(Key, u64)> {
        match order {
            Order::Listing => {
                let first = match start {
                    Start::Beginning => 0,
                    Start::At(k) => match self.index.get(k) {
                        Some(&i) => i,
                        None => return Vec::new(),
                    },
                    Start::After(k) => match self.index.get(k) {
                        Some(&i) => i + 1,
                        None => return Vec::new(),
                    },
                };
                self.order.iter().skip(first).take(n).cloned().collect()
            }
            Order::Name => self
                .names_from(start)
                .take(n)
                .map(|(k, &s)| (k.clone(), s))
                .collect(),
        }
    }
}

impl Listing {
    /// The names in name order from `start` on.
    pub(super) fn names_from(&self, start: Start<'_>) -> btree_map::Range<'_, Key, u64> {
        let lower = match start {
            Start::Beginning => Bound::Unbounded,
            Start::At(k) => Bound::Included(k),
            Start::After(k) => Bound::Excluded(k),
        };
        self.by_name.range::<[u8], _>((lower, Bound::Unbounded))
    }

    /// Whether `key` is among the first `n` names of `order` after `start` (no allocation: this
    /// runs on every open).
    pub(super) fn within(&self, order: Order, start: Start<'_>, n: usize, key: &[u8]) -> bool {
        match order {
            Order::Listing => {
                let Some(&at) = self.index.get(key) else {
                    return false;
                };
                let first = match start {
                    Start::Beginning => 0,
                    Start::At(k) => self.index.get(k).copied().unwrap_or(usize::MAX),
                    Start::After(k) => self.index.get(k).map_or(usize::MAX, |i| i + 1),
                };
                at >= first && at - first < n
            }
            Order::Name => self.names_from(start).take(n).any(|(k, _)| **k == *key),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Start<'a> {
    Beginning,
    At(&'a [u8]),
    After(&'a [u8]),
}
