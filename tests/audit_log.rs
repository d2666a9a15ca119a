//! Acceptance tests of the decision log: chain integrity, tamper detection,
//! group commit, queries, pruning and recovery from write failures.

use std::time::Duration;

use portcullis::record::testing::{
    corrupt_record_byte, delete_head_raw, delete_record_raw, indexed_seqs, swap_records_raw,
};
use portcullis::record::{
    AuditFilter, AuditLog, AuditOptions, AuditRecord, BreakKind, FailPoint, Order, PrunePolicy,
    RecordError,
};

fn temp_db() -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    (dir, db)
}

fn rec(caller: &str, action: &str, target: &str, allowed: bool) -> AuditRecord {
    AuditRecord {
        request_id: format!("req-{caller}-{action}-{target}"),
        caller: caller.into(),
        identified_by: format!("token:{caller}"),
        action: action.into(),
        target_id: Some(format!("{target}-id")),
        target_name: Some(target.into()),
        method: "POST".into(),
        path: format!("/containers/{target}/start"),
        allowed,
        enforced: true,
        reasons: vec![if allowed {
            "trust t1 grants".into()
        } else {
            "no trust".into()
        }],
        policy_version: "p1".into(),
        ..Default::default()
    }
}

async fn fill(log: &AuditLog, n: u64) {
    for i in 0..n {
        let seq = log
            .append(rec(
                &format!("svc{}", i % 3),
                "container.start",
                "web",
                i % 2 == 0,
            ))
            .await
            .unwrap();
        assert_eq!(seq, i + 1);
    }
}

#[tokio::test]
async fn append_assigns_seq_and_time_and_verifies() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 10).await;
    let got = log.get(3).unwrap().unwrap();
    assert_eq!(got.seq, 3);
    assert!(got.time.ends_with('Z'), "time {}", got.time);
    assert_eq!(got.caller, "svc2");
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked, 10);
    assert_eq!(report.last_good_seq, Some(10));
    assert_eq!(log.head().0, 10);
    assert_eq!(log.head().1, report.head_hash);
}

#[tokio::test]
async fn bad_time_is_refused_without_consuming_a_seq() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    let mut r = rec("a", "x", "t", true);
    r.time = "yesterday".into();
    assert!(matches!(log.append(r).await, Err(RecordError::Invalid(_))));
    let mut r = rec("a", "x", "t", true);
    r.time = "2026-01-02T03:04:05.5+02:00".into();
    assert_eq!(log.append(r).await.unwrap(), 1);
    assert_eq!(
        log.get(1).unwrap().unwrap().time,
        "2026-01-02T03:04:05.5+02:00"
    );
}

#[tokio::test]
async fn tampered_byte_is_named_and_open_refuses_until_allowed() {
    let (_d, db) = temp_db();
    {
        let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
        fill(&log, 20).await;
        log.close();
    }
    // A byte inside the caller string of record 7 (after version, hash, seq, time).
    corrupt_record_byte(&db, 7, 1 + 32 + 8 + 4 + 3).unwrap();
    let report = portcullis::record::verify_db(&db).unwrap();
    let b = report.broken.clone().expect("break detected");
    assert_eq!((b.seq, b.kind), (7, BreakKind::Changed), "{b}");
    assert_eq!(report.last_good_seq, Some(6));

    // Record 7 is in the tail that open() verifies.
    match AuditLog::open(&db, AuditOptions::default()) {
        Err(RecordError::BrokenChain(b)) => assert_eq!(b.seq, 7),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("open accepted a broken chain"),
    }
    let opts = AuditOptions {
        allow_broken_chain: true,
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).unwrap();
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), 21);
    // The break stays visible.
    assert_eq!(log.verify().unwrap().broken.unwrap().seq, 7);
}

