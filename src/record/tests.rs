//! The WAL path: replay after a kill, a torn tail, a WAL that breaks the chain,
//! failure rollback, and reads that see what was just acknowledged.

use std::path::Path;
use std::time::Duration;

use super::codec::{self, chain_hash};
use super::store::{ChainHead, Stores};
use super::wal::{self, Inject, WalWriter};
use super::*;

fn rec(i: u64) -> AuditRecord {
    AuditRecord {
        time: "2026-01-02T03:04:05Z".into(),
        request_id: format!("r{i}"),
        caller: format!("svc{}", i % 3),
        action: "container.start".into(),
        method: "POST".into(),
        path: "/containers/x/start".into(),
        allowed: true,
        enforced: true,
        ..Default::default()
    }
}

fn wal_opts(dir: &Path) -> AuditOptions {
    AuditOptions {
        data_dir: Some(dir.to_path_buf()),
        min_free_bytes: 0,
        ..Default::default()
    }
}

fn open_db(dir: &Path) -> sled::Db {
    sled::Config::new().path(dir).open().unwrap()
}

/// Open a db the test (or an offline tool) just dropped: sled's background
/// flusher lets go of the file lock a moment after the drop, so a lock error
/// is retried for a while (any other error fails the test at once).
fn once_released<T>(mut open: impl FnMut() -> Result<T, RecordError>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(v) => return v,
            Err(RecordError::Open(e))
                if e.contains("another process holds it")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

/// Frames as the writer builds them: one per group of `sizes[i]` records, chained
/// from `head`. Returns the frames and the head after them.
fn frames(mut head: ChainHead, sizes: &[u64]) -> (Vec<Vec<u8>>, ChainHead) {
    let mut out = Vec::new();
    for &n in sizes {
        let mut frame = Vec::new();
        wal::start_frame(&mut frame);
        for _ in 0..n {
            let mut r = rec(head.next_seq);
            r.seq = head.next_seq;
            let c = codec::encode_canonical(&r).unwrap();
            let h = chain_hash(&head.hash, &c);
            codec::push_entry(&mut frame, r.seq, &h, &c);
            head = ChainHead {
                next_seq: head.next_seq + 1,
                hash: h,
            };
        }
        wal::finish_frame(&mut frame);
        out.push(frame);
    }
    (out, head)
}

const GENESIS: ChainHead = ChainHead {
    next_seq: 1,
    hash: codec::GENESIS_HASH,
};

/// Write frames into a fresh segment, as a process killed before its applier ran.
fn write_wal(dir: &Path, first: u64, frames: &[Vec<u8>]) -> std::path::PathBuf {
    let wal_dir = dir.join(wal::WAL_DIR);
    let mut w = WalWriter::create(&wal_dir, first, wal::DEFAULT_SEGMENT_BYTES, false).unwrap();
    let mut seq = first;
    for f in frames {
        w.write_frame(f, seq, Inject::None).unwrap();
        seq += codec::blob_entries(wal::frame_blob(f)).count() as u64;
    }
    wal::segments(&wal_dir).unwrap().pop().unwrap().1
}

#[test]
fn replay_after_kill_applies_wal_records_and_continues_the_chain() {
    let d = tempfile::tempdir().unwrap();
    let (fs, head) = frames(GENESIS, &[3, 1, 5]);
    write_wal(d.path(), 1, &fs);
    let db = open_db(d.path());
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    assert_eq!(log.head(), (9, hex::encode(head.hash)));
    let rep = log.verify().unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.checked, 9);
    assert_eq!(log.get(7).unwrap().unwrap().request_id, "r7");
    assert_eq!(log.append_blocking(rec(10)).unwrap(), 10);
    assert!(log.verify().unwrap().is_ok());
    // The replayed segments were deleted once sled held them; one fresh segment.
    assert_eq!(
        wal::segments(&d.path().join(wal::WAL_DIR)).unwrap().len(),
        1
    );
}

#[test]
fn replay_skips_what_sled_already_holds() {
    let d = tempfile::tempdir().unwrap();
    let db = open_db(d.path());
    {
        let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
        for i in 1..=4 {
            log.append_blocking(rec(i)).unwrap();
        }
        log.testing_close_and_wait();
    }
    let stores = Stores::open(&db).unwrap();
    let head = stores.load_head().unwrap();
    assert_eq!(head.next_seq, 5);
    // A WAL holding records 3..=4 again (not yet deleted) and 5..=6 (not applied).
    let (before, _) = frames(GENESIS, &[2, 2]);
    let (after, end) = frames(head, &[2]);
    std::fs::remove_dir_all(d.path().join(wal::WAL_DIR)).unwrap();
    write_wal(d.path(), 3, &[before[1].clone(), after[0].clone()]);
    drop(stores);
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    assert_eq!(log.head(), (6, hex::encode(end.hash)));
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn a_torn_last_frame_is_cut_off() {
    let d = tempfile::tempdir().unwrap();
    let (fs, _) = frames(GENESIS, &[2, 3]);
    let (torn, _) = frames(
        ChainHead {
            next_seq: 6,
            ..GENESIS
        },
        &[4],
    );
    let seg = write_wal(d.path(), 1, &fs);
    // Half of the next frame reached the file before the kill.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&torn[0][..torn[0].len() / 2]).unwrap();
    }
    let db = open_db(d.path());
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    assert_eq!(log.head().0, 5);
    assert!(log.verify().unwrap().is_ok());
    assert_eq!(log.append_blocking(rec(6)).unwrap(), 6);
    assert!(log.verify().unwrap().is_ok());
}

