//! The audit WAL reader's properties, apart because they build whole
//! segments of chained frames to damage (see `wal_segment`).

/// The WAL reader on one segment: `data` picks a valid segment of chained
/// frames and one kind of damage to it (or, with a leading odd byte, is taken
/// as the frames' bytes as they are). Whatever the input, the reader never
/// turns damage into a silent cut:
/// - the frames it accepts are contiguous from the header, and each record it
///   would apply links to the one before (checked here independently);
/// - a frame cut short is tolerated only at the end of the last segment; the
///   same bytes in an earlier segment are a break at the same place;
/// - a flipped byte anywhere after the segment header is a break at the frame
///   that holds it, with every frame before it accepted;
/// - a segment cut at a byte is read up to the last whole frame, and the rest is
///   a torn frame (last segment) or a break (any other).
pub fn wal_segment(data: &[u8]) {
    use crate::record::codec::{self, chain_hash};
    use crate::record::store::ChainHead;
    use crate::record::wal::{self, scan_segment, SegmentEnd, SEGMENT_HEADER};

    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let head = ChainHead {
        next_seq: 1 + u64::from(mode >> 5),
        hash: [7u8; 32],
    };
    let mut segment = b"PCAWAL01".to_vec();
    segment.extend_from_slice(&head.next_seq.to_be_bytes());
    let header = SEGMENT_HEADER as usize;

    // Arbitrary frame bytes: only the independent checks apply.
    if mode & 1 == 1 {
        segment.extend_from_slice(data);
        let scan = scan_segment(&segment, head, true, "fuzz");
        let end = check_accepted(&segment, head, &scan.frames);
        let again = scan_segment(&segment, head, false, "fuzz");
        match (&scan.end, &again.end) {
            (SegmentEnd::Whole, SegmentEnd::Whole) => assert_eq!(end, segment.len()),
            (SegmentEnd::Torn { at, .. }, SegmentEnd::Broken { at: b, .. }) => {
                assert_eq!((*at, *b), (end, end), "a torn frame is a break elsewhere")
            }
            (SegmentEnd::Broken { at, .. }, SegmentEnd::Broken { at: b, .. }) => {
                assert_eq!((*at, *b), (end, end))
            }
            (a, b) => panic!("last segment {a:?}, earlier segment {b:?}"),
        }
        return;
    }

    // A valid segment: frame sizes from the first bytes, damage from the rest.
    let (sizes, damage) = data.split_at(data.len().min(4));
    let mut frame_starts = Vec::new();
    let mut chain = head;
    for &n in sizes {
        frame_starts.push(segment.len());
        let mut frame = Vec::new();
        wal::start_frame(&mut frame);
        for i in 0..=(n % 4) {
            // Canonical bytes start with the record's own seq.
            let mut canonical = chain.next_seq.to_be_bytes().to_vec();
            canonical.extend_from_slice(format!("record {i}").as_bytes());
            let hash = chain_hash(&chain.hash, &canonical);
            codec::push_entry(&mut frame, chain.next_seq, &hash, &canonical);
            chain = ChainHead {
                next_seq: chain.next_seq + 1,
                hash,
            };
        }
        wal::finish_frame(&mut frame);
        segment.extend_from_slice(&frame);
    }
    let frame_of = |at: usize| frame_starts.iter().rposition(|&s| s <= at).unwrap_or(0);
    let pick = |b: &[u8]| {
        b.iter()
            .fold(0usize, |acc, &x| acc.wrapping_mul(251) ^ x as usize)
    };
    let whole = segment.clone();

    match damage.split_first() {
        // No damage: every frame is read.
        None => {
            let scan = scan_segment(&segment, head, true, "fuzz");
            assert!(matches!(scan.end, SegmentEnd::Whole), "{:?}", scan.end);
            assert_eq!(scan.frames.len(), frame_starts.len());
            assert_eq!(scan.head, chain);
        }
        // A flipped byte after the header: a break at its frame, in any segment.
        Some((&flip, rest)) if flip != 0 && segment.len() > header => {
            let at = header + pick(rest) % (segment.len() - header);
            segment[at] ^= flip;
            for last in [true, false] {
                let scan = scan_segment(&segment, head, last, "fuzz");
                let broken_at = match scan.end {
                    SegmentEnd::Broken { at, .. } => at,
                    other => panic!("byte {at} flipped by {flip:#x}: {other:?}"),
                };
                assert_eq!(broken_at, frame_starts[frame_of(at)], "flip at {at}");
                assert_eq!(scan.frames.len(), frame_of(at));
                check_accepted(&segment, head, &scan.frames);
            }
        }
        // Cut at a byte: whole frames before it are read, the rest is torn.
        Some((_, rest)) => {
            let cut = header + pick(rest) % (whole.len() - header + 1);
            let segment = &whole[..cut];
            let boundary = cut == whole.len() || frame_starts.contains(&cut);
            let kept = frame_starts.iter().filter(|&&s| s < cut).count() - usize::from(!boundary);
            for last in [true, false] {
                let scan = scan_segment(segment, head, last, "fuzz");
                assert_eq!(scan.frames.len(), kept, "cut at {cut}");
                check_accepted(segment, head, &scan.frames);
                match (&scan.end, boundary, last) {
                    (SegmentEnd::Whole, true, _) => {}
                    (SegmentEnd::Torn { at, .. }, false, true) => {
                        assert_eq!(*at, frame_starts[kept])
                    }
                    (SegmentEnd::Broken { at, .. }, false, false) => {
                        assert_eq!(*at, frame_starts[kept])
                    }
                    (end, _, _) => panic!("cut at {cut} (last segment: {last}): {end:?}"),
                }
            }
        }
    }
}

/// Independently of the reader: the accepted frames lie back to back after the
/// segment header, and every record beyond `head` links to its predecessor.
/// Returns the byte where the accepted frames end.
fn check_accepted(
    segment: &[u8],
    head: crate::record::store::ChainHead,
    frames: &[crate::record::wal::GoodFrame<'_>],
) -> usize {
    use crate::record::codec::{blob_entries, chain_hash, split_value};
    let base = segment.as_ptr() as usize;
    let mut at = crate::record::wal::SEGMENT_HEADER as usize;
    let mut next = head.next_seq;
    let mut prev = head.hash;
    for frame in frames {
        let start = frame.blob.as_ptr() as usize - base;
        // The header before the payload: 16 bytes, or 12 in the first format.
        assert!(
            start == at + 16 || start == at + 12,
            "frame payload at {start}, previous frame ended at {at}"
        );
        at = start + frame.blob.len();
        let mut applied = 0;
        for entry in blob_entries(frame.blob) {
            let (seq, value) = entry.expect("an accepted frame reads whole");
            if seq < next {
                continue;
            }
            assert_eq!(seq, next, "records are contiguous");
            let split = split_value(value).expect("an accepted record splits");
            assert_eq!(
                split.hash,
                chain_hash(&prev, split.canonical),
                "record {seq} links"
            );
            prev = split.hash;
            next += 1;
            applied += 1;
        }
        assert_eq!(applied, frame.count);
        assert_eq!((frame.last.next_seq, frame.last.hash), (next, prev));
    }
    at
}