#[tokio::test]
async fn tampered_stored_hash_and_seq_bytes_are_changes() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 5).await;
    corrupt_record_byte(&db, 2, 5).unwrap(); // inside the stored hash
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (2, BreakKind::Changed));
    corrupt_record_byte(&db, 2, 5).unwrap(); // restore
    assert!(log.verify().unwrap().is_ok());
    corrupt_record_byte(&db, 4, 1 + 32 + 7).unwrap(); // low byte of the embedded seq: 4 -> 5
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (4, BreakKind::Changed), "{b}");
}

#[tokio::test]
async fn deleted_record_is_missing() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 10).await;
    delete_record_raw(&db, 4).unwrap();
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (4, BreakKind::Missing), "{b}");
}

#[tokio::test]
async fn truncated_tail_is_missing() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 10).await;
    log.close();
    delete_record_raw(&db, 10).unwrap();
    let b = portcullis::record::verify_db(&db).unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (10, BreakKind::Missing), "{b}");
    assert!(matches!(
        AuditLog::open(&db, AuditOptions::default()),
        Err(RecordError::BrokenChain(_))
    ));
    // Allowed to run on, the log does not reuse the lost seq: the gap stays visible.
    let opts = AuditOptions {
        allow_broken_chain: true,
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).unwrap();
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), 11);
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (10, BreakKind::Missing), "{b}");
}

#[tokio::test]
async fn removed_head_is_reported() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 3).await;
    delete_head_raw(&db).unwrap();
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!(b.kind, BreakKind::HeadMismatch);
}

#[tokio::test]
async fn swapped_records_are_reordered() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 10).await;
    swap_records_raw(&db, 5, 8).unwrap();
    let b = log.verify().unwrap().broken.unwrap();
    assert_eq!((b.seq, b.kind), (5, BreakKind::Reordered), "{b}");
    assert!(b.detail.contains("record 8"), "{b}");
}

#[tokio::test]
async fn prune_writes_checkpoint_and_chain_still_verifies() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 50).await;
    let head_before = log.head();

    let r = log.prune(PrunePolicy::BeforeSeq(21)).unwrap();
    assert_eq!(r.removed, 20);
    assert_eq!(r.checkpoint.first_seq, 21);
    assert!(log.get(20).unwrap().is_none());
    assert!(log.get(21).unwrap().is_some());
    let rep = log.verify().unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!((rep.from_seq, rep.checked), (21, 30));
    assert_eq!(rep.head_hash, head_before.1);

    let r = log.prune(PrunePolicy::MaxRecords(10)).unwrap();
    assert_eq!(
        (r.removed, r.checkpoint.first_seq, r.checkpoint.pruned_total),
        (20, 41, 40)
    );
    // Index entries went with the records.
    let page = log
        .query(&AuditFilter {
            caller: Some("svc0".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(page.records.iter().all(|r| r.seq >= 41));
    assert_eq!(
        page.records.len(),
        (41..=50).filter(|s| (s - 1) % 3 == 0).count()
    );

    // Appends continue the chain; a restart verifies the checkpoint link and the tail.
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), 51);
    log.close();
    drop(log);
    let opts = AuditOptions {
        verify_tail: 3,
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).unwrap();
    assert!(log.verify().unwrap().is_ok());

    // Pruning everything leaves a checkpoint equal to the head.
    let (seq, hash) = log.head();
    let r = log.prune(PrunePolicy::MaxRecords(0)).unwrap();
    assert_eq!(r.checkpoint.first_seq, seq + 1);
    assert_eq!(hex::encode(r.checkpoint.prev_hash), hash);
    assert!(log.verify().unwrap().is_ok());
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), seq + 1);
    assert!(log.verify().unwrap().is_ok());
}