/// A frame whose bytes are all in the file but wrong was acknowledged: it is
/// a break (the WAL kept as evidence), never mistaken for a torn tail and cut
/// off together with the acknowledged frames after it.
#[test]
fn a_damaged_complete_frame_is_a_break_even_in_the_last_segment() {
    let (fs, _) = frames(GENESIS, &[2, 3, 1]);
    // A byte near the end of frame `i`'s payload.
    let payload_byte = |i: usize| {
        let before: usize = fs[..i].iter().map(|f| f.len()).sum();
        wal::SEGMENT_HEADER as usize + before + fs[i].len() - 5
    };
    for damaged in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        let seg = write_wal(d.path(), 1, &fs);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[payload_byte(damaged)] ^= 0x40;
        std::fs::write(&seg, &bytes).unwrap();
        let first_lost = 1 + fs[..damaged]
            .iter()
            .map(|f| codec::blob_entries(wal::frame_blob(f)).count() as u64)
            .sum::<u64>();
        {
            let db = open_db(d.path());
            match AuditLog::open(&db, wal_opts(d.path())) {
                Err(RecordError::BrokenChain(b)) => assert_eq!(b.seq, first_lost, "{b}"),
                Err(e) => panic!("wrong error {e}"),
                Ok(_) => panic!("open accepted a damaged frame {damaged}"),
            }
        }
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            bytes,
            "the WAL was kept whole"
        );
        let rep = once_released(|| verify_offline(d.path()));
        assert_eq!(rep.broken.map(|b| b.seq), Some(first_lost));
        assert_eq!(std::fs::read(&seg).unwrap(), bytes, "verify kept it too");
    }
}

