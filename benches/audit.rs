//! Audit log figures: one-client append latency, batched appends per second,
//! query by caller, full verify.
//!
//! `PORTCULLIS_BENCH_RECORDS` (default 1_000_000) sets the log size;
//! `PORTCULLIS_BENCH_CONCURRENCY` (default 512) the number of concurrent appenders;
//! `PORTCULLIS_BENCH_BATCH` (default 1000, as `AuditOptions`) the group-commit cap;
//! `PORTCULLIS_BENCH_DBF_RECORDS` (default records / 10) the size of the
//! durable-before-forward run: 64 tasks, each appending one record at a time and
//! waiting for it to be durable, as the proxy does per request.
//! Targets: >= 100k appends/s, >= 20k/s durable-before-forward at 64 clients,
//! query by caller or request id <= 20 ms, verify 1M <= 2 s, one-client append latency well
//! under the proxy's 50 µs budget.

use std::time::{Duration, Instant};

use portcullis::record::{AuditFilter, AuditLog, AuditOptions, AuditRecord};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        request_id: format!("req-{i}"),
        caller: format!("svc-{}", i % 100),
        identified_by: "token:bench".into(),
        action: [
            "container.start",
            "container.stop",
            "file.read",
            "container.inspect",
        ][(i % 4) as usize]
            .into(),
        target_id: Some(format!("{:064x}", i % 500)),
        target_name: Some(format!("web-{}", i % 500)),
        method: "POST".into(),
        path: format!("/v1.41/containers/web-{}/start", i % 500),
        allowed: !i.is_multiple_of(10),
        enforced: true,
        reasons: vec!["trust t-42 grants container.start on web-*".into()],
        trust_id: Some("t-42".into()),
        policy_version: "sha256:abcdef".into(),
        ..Default::default()
    }
}