#[tokio::test]
async fn prune_by_age_keeps_recent_records() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    for _ in 0..5 {
        let mut r = rec("old", "a", "t", true);
        r.time = "2020-01-01T00:00:00Z".into();
        log.append(r).await.unwrap();
    }
    fill_from(&log, 3).await;
    let r = log
        .prune(PrunePolicy::MaxAge(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(r.removed, 5);
    assert!(log.verify().unwrap().is_ok());
}

async fn fill_from(log: &AuditLog, n: u64) {
    for _ in 0..n {
        log.append(rec("new", "a", "t", true)).await.unwrap();
    }
}

#[tokio::test]
async fn prune_refuses_to_delete_damaged_records() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 10).await;
    corrupt_record_byte(&db, 3, 50).unwrap();
    assert!(matches!(
        log.prune(PrunePolicy::BeforeSeq(6)),
        Err(RecordError::Corrupt(_))
    ));
    assert!(
        log.get(1).unwrap().is_some(),
        "nothing was pruned past the damage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_contiguous_seqs_and_share_flushes() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..100 {
                seqs.push(
                    log.append(rec(&format!("task{t}"), "a", &format!("c{i}"), true))
                        .await
                        .unwrap(),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a task's appends are ordered"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=3200).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.records_committed, 3200);
    assert!(
        stats.batches_committed < 3200,
        "flushes were shared: {stats:?}"
    );
    assert!(log.verify().unwrap().is_ok());
}

#[tokio::test]
async fn write_failure_is_unavailable_then_recovers_with_a_consistent_chain() {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    fill(&log, 3).await;

    log.testing_inject_failure(FailPoint::Write);
    for _ in 0..3 {
        assert!(matches!(
            log.append(rec("a", "b", "c", true)).await,
            Err(RecordError::Unavailable(_))
        ));
    }
    assert!(log.stats().last_error.is_some());
    log.testing_inject_failure(FailPoint::None);
    // Nothing was written, so the chain resumes at 4.
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), 4);
    assert!(log.stats().last_error.is_none());

    // A failed flush: the records may be in the tree; the head is reloaded from it.
    log.testing_inject_failure(FailPoint::Flush);
    assert!(matches!(
        log.append(rec("a", "b", "c", true)).await,
        Err(RecordError::Unavailable(_))
    ));
    log.testing_inject_failure(FailPoint::None);
    let next = log.append(rec("a", "b", "c", true)).await.unwrap();
    assert_eq!(
        next, 6,
        "the unacknowledged record 5 is in the tree and the chain continues after it"
    );
    let rep = log.verify().unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.last_good_seq, Some(6));
    assert!(log.stats().batches_failed >= 4);
}