/// A bit flipped in the length of a complete frame makes it run past the end of
/// the file: the header's own CRC shows it is damage, not a torn write.
#[test]
fn a_damaged_length_is_a_break_not_a_torn_tail() {
    let (fs, _) = frames(GENESIS, &[2, 3]);
    let d = tempfile::tempdir().unwrap();
    let seg = write_wal(d.path(), 1, &fs);
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = wal::SEGMENT_HEADER as usize + fs[0].len();
    bytes[second + 5] ^= 0x01; // +64 KiB: past the end, below the plausibility cap
    std::fs::write(&seg, &bytes).unwrap();
    {
        let db = open_db(d.path());
        match AuditLog::open(&db, wal_opts(d.path())) {
            Err(RecordError::BrokenChain(b)) => {
                assert_eq!(b.seq, 3, "{b}");
                let text = RecordError::BrokenChain(b).to_string();
                assert!(
                    text.contains(&format!("{} at byte {second}", seg.display())),
                    "{text}"
                );
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("open took a damaged length for a torn write"),
        }
    }
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was cut");
}

/// A WAL written by an older portcullis (12-byte headers without a header CRC)
/// still replays; a frame of that format running past the end is a break.
#[test]
fn a_legacy_wal_replays_and_its_overlong_frame_is_a_break() {
    let (fs, end) = frames(GENESIS, &[2, 3]);
    let legacy: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| {
            let mut out = 0x5043_4157u32.to_be_bytes().to_vec();
            out.extend_from_slice(&f[4..12]);
            out.extend_from_slice(wal::frame_blob(f));
            out
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    write_wal(d.path(), 1, &legacy);
    {
        let db = open_db(d.path());
        let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
        assert_eq!(log.head(), (5, hex::encode(end.hash)));
        log.testing_close_and_wait();
    }
    let d = tempfile::tempdir().unwrap();
    let seg = write_wal(d.path(), 1, &legacy);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&seg, &bytes).unwrap();
    let db = open_db(d.path());
    match AuditLog::open(&db, wal_opts(d.path())) {
        Err(RecordError::BrokenChain(b)) => assert_eq!(b.seq, 3, "{b}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("open cut an old-format frame it cannot prove torn"),
    }
}

#[test]
fn a_wal_frame_that_does_not_chain_is_a_break_not_dropped() {
    let d = tempfile::tempdir().unwrap();
    // Records 1..=2, then a frame starting at 4: record 3 is missing.
    let (a, head) = frames(GENESIS, &[2]);
    let (_, head3) = frames(head, &[1]);
    let (c, _) = frames(head3, &[2]);
    write_wal(d.path(), 1, &[a[0].clone(), c[0].clone()]);
    {
        let db = open_db(d.path());
        match AuditLog::open(&db, wal_opts(d.path())) {
            Err(RecordError::BrokenChain(b)) => {
                assert_eq!((b.seq, b.kind), (3, BreakKind::Missing), "{b}")
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("open accepted a WAL that skips a record"),
        }
    }
    // The WAL is kept; offline verify names the same break.
    assert_eq!(
        wal::segments(&d.path().join(wal::WAL_DIR)).unwrap().len(),
        1
    );
    let rep = once_released(|| verify_offline(d.path()));
    assert_eq!(rep.broken.map(|b| b.seq), Some(3));
    // Allowed, it serves on from sled's head and keeps the WAL aside as evidence.
    let db = once_released(|| open_sled_offline(d.path()));
    let opts = AuditOptions {
        allow_broken_chain: true,
        ..wal_opts(d.path())
    };
    let log = AuditLog::open(&db, opts).unwrap();
    assert_eq!(log.head().0, 2);
    let aside = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("audit-wal.broken-")
        });
    assert!(aside, "the broken WAL was kept");
}

#[test]
fn failed_writes_roll_back_and_the_chain_stays_consistent() {
    let d = tempfile::tempdir().unwrap();
    let db = open_db(d.path());
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    for i in 1..=3 {
        assert_eq!(log.append_blocking(rec(i)).unwrap(), i);
    }
    for point in [FailPoint::Write, FailPoint::Flush] {
        log.testing_inject_failure(point);
        assert!(matches!(
            log.append_blocking(rec(0)),
            Err(RecordError::Unavailable(_))
        ));
        assert_eq!(log.head().0, 3, "{point:?} rolled back");
    }
    assert!(log.stats().last_error.is_some());
    log.testing_inject_failure(FailPoint::None);
    // The failed frames were truncated away: the chain resumes at 4.
    assert_eq!(log.append_blocking(rec(4)).unwrap(), 4);
    assert!(log.stats().last_error.is_none());
    assert!(log.verify().unwrap().is_ok());
    let head = log.head();
    log.testing_close_and_wait();
    drop(log);
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    assert_eq!(log.head(), head);
    assert!(log.verify().unwrap().is_ok());
}

// Holding the sink lock across awaits is the point: the leader waits on it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_refuses_the_groups_queued_behind_it() {
    let d = tempfile::tempdir().unwrap();
    let db = open_db(d.path());
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    log.append(rec(1)).await.unwrap();
    // One write fails. Its leader is held at the sink until 31 more appends
    // have queued behind it: they chain from the failed record, so they are
    // refused too, although their own write would succeed.
    log.testing_inject_failure(FailPoint::WriteOnce);
    let committer = &log.inner.committer;
    let sink = committer.testing_hold_sink();
    let spawn = |i: u64| {
        let log = log.clone();
        tokio::spawn(async move { log.append(rec(i)).await })
    };
    let wait_for = |want: (bool, u64)| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while committer.testing_queue() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "queue never reached {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let mut tasks = vec![spawn(0)];
    wait_for((true, 0)).await;
    tasks.extend((1..32).map(spawn));
    wait_for((true, 31)).await;
    drop(sink);
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    let stats = log.stats();
    assert_eq!(stats.records_committed, 1);
    assert!(stats.batches_failed >= 2, "{}", stats.batches_failed);
    // The failure fired once; the chain rolled back to record 1 and goes on.
    assert_eq!(log.append(rec(2)).await.unwrap(), 2);
    assert!(log.verify().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_a_record_as_soon_as_its_append_returns() {
    let d = tempfile::tempdir().unwrap();
    let db = open_db(d.path());
    let log = AuditLog::open(&db, wal_opts(d.path())).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let mut r = rec(i);
                    r.request_id = format!("t{t}-{i}");
                    let seq = log.append(r).await.unwrap();
                    let got = log.get(seq).unwrap().expect("get sees it");
                    assert_eq!(got.request_id, format!("t{t}-{i}"));
                    let pairs = vec![("request_id".to_string(), got.request_id.clone())];
                    let page = log
                        .query(&AuditFilter::from_query_pairs(&pairs).unwrap())
                        .unwrap();
                    assert_eq!(page.records.len(), 1, "query sees it");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.export(1).count(), 400);
    assert!(log.verify().unwrap().is_ok());
    let stats = log.stats();
    assert_eq!((stats.records_committed, stats.batches_failed), (400, 0));
}

#[test]
fn segments_rotate_and_covered_ones_are_deleted() {
    let d = tempfile::tempdir().unwrap();
    let db = open_db(d.path());
    let opts = AuditOptions {
        wal_segment_bytes: 2048,
        ..wal_opts(d.path())
    };
    let log = AuditLog::open(&db, opts.clone()).unwrap();
    for i in 1..=100 {
        log.append_blocking(rec(i)).unwrap();
    }
    let wal_dir = d.path().join(wal::WAL_DIR);
    assert!(wal::segments(&wal_dir).unwrap().len() > 1);
    // The applier flushes and deletes covered segments within a flush period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wal::segments(&wal_dir).unwrap().len() > 1 {
        assert!(std::time::Instant::now() < deadline, "segments were kept");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn group_commits_land_in_power_of_two_size_buckets() {
    use super::writer::{group_size_bucket, GROUP_SIZE_BUCKETS};
    let cases = [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 3),
        (1024, 10),
        (1025, 11),
    ];
    for (size, bucket) in cases {
        assert_eq!(group_size_bucket(size), bucket, "size {size}");
    }
    assert_eq!(group_size_bucket(u64::MAX), GROUP_SIZE_BUCKETS - 1);
}

fn by_request(log: &AuditLog, rid: &str) -> Vec<u64> {
    let pairs = vec![("request_id".to_string(), rid.to_string())];
    let f = AuditFilter::from_query_pairs(&pairs).unwrap();
    log.query(&f)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect()
}

#[test]
fn request_ids_are_indexed_and_rebuilt_for_a_log_without_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || AuditOptions {
        index_chunk: 10,
        ..Default::default()
    };
    {
        let db = open_db(dir.path());
        let log = AuditLog::open(&db, opts()).unwrap();
        for i in 1..=50 {
            let mut r = rec(i);
            // Two records of one request (a download and its withheld entries).
            if i == 31 {
                r.request_id = "r30".into();
            }
            log.append_blocking(r).unwrap();
        }
        log.testing_index_all().unwrap();
        assert_eq!(log.index_marks().unwrap().1, 50);
        // The index keys live beside the records; the chain still verifies.
        assert!(log.verify().unwrap().is_ok());
        assert_eq!(by_request(&log, "r7"), vec![7]);
        assert_eq!(by_request(&log, "r30"), vec![31, 30]);
        // Not yet indexed: found by the tail scan.
        log.append_blocking(rec(51)).unwrap();
        assert_eq!(by_request(&log, "r51"), vec![51]);
        assert!(by_request(&log, "nope").is_empty());
        // Pruning removes the index keys with the records.
        log.prune(PrunePolicy::BeforeSeq(20)).unwrap();
        let stores = Stores::open(&db).unwrap();
        let left: Vec<u64> = stores
            .log
            .scan_prefix([b'q'])
            .map(|kv| {
                let k = kv.unwrap().0;
                codec::parse_seq(&k[k.len() - 8..]).unwrap()
            })
            .collect();
        assert_eq!(left, (20..=50).collect::<Vec<_>>());
        assert!(left.iter().all(|s| *s >= 20), "{left:?}");
        // An older log: no request-id index at all.
        let mut b = sled::Batch::default();
        for kv in stores.log.scan_prefix([b'q']) {
            b.remove(kv.unwrap().0);
        }
        b.remove(&b"mrequest_ids"[..]);
        stores.log.apply_batch(b).unwrap();
        log.testing_close_and_wait();
    }
    let db = once_released(|| {
        sled::Config::new()
            .path(dir.path())
            .open()
            .map_err(|e| RecordError::Open(format!("another process holds it: {e}")))
    });
    let log = AuditLog::open(&db, opts()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.index_marks().unwrap().1 < 40 {
        assert!(std::time::Instant::now() < deadline, "not rebuilt");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(by_request(&log, "r30"), vec![31, 30]);
    assert_eq!(by_request(&log, "r45"), vec![45]);
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn chained_exports_verify_whole_and_as_a_range() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let log = AuditLog::open(&db, AuditOptions::default()).unwrap();
    for i in 1..=30 {
        log.append_blocking(rec(i)).unwrap();
    }
    let text = |from| {
        log.export_chained(from)
            .map(|r| serde_json::to_string(&r.unwrap()).unwrap() + "\n")
            .collect::<String>()
    };
    let whole = export::verify_export(text(1).as_bytes()).unwrap();
    assert!(whole.is_ok(), "{whole:?}");
    assert_eq!((whole.checked, whole.head_hash.clone()), (30, log.head().1));
    let range = export::verify_export(text(12).as_bytes()).unwrap();
    assert!(range.is_ok(), "{range:?}");
    let h11 = log.export_chained(11).next().unwrap().unwrap().hash;
    assert_eq!(range.start, format!("starts at seq 12 after hash {h11}"));
    assert_eq!(log.export_chained(31).count(), 0);
}
