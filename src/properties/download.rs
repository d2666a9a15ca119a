//! The `docker cp` download filter's properties, apart because they judge a
//! whole archive three times (whole, in chunks, and its own output again).

/// The `docker cp` download filter: `data` is a chunk size and a tar archive
/// as the daemon might send it for `GET /containers/x/archive?path=/srv/app`.
/// - what the filter passes on, read again by the same reader, is exactly the
///   entries it judged allowed, in order, and filtering it again changes
///   nothing;
/// - no entry passed on maps to a path the rules refuse, or lies outside the
///   requested directory; no hard link passed on points at a withheld entry;
/// - the answer does not depend on how the stream was cut into chunks.
pub fn download(data: &[u8]) {
    use crate::files::download::{ArchiveEntry, DownloadScope, EntryKind, TarFilter, Withholder};
    use bytes::BytesMut;

    let Some((&chunk, tar)) = data.split_first() else {
        return;
    };
    let scope = DownloadScope::new("/srv/app", "/srv/app", "/srv/real");
    let refused = |path: &str| {
        path.split('/')
            .any(|c| c == "secret" || c.ends_with(".key"))
    };

    // Filter `tar` in chunks of `size`, judging with the rules.
    let filter = |size: usize| {
        let mut withholder = Withholder::new(scope.clone(), |req: &str, res: &str| {
            !refused(req) && !refused(res)
        });
        let mut allowed: Vec<ArchiveEntry> = Vec::new();
        let mut withheld = std::collections::HashSet::new();
        let mut filter = TarFilter::new();
        let mut out = BytesMut::new();
        let mut judge = |e: &ArchiveEntry| {
            let ok = withholder.judge(e);
            if ok && e.kind == EntryKind::HardLink {
                // A hard link names an entry before it in the archive.
                let target = e.link_name.as_deref().unwrap_or("").trim_end_matches('/');
                assert!(
                    !withheld.contains(target),
                    "{e:?} links to a withheld entry"
                );
            }
            if ok {
                allowed.push(e.clone());
            } else if let Some(name) = &e.name {
                withheld.insert(name.trim_end_matches('/').to_string());
            }
            ok
        };
        let mut result = Ok(());
        for piece in tar.chunks(size.max(1)) {
            result = filter.push(piece, &mut out, &mut judge);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = filter.finish();
        }
        (result, out, allowed)
    };

    let (result, out, allowed) = filter(tar.len());
    let (chunked_result, chunked_out, chunked_allowed) = filter(usize::from(chunk) + 1);
    assert_eq!(
        result.is_ok(),
        chunked_result.is_ok(),
        "{result:?} / {chunked_result:?}"
    );
    if result.is_err() {
        return;
    }
    assert_eq!(out, chunked_out, "chunking changed the output");
    assert_eq!(allowed, chunked_allowed);

    // Read what was passed on, letting everything through.
    let mut seen: Vec<ArchiveEntry> = Vec::new();
    let mut again = BytesMut::new();
    let mut reread = TarFilter::new();
    reread
        .push(&out, &mut again, &mut |e: &ArchiveEntry| {
            seen.push(e.clone());
            true
        })
        .expect("the filtered archive reads again");
    reread.finish().expect("the filtered archive ends cleanly");
    assert_eq!(
        seen, allowed,
        "the output holds exactly the allowed entries"
    );
    assert_eq!(again, out, "filtering is idempotent");

    for entry in &seen {
        let name = entry.name.as_deref().expect("non-UTF-8 names are withheld");
        let (requested, resolved) = scope.paths(name).expect("inside the requested directory");
        assert!(
            !refused(&requested) && !refused(&resolved),
            "{entry:?} was passed on"
        );
        if entry.kind == EntryKind::HardLink {
            let target = entry
                .link_name
                .as_deref()
                .expect("a hard link names its target");
            assert!(scope.paths(target).is_some(), "{entry:?} links outside");
        }
    }
}