#[tokio::test]
async fn disk_reserve_refuses_appends() {
    let (d, db) = temp_db();
    let opts = AuditOptions {
        data_dir: Some(d.path().to_path_buf()),
        min_free_bytes: u64::MAX, // no disk has this much free
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).unwrap();
    match log.append(rec("a", "b", "c", true)).await {
        Err(RecordError::Unavailable(why)) => assert!(why.contains("reserve"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(log.head().0, 0);
}

/// A log with a WAL that is fdatasynced after every group commit.
fn fsync_log() -> (tempfile::TempDir, sled::Db, AuditLog) {
    let (d, db) = temp_db();
    let opts = AuditOptions {
        data_dir: Some(d.path().to_path_buf()),
        fsync: portcullis::record::AuditFsync::EveryBatch,
        min_free_bytes: 0,
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).unwrap();
    (d, db, log)
}

#[tokio::test]
async fn fsync_every_batch_appends() {
    let (_d, _db, log) = fsync_log();
    assert_eq!(log.append(rec("a", "b", "c", true)).await.unwrap(), 1);
    let no_dir = AuditOptions {
        fsync: portcullis::record::AuditFsync::EveryBatch,
        ..Default::default()
    };
    let (_d2, db2) = temp_db();
    assert!(matches!(
        AuditLog::open(&db2, no_dir),
        Err(RecordError::Invalid(_))
    ));
}

/// With a sync per group, the leader syncs off the worker thread: on a
/// single-threaded runtime (one portcullis worker) the other tasks keep
/// reaching the log meanwhile and join the next group, so 64 appends take far
/// fewer than 64 syncs, and every one of them is answered with its own seq.
#[tokio::test(flavor = "current_thread")]
async fn fsync_groups_form_while_the_leader_syncs() {
    let (_d, _db, log) = fsync_log();
    let log = std::sync::Arc::new(log);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(rec(&format!("c{i}"), "container.start", "web", true))
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.records_committed, 64);
    assert!(
        stats.batches_committed < 32,
        "{} groups for 64 appends",
        stats.batches_committed
    );
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked, 64);
}

async fn query_fixture() -> (tempfile::TempDir, sled::Db, AuditLog) {
    let (d, db) = temp_db();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    // 30 records: callers alice/bob/carol by seq%3, targets web/db by seq%2,
    // action start except every 5th (stop); deny every 4th.
    for i in 1..=30u64 {
        let caller = ["carol", "alice", "bob"][(i % 3) as usize];
        let target = if i % 2 == 0 { "web" } else { "db" };
        let action = if i % 5 == 0 {
            "container.stop"
        } else {
            "container.start"
        };
        let mut r = rec(caller, action, target, i % 4 != 0);
        r.request_id = format!("r{i}");
        r.time = format!("2026-03-01T00:{:02}:00Z", i);
        assert_eq!(log.append(r).await.unwrap(), i);
    }
    (d, db, log)
}

fn seqs(page: &portcullis::record::AuditPage) -> Vec<u64> {
    page.records.iter().map(|r| r.seq).collect()
}

fn q(log: &AuditLog, params: &[(&str, &str)]) -> portcullis::record::AuditPage {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    log.query(&AuditFilter::from_query_pairs(&pairs).unwrap())
        .unwrap()
}

#[tokio::test]
async fn query_by_each_filter() {
    let (_d, _db, log) = query_fixture().await;
    let expect = |f: &dyn Fn(u64) -> bool| (1..=30u64).rev().filter(|i| f(*i)).collect::<Vec<_>>();

    assert_eq!(seqs(&q(&log, &[])), expect(&|_| true));
    assert_eq!(
        seqs(&q(&log, &[("caller", "alice")])),
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        seqs(&q(&log, &[("target", "web")])),
        expect(&|i| i % 2 == 0)
    );
    assert_eq!(
        seqs(&q(&log, &[("target", "db-id")])),
        expect(&|i| i % 2 == 1)
    );
    assert_eq!(
        seqs(&q(&log, &[("action", "container.stop")])),
        vec![30, 25, 20, 15, 10, 5]
    );
    assert_eq!(
        seqs(&q(&log, &[("decision", "deny")])),
        expect(&|i| i % 4 == 0)
    );
    assert_eq!(
        seqs(&q(&log, &[("decision", "allow")])),
        expect(&|i| i % 4 != 0)
    );
    assert_eq!(seqs(&q(&log, &[("request_id", "r17")])), vec![17]);
    assert_eq!(
        seqs(&q(
            &log,
            &[
                ("since", "2026-03-01T00:10:00Z"),
                ("until", "2026-03-01T00:12:00Z")
            ]
        )),
        vec![12, 11, 10]
    );
    assert_eq!(
        seqs(&q(&log, &[("since", "2026-03-01T00:28:00Z")])),
        vec![30, 29, 28]
    );
    assert_eq!(
        seqs(&q(&log, &[("until", "2026-03-01T00:02:00Z")])),
        vec![2, 1]
    );
    // Combined: the driving index is caller; the rest are checked per record.
    assert_eq!(
        seqs(&q(
            &log,
            &[("caller", "bob"), ("target", "web"), ("decision", "deny")]
        )),
        expect(&|i| i % 3 == 2 && i % 2 == 0 && i % 4 == 0)
    );
    assert_eq!(
        seqs(&q(
            &log,
            &[
                ("action", "container.start"),
                ("since", "2026-03-01T00:25:00Z")
            ]
        )),
        vec![29, 28, 27, 26]
    );
    assert!(q(&log, &[("caller", "nobody")]).records.is_empty());
    assert_eq!(
        seqs(&q(
            &log,
            &[("caller", "alice"), ("order", "oldest"), ("limit", "3")]
        )),
        vec![1, 4, 7]
    );
}

#[tokio::test]
async fn paging_with_cursor_visits_each_record_once() {
    let (_d, _db, log) = query_fixture().await;
    for (params, expected) in [
        (vec![("limit", "4")], (1..=30u64).rev().collect::<Vec<_>>()),
        (
            vec![("limit", "4"), ("caller", "bob")],
            (1..=30u64).rev().filter(|i| i % 3 == 2).collect(),
        ),
        (
            vec![("limit", "7"), ("order", "oldest")],
            (1..=30u64).collect(),
        ),
        (
            vec![("limit", "2"), ("since", "2026-03-01T00:20:00Z")],
            (20..=30u64).rev().collect(),
        ),
    ] {
        let mut got = Vec::new();
        let mut cursor: Option<u64> = None;
        let mut pages = 0;
        loop {
            let mut p: Vec<(&str, String)> =
                params.iter().map(|(k, v)| (*k, v.to_string())).collect();
            if let Some(c) = cursor {
                p.push(("cursor", c.to_string()));
            }
            let pairs: Vec<(String, String)> =
                p.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let page = log
                .query(&AuditFilter::from_query_pairs(&pairs).unwrap())
                .unwrap();
            got.extend(seqs(&page));
            pages += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages < 100);
        }
        assert_eq!(got, expected, "params {params:?}");
    }
    // The default order is newest first.
    let f = AuditFilter::default();
    assert_eq!(f.order, Order::Newest);
}

