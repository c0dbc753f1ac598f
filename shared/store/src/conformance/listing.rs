//! Cases on the key tree: listing, paging, and the key grammar.

use super::{Case, Outcome};
use crate::{Cas, Child, DocumentStore, Key, MAX_KEY_BYTES};

fn doc(name: &str) -> Child {
    Child::Document(name.to_owned())
}

fn folder(name: &str) -> Child {
    Child::Folder(name.to_owned())
}

async fn create_all<S: DocumentStore>(c: Case, store: &S, keys: &[&str]) -> Outcome {
    for k in keys {
        let key = c.key(k)?;
        c.eq(
            k,
            store
                .write(&key, k.as_bytes().to_vec(), Cas::CreateOnly)
                .await,
            Ok(1),
        )?;
    }
    Ok(())
}

/// One level of children: documents and folders, byte-wise sorted by cursor,
/// a name listed once per kind, sibling prefixes never mixed.
pub async fn list_children_and_folders<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("list_children_and_folders");
    create_all(
        c,
        &store,
        &[
            "top",
            "system/config",
            "tenants/a/orgs/o1/bots/b1",
            "tenants/b.c",
            "tenants/a",
            "tenants/ab/config",
            "tenants/a-x",
            "tenants/a/config",
            "tenants/Z",
            "tenants/a/orgs/o2",
        ],
    )
    .await?;
    let cases: [(Option<&str>, Vec<Child>); 8] = [
        (None, vec![folder("system"), folder("tenants"), doc("top")]),
        (
            Some("tenants"),
            // Upper case first, then `a` < `a-x` < `a/` < `ab/`: bytes, as KV sorts.
            vec![
                doc("Z"),
                doc("a"),
                doc("a-x"),
                folder("a"),
                folder("ab"),
                doc("b.c"),
            ],
        ),
        (Some("tenants/a"), vec![doc("config"), folder("orgs")]),
        (Some("tenants/a/orgs"), vec![folder("o1"), doc("o2")]),
        (Some("tenants/a/orgs/o1/bots"), vec![doc("b1")]),
        (Some("tenants/ab"), vec![doc("config")]),
        (Some("tenants/a/config"), vec![]),
        (Some("nothing/here"), vec![]),
    ];
    for (prefix, want) in cases {
        let prefix = prefix.map(|p| c.key(p)).transpose()?;
        let got = c.ok("list", store.list(prefix.as_ref(), None, 100).await)?;
        c.eq(&format!("children of {prefix:?}"), got, want)?;
    }
    Ok(())
}

/// The children of `prefix` as a reference model sees them: every key under
/// it cut at its first `/` (kept), deduplicated, sorted byte-wise.
fn expected_cursors(keys: &[String], prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(prefix))
        .map(|rest| match rest.find('/') {
            Some(i) => rest[..=i].to_owned(),
            None => rest.to_owned(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Paging with every `limit` from 1 to past the end visits every child exactly
/// once, in order, and only the last page is short.
pub async fn list_pages_cover_everything_once<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("list_pages_cover_everything_once");
    let mut keys: Vec<String> = Vec::new();
    for i in 0..12 {
        keys.push(format!("tenants/t{i:02}"));
        if i % 3 == 0 {
            keys.push(format!("tenants/t{i:02}/config"));
            keys.push(format!("tenants/t{i:02}-x"));
        }
    }
    // A large folder must cost one entry, not a page of its contents.
    keys.extend((0..25).map(|j| format!("tenants/big/bots/b{j:02}")));
    keys.push("tenantsx".to_owned());
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    create_all(c, &store, &refs).await?;

    let tenants = c.key("tenants")?;
    for (prefix, model_prefix, count) in [(Some(&tenants), "tenants/", 21), (None, "", 2)] {
        let want = expected_cursors(&keys, model_prefix);
        c.eq("model size", want.len(), count)?;
        for limit in 1..=count + 1 {
            let mut seen: Vec<String> = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                if pages > count + 2 {
                    return Err(c.fail(format!("limit {limit}: paging does not end")));
                }
                let page = c.ok(
                    "list page",
                    store.list(prefix, after.as_deref(), limit).await,
                )?;
                c.check(
                    &format!("limit {limit}: page too long"),
                    page.len() <= limit,
                )?;
                seen.extend(page.iter().map(Child::cursor));
                if page.len() < limit {
                    break;
                }
                after = page.last().map(Child::cursor);
            }
            c.eq(&format!("limit {limit}: pages"), pages, count / limit + 1)?;
            c.eq(&format!("limit {limit}: every child once"), &seen, &want)?;
        }
    }
    Ok(())
}

/// The parser refuses everything outside the grammar (the same `Key` type
/// serves every backend, so no backend ever sees such a path).
pub async fn keys_outside_the_grammar_are_refused<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("keys_outside_the_grammar_are_refused");
    let over = "a".repeat(MAX_KEY_BYTES + 1);
    let refused = [
        "",
        "/",
        "/tenants/t",
        "tenants/t/",
        "tenants//t",
        ".",
        "..",
        "tenants/../system",
        "tenants/./t",
        "tenants/..",
        "tenants%2F..%2Fsystem",
        "tenants/t%2Fx",
        "tenants/t\0",
        "tenants/\0/x",
        "tenants/t\n",
        "tenants/t\r\nx",
        "tenants/\u{1b}[0m",
        "tenants/\u{7f}",
        "tenants/t x",
        "tenants\\t",
        "tenants/t?x",
        "tenants/ü",
        over.as_str(),
    ];
    for bad in refused {
        if let Ok(key) = Key::parse(bad) {
            return Err(c.fail(format!("{bad:?} was accepted as {key}")));
        }
    }
    let listed = c.ok("list", store.list(None, None, 10).await)?;
    c.eq("nothing stored", listed, vec![])
}

/// Keys using every allowed character, odd-looking segments and the full
/// length are stored, read and listed unchanged.
pub async fn keys_at_the_edge_of_the_grammar_round_trip<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("keys_at_the_edge_of_the_grammar_round_trip");
    let longest = format!("edge/{}", "a".repeat(MAX_KEY_BYTES - "edge/".len()));
    let keys = [
        "edge/.../x",
        "edge/.hidden",
        "edge/-dash_under.score",
        "edge/ABCXYZabcxyz0189._-",
        longest.as_str(),
    ];
    create_all(c, &store, &keys).await?;
    for k in keys {
        let key = c.key(k)?;
        let doc = c.ok(k, store.read(&key, None).await)?;
        c.eq(k, doc.body.as_slice(), k.as_bytes())?;
    }
    let edge = c.key("edge")?;
    let got = c.ok("list", store.list(Some(&edge), None, 10).await)?;
    let mut want = vec![
        doc("-dash_under.score"),
        doc(".hidden"),
        folder("..."),
        doc("ABCXYZabcxyz0189._-"),
        doc(&longest["edge/".len()..]),
    ];
    want.sort_by_key(Child::cursor);
    c.eq("listed", got, want)
}
