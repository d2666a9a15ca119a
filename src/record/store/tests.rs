//! Unit tests of the store's encodings: checkpoints, keys, postings, chunk directories.

use super::postings::{posting_key, sortable_nanos, time_index_key};
use super::*;

#[test]
fn checkpoint_round_trips_and_detects_damage() {
    let cp = Checkpoint {
        first_seq: 1234,
        prev_hash: [9u8; 32],
        pruned_total: 1233,
        time: "2026-01-02T03:04:05Z".into(),
    };
    let mut bytes = cp.encode();
    assert_eq!(Checkpoint::decode(&bytes).unwrap(), cp);
    bytes[3] ^= 1;
    assert!(Checkpoint::decode(&bytes).unwrap_err().contains("checksum"));
    assert!(Checkpoint::decode(&bytes[..10]).is_err());
}

#[test]
fn sortable_nanos_orders_like_time() {
    let ts = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000_000, i64::MAX];
    for w in ts.windows(2) {
        assert!(sortable_nanos(w[0]) < sortable_nanos(w[1]), "{w:?}");
    }
}

#[test]
fn postings_group_seqs_per_value_and_chunk() {
    let mut bufs = Vec::new();
    for seq in 10..14u64 {
        let rec = AuditRecord {
            seq,
            time: "2026-01-02T03:04:05.5Z".into(),
            caller: if seq % 2 == 0 { "a".into() } else { "b".into() },
            target_id: Some("same".into()),
            target_name: Some("same".into()),
            ..Default::default()
        };
        bufs.push((seq, codec::encode_canonical(&rec).unwrap()));
    }
    let mut p = Postings::default();
    for (seq, c) in &bufs {
        p.add(&codec::view_fields(c).unwrap(), *seq);
    }
    let map: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = p.into_keys(10).collect();
    assert_eq!(map[&posting_key(KIND_CALLER, b"a", 10)], vec![10, 12]);
    assert_eq!(
        map[&posting_key(KIND_TARGET, b"same", 10)],
        vec![10, 11, 12, 13],
        "name equal to id is posted once"
    );
    let t = parse_time_nanos("2026-01-02T03:04:05Z").unwrap();
    assert_eq!(
        map[&time_index_key(t, 10)].len(),
        4,
        "floored to the second"
    );
    assert!(posting_seqs(&[0u8; 7]).is_err());
    assert_eq!(posting_seqs(&posting_value(&[3, 9])).unwrap(), vec![3, 9]);
}

#[test]
fn chunk_dir_round_trips() {
    let d = ChunkDir {
        last: 77,
        keys: vec![b"ic\xffabc".to_vec(), vec![]],
    };
    let back = ChunkDir::decode(&d.encode()).unwrap();
    assert_eq!((back.last, back.keys), (77, d.keys));
    assert!(ChunkDir::decode(&[1, 2]).is_err());
}

#[test]
fn blob_keys_sort_by_seq_and_reject_other_prefixes() {
    assert!(blob_key(255) < blob_key(256));
    assert_eq!(parse_blob_key(&blob_key(42)), Some(42));
    assert_eq!(parse_blob_key(&chunk_key(42)), None);
    assert_eq!(parse_blob_key(&blob_key(42)[..8]), None);
}