#[tokio::test]
async fn export_resumes_and_subscribe_follows() {
    let (_d, _db, log) = query_fixture().await;
    let exported: Vec<u64> = log.export(25).map(|r| r.unwrap().seq).collect();
    assert_eq!(exported, vec![25, 26, 27, 28, 29, 30]);
    let mut buf = Vec::new();
    let (count, last) = log.export_jsonl(29, &mut buf).unwrap();
    assert_eq!((count, last), (2, Some(30)));
    let lines: Vec<AuditRecord> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], log.get(29).unwrap().unwrap());

    let mut sub = log.subscribe();
    let seq = log.append(rec("zed", "a", "t", false)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.seq, got.caller.as_str()), (seq, "zed"));
}

#[tokio::test]
async fn offline_open_refuses_missing_and_locked_dirs() {
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        portcullis::record::open_offline(empty.path()),
        Err(RecordError::Open(_))
    ));

    let (d, db) = temp_db();
    {
        let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
        fill(&log, 3).await;
        log.close();
    }
    // While the db is open (as in a running portcullis), the offline open is refused.
    match portcullis::record::open_offline(d.path()) {
        Err(RecordError::Open(why)) => assert!(why.contains("running"), "{why}"),
        other => panic!("expected a lock refusal, got {:?}", other.map(|_| ())),
    }
    db.flush().unwrap();
    drop(db);
    // Give the writer thread time to drop its handles.
    let mut opened = None;
    for _ in 0..50 {
        match portcullis::record::open_offline(d.path()) {
            Ok(db) => {
                opened = Some(db);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let db = opened.expect("offline open after the log closed");
    let rep = portcullis::record::verify_db(&db).unwrap();
    assert!(rep.is_ok());
    assert_eq!(rep.checked, 3);
}

/// Every page of every query, concatenated, equals a brute-force filter over the export.
fn assert_query_equals_scan(log: &AuditLog, params: &[(&str, &str)]) {
    let base: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let filter = AuditFilter::from_query_pairs(&base).unwrap();
    let mut expected: Vec<u64> = log
        .export(0)
        .map(|r| r.unwrap())
        .filter(|r| filter.matches(r))
        .map(|r| r.seq)
        .collect();
    if filter.order == Order::Newest {
        expected.reverse();
    }
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let mut pairs = base.clone();
        pairs.push(("limit".into(), "7".into()));
        if let Some(c) = cursor {
            pairs.push(("cursor".into(), format!("{c}")));
        }
        let page = log
            .query(&AuditFilter::from_query_pairs(&pairs).unwrap())
            .unwrap();
        got.extend(seqs(&page));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, expected, "params {params:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_postings_answer_queries_like_a_scan_and_survive_prune() {
    // Default chunk: everything stays in the unindexed tail, found by scanning.
    postings_case(AuditOptions::default(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexed_chunks_and_tail_answer_queries_like_a_scan() {
    // Small chunks: the indexer runs while appends go on, so queries mix postings
    // and the tail at whatever point it reached; then everything is indexed.
    let opts = AuditOptions {
        index_chunk: 13,
        ..Default::default()
    };
    postings_case(opts, true).await;
}

async fn postings_case(opts: AuditOptions, index_all: bool) {
    let (_d, db) = temp_db();
    let log = AuditLog::open(&db, opts).unwrap();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let n = t * 25 + i;
                let mut r = rec(
                    ["alice", "bob", "carol"][(n % 3) as usize],
                    ["start", "stop"][(n % 2) as usize],
                    ["web", "db", "cache"][(n % 3) as usize],
                    n % 5 != 0,
                );
                r.time = format!("2026-04-01T00:{:02}:{:02}Z", i, t);
                log.append(r).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        log.stats().batches_committed < 400,
        "batches formed: {:?}",
        log.stats()
    );
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("caller", "bob")],
        vec![("caller", "bob"), ("order", "oldest")],
        vec![("target", "cache")],
        vec![("target", "db-id"), ("decision", "deny")],
        vec![("action", "stop")],
        vec![("decision", "deny")],
        vec![
            ("since", "2026-04-01T00:10:00Z"),
            ("until", "2026-04-01T00:12:59Z"),
        ],
        vec![
            ("since", "2026-04-01T00:20:00Z"),
            ("caller", "alice"),
            ("order", "oldest"),
        ],
        vec![("request_id", "req-carol-start-cache")],
    ];
    for c in &cases {
        assert_query_equals_scan(&log, c);
    }
    if index_all {
        log.testing_index_all().unwrap();
        assert!(!indexed_seqs(&db).unwrap().is_empty());
        for c in &cases {
            assert_query_equals_scan(&log, c);
        }
    }
    let r = log.prune(PrunePolicy::MaxRecords(150)).unwrap();
    assert!(r.removed <= 250 && r.removed > 0, "{r:?}");
    assert!(log.verify().unwrap().is_ok());
    assert!(log.get(r.checkpoint.first_seq - 1).unwrap().is_none());
    // Postings of pruned batches are gone, not merely skipped.
    for seq in indexed_seqs(&db).unwrap() {
        assert!(
            seq >= r.checkpoint.first_seq,
            "the index still posts pruned seq {seq}"
        );
    }
    for c in &cases {
        assert_query_equals_scan(&log, c);
    }
}

#[test]
fn audit_log_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<AuditLog>();
}

#[test]
fn open_refuses_an_old_layout_and_a_bad_index_chunk() {
    let (_d, db) = temp_db();
    db.open_tree("audit_records")
        .unwrap()
        .insert(1u64.to_be_bytes(), &b"old"[..])
        .unwrap();
    match AuditLog::open(&db, AuditOptions::default()) {
        Err(RecordError::Corrupt(why)) => assert!(why.contains("older"), "{why}"),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("expected Corrupt, got a log"),
    }
    let (_d2, db2) = temp_db();
    let opts = AuditOptions {
        index_chunk: 0,
        ..Default::default()
    };
    assert!(matches!(
        AuditLog::open(&db2, opts),
        Err(RecordError::Invalid(_))
    ));
}
