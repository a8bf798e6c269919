//! The Range request, with etcd 3.5's result shaping (`applierV3backend.Range`).
//!
//! etcd's order of operations, reproduced here:
//! 1. Resolve the revision (`<= 0` = current; future and compacted revisions fail).
//! 2. `count_only`: return only the number of keys in range.
//! 3. Fetch: when a sort order other than NONE or any min/max revision filter is given, fetch
//!    every key in range; otherwise fetch `limit + 1` keys (to learn `more`) in key order.
//!    `count` is always the number of keys in range, regardless of limit and filters.
//! 4. Drop kvs outside the min/max mod/create revision filters.
//! 5. Sort: NONE with a target other than KEY sorts ASCEND (on the fetched kvs only); sorts are
//!    stable, so ties keep ascending key order.
//! 6. Truncate to `limit`, setting `more` if anything was cut; `keys_only` empties values.
//!
//! The header revision is the current revision of the view, even for reads of older revisions.

use std::cmp::Ordering;

use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use cairn_proto::mvccpb::KeyValue;

use crate::error::MvccError;
use crate::key_range::KeyRange;
use crate::revision::resolve_read;
use crate::view::KvRead;

/// Serves `req` from `view`.
pub(crate) fn range(view: &dyn KvRead, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
    let current = view.current();
    let rev = resolve_read(req.revision, current, view.compact())?;
    let keys = KeyRange::new(&req.key, &req.range_end);
    let header = Some(ResponseHeader {
        revision: current,
        ..ResponseHeader::default()
    });

    if req.count_only {
        let count = view.count(keys, rev)?;
        return Ok(RangeResponse {
            header,
            kvs: Vec::new(),
            more: false,
            count,
        });
    }

    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fetch_all = req.sort_order != SortOrder::None as i32 || filtered;
    let fetch = if fetch_all || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let (mut kvs, count) = view.collect(keys, rev, fetch)?;

    if filtered {
        kvs.retain(|kv| {
            !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
                || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
                || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
                || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
        });
    }

    sort(&mut kvs, req.sort_order, req.sort_target);

    let mut more = false;
    if let Ok(limit) = usize::try_from(req.limit) {
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count,
    })
}

/// Sorts as etcd does; unknown enum values (rejected at the edge) leave the order alone.
fn sort(kvs: &mut [KeyValue], sort_order: i32, sort_target: i32) {
    let Ok(target) = SortTarget::try_from(sort_target) else {
        return;
    };
    let mut order = SortOrder::try_from(sort_order).unwrap_or(SortOrder::None);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(cmp),
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
    }
}
