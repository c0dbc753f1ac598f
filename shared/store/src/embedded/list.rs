//! Listing one level of the key tree with primary-key seeks.
//!
//! Keys are stored whole (`tenants/a/orgs/o1`), not as a tree, so the
//! children of `p` are found by walking the range `[p/, p0)` (`'0'` is the
//! byte after `'/'`): each step seeks the first key past the previous child,
//! and when that key lies deeper (`p/x/…`, the folder `x/`) the next seek
//! jumps past the whole folder to `p/x0`. A page of `limit` children costs at
//! most `limit + 2` seeks (one more to find the end, one to step out of the
//! folder `after` may point into), however many documents the folders hold.
//!
//! Order matches KV's byte-wise listing of cursors (`x` before `x-y` before
//! `x/`): for keys under one prefix, cutting each at its first `/` (inclusive)
//! never reorders them, so the seek order is the cursor order.

use rusqlite::{Connection, OptionalExtension, params};

use super::sql;
use crate::{Child, StoreError};

/// First key strictly after `?1` and below `?2`.
pub(super) const SEEK_AFTER: &str =
    "SELECT key FROM documents WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT 1";
/// First key at or after `?1` and below `?2` (the jump past a folder).
pub(super) const SEEK_FROM: &str =
    "SELECT key FROM documents WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT 1";

/// Above every key: keys hold only `[A-Za-z0-9._-/]`, all below DEL.
const ROOT_END: &str = "\u{7f}";

/// Up to `limit` children of `prefix` (`None`: the root) whose cursor sorts
/// after `after`.
pub(super) fn children(
    conn: &Connection,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Child>, StoreError> {
    let (base, end) = match prefix {
        Some(p) => (format!("{p}/"), format!("{p}0")),
        None => (String::new(), ROOT_END.to_owned()),
    };
    let mut seek_after = conn.prepare(SEEK_AFTER).map_err(sql)?;
    let mut seek_from = conn.prepare(SEEK_FROM).map_err(sql)?;
    let mut out = Vec::new();
    let mut bound = format!("{base}{}", after.unwrap_or(""));
    let mut inclusive = false;
    while out.len() < limit {
        let stmt = if inclusive {
            &mut seek_from
        } else {
            &mut seek_after
        };
        let Some(key) = stmt
            .query_row(params![bound, end], |r| r.get::<_, String>(0))
            .optional()
            .map_err(sql)?
        else {
            break;
        };
        let rest = key
            .strip_prefix(base.as_str())
            .ok_or_else(|| StoreError::Corrupt("range seek left its prefix".into()))?;
        let child = match rest.split_once('/') {
            Some((name, _)) => {
                bound = format!("{base}{name}0");
                inclusive = true;
                Child::Folder(name.to_owned())
            }
            None => {
                inclusive = false;
                let child = Child::Document(rest.to_owned());
                bound = key;
                child
            }
        };
        // Seeking past `p/{after}` can land inside the folder that `after`
        // itself names or points into (`after` = `x/` or `x/y`): that folder's
        // cursor is not after `after`, so it is skipped, once.
        if after.is_none_or(|a| child.cursor().as_str() > a) {
            out.push(child);
        }
    }
    Ok(out)
}