fn main() {
    let n = env_num("PORTCULLIS_BENCH_RECORDS", 1_000_000);
    let concurrency = env_num("PORTCULLIS_BENCH_CONCURRENCY", 512).max(1);
    let batch = env_num("PORTCULLIS_BENCH_BATCH", 1000) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("open sled");
    let opts = AuditOptions {
        max_batch: batch,
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let log = AuditLog::open(&db, opts).expect("open audit log");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // One client: the latency a lone request pays for its durable append.
    let mut lat = rt.block_on(async {
        let mut lat = Vec::with_capacity(5000);
        for i in 0..5000 {
            let a = Instant::now();
            log.append(record(i)).await.expect("append");
            lat.push(a.elapsed());
        }
        lat
    });
    lat.sort();
    println!(
        "one client: append latency median {:.1}µs, p99 {:.1}µs over {} appends",
        lat[lat.len() / 2].as_secs_f64() * 1e6,
        lat[lat.len() * 99 / 100].as_secs_f64() * 1e6,
        lat.len()
    );

    // Appends: `concurrency` tasks share the writer, so flushes are shared.
    let lone = log.stats();
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    log.append(record(i)).await.expect("append");
                    i += concurrency;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let took = started.elapsed();
    let stats = log.stats();
    println!(
        "append: {n} records in {:.2?} = {:.0} records/s ({} flushes, {:.1} records/flush, concurrency {concurrency}, max_batch {batch})",
        took,
        n as f64 / took.as_secs_f64(),
        stats.batches_committed - lone.batches_committed,
        (stats.records_committed - lone.records_committed) as f64
            / (stats.batches_committed - lone.batches_committed).max(1) as f64,
    );

    // Durable-before-forward: 64 clients, one outstanding append each.
    let dbf = env_num("PORTCULLIS_BENCH_DBF_RECORDS", n / 10).max(64);
    let clients = 64u64;
    let before = log.stats();
    let started = Instant::now();
    let mut latencies = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..clients {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = t;
                while i < dbf {
                    let a = Instant::now();
                    log.append(record(n + i)).await.expect("append");
                    lat.push(a.elapsed());
                    i += clients;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let took = started.elapsed();
    let after = log.stats();
    latencies.sort();
    let flushes = after.batches_committed - before.batches_committed;
    println!(
        "durable-before-forward, 64 clients: {dbf} records in {:.2?} = {:.0} records/s ({:.1} records/flush); append latency p50 {:.2?}, p99 {:.2?}",
        took,
        dbf as f64 / took.as_secs_f64(),
        (after.records_committed - before.records_committed) as f64 / flushes.max(1) as f64,
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    );

    // Query by caller: newest page of 100 from the caller index.
    let (main, rid) = log.index_marks().expect("index marks");
    let head = log.head().0;
    let applied = log.stats().applied_seq;
    println!(
        "right after the load: {} records not yet applied to sled, {} not in the secondary index, {} not in the request-id index",
        head - applied,
        head - main,
        head - rid
    );
    let mut times = Vec::new();
    for c in 0..20 {
        let filter = AuditFilter {
            caller: Some(format!("svc-{}", c * 5)),
            ..Default::default()
        };
        let t = Instant::now();
        let page = log.query(&filter).expect("query");
        times.push(t.elapsed());
        assert!(!page.records.is_empty());
    }
    report("query caller (limit 100)", &mut times);

    // A selective combined filter: caller + deny, drives the caller index and filters.
    let mut times = Vec::new();
    for c in 0..20 {
        let pairs = vec![
            ("caller".to_string(), format!("svc-{}", c * 5)),
            ("decision".to_string(), "deny".to_string()),
        ];
        let filter = AuditFilter::from_query_pairs(&pairs).expect("filter");
        let t = Instant::now();
        log.query(&filter).expect("query");
        times.push(t.elapsed());
    }
    report("query caller+deny (limit 100)", &mut times);

    // How long the indexer needs, after the load, to be within two chunks of the
    // head (what the request-id queries below rely on).
    let chunk = portcullis::record::DEFAULT_INDEX_CHUNK;
    let t = Instant::now();
    let (mut main_at, mut rid_at) = (None, None);
    while t.elapsed() < Duration::from_secs(300) && (main_at.is_none() || rid_at.is_none()) {
        let (main, rid) = log.index_marks().expect("index marks");
        if main_at.is_none() && main + 2 * chunk >= head {
            main_at = Some(t.elapsed());
        }
        if rid_at.is_none() && rid + 2 * chunk >= head {
            rid_at = Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "indexer caught up after the load: secondary index {main_at:.2?}, request-id index {rid_at:.2?}"
    );

    // Request id: its own index (one key per record), up to the indexer's mark;
    // the records after it (at most about one index chunk) are scanned. Wait for
    // the indexer to be as far as it gets in steady state first.
    let head = log.head().0;
    let waited = Instant::now();
    let mut rid_mark = 0;
    while waited.elapsed() < Duration::from_secs(120) {
        rid_mark = log.index_marks().expect("index marks").1;
        if rid_mark + 2 * portcullis::record::DEFAULT_INDEX_CHUNK >= head {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut times = Vec::new();
    for k in 0..20 {
        // Spread over the main run (ids below 5000 were also used by the
        // one-client run): old, middle and recent records.
        let i = 5000 + (n.max(5001) - 5001) * k / 19;
        let pairs = vec![("request_id".to_string(), format!("req-{i}"))];
        let filter = AuditFilter::from_query_pairs(&pairs).expect("filter");
        let t = Instant::now();
        let page = log.query(&filter).expect("query");
        times.push(t.elapsed());
        assert_eq!(page.records.len(), 1, "req-{i}");
    }
    report(
        &format!(
            "query request_id over {head} records (index to seq {rid_mark}, {} scanned after it)",
            head - rid_mark
        ),
        &mut times,
    );

    let t = Instant::now();
    let rep = log.verify().expect("verify");
    let took = t.elapsed();
    assert!(rep.is_ok(), "{rep:?}");
    println!(
        "verify: {} records in {:.2?} = {:.0} records/s",
        rep.checked,
        took,
        rep.checked as f64 / took.as_secs_f64()
    );
    let size = db.size_on_disk().unwrap_or(0);
    println!("db size on disk: {:.1} MiB", size as f64 / (1 << 20) as f64);
}

fn report(name: &str, times: &mut [Duration]) {
    times.sort();
    println!(
        "{name}: median {:.2?}, max {:.2?} over {} queries",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
}
