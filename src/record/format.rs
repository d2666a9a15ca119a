//! Output helpers for the CLI: an aligned table, JSON Lines and a JSON array.
//!
//! Record fields come from callers and request paths, so the table escapes control
//! characters: an audit listing must not be able to drive the auditor's terminal.

use super::AuditRecord;

/// Longest reason text shown in a table cell before it is cut with "…".
const REASON_WIDTH: usize = 60;

/// Aligned columns: SEQ TIME CALLER ACTION TARGET DECISION REASON.
/// DECISION is `allow`/`deny`, with `(dry-run)` when the decision was not enforced.
pub fn format_table(records: &[AuditRecord]) -> String {
    let header = [
        "SEQ", "TIME", "CALLER", "ACTION", "TARGET", "DECISION", "REASON",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let target = r
                .target_name
                .as_deref()
                .or(r.target_id.as_deref().map(|id| id.get(..12).unwrap_or(id)))
                .unwrap_or("-");
            let decision = match (r.allowed, r.enforced) {
                (true, true) => "allow",
                (false, true) => "deny",
                (true, false) => "allow (dry-run)",
                (false, false) => "deny (dry-run)",
            };
            let reason = if r.reasons.is_empty() {
                "-".to_string()
            } else {
                cut(&r.reasons.join("; "), REASON_WIDTH)
            };
            [
                r.seq.to_string(),
                sanitize(&r.time),
                sanitize(&r.caller),
                sanitize(&r.action),
                sanitize(target),
                decision.to_string(),
                sanitize(&reason),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// One JSON object per line, oldest-to-newest as given.
pub fn format_jsonl(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&record_json(r));
        out.push('\n');
    }
    out
}

/// A pretty-printed JSON array.
pub fn format_json(records: &[AuditRecord]) -> String {
    serde_json::to_string_pretty(records).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// One record as a single JSON line (no trailing newline).
pub fn record_json(r: &AuditRecord) -> String {
    // Serializing plain strings, bools and numbers cannot fail.
    serde_json::to_string(r).unwrap_or_default()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, caller: &str, allowed: bool) -> AuditRecord {
        AuditRecord {
            seq,
            time: "2026-01-02T03:04:05Z".into(),
            caller: caller.into(),
            action: "container.start".into(),
            target_name: Some("web".into()),
            allowed,
            enforced: true,
            reasons: vec!["rule x".into()],
            ..Default::default()
        }
    }

    #[test]
    fn table_aligns_columns_and_escapes_controls() {
        let t = format_table(&[rec(1, "a", true), rec(1000, "long-caller\x1b[31m", false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SEQ   TIME"));
        let col = |l: &str| l.find("container.start").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(!t.contains('\x1b'));
        assert!(t.contains("\\u{1b}[31m"));
        assert!(lines[2].contains("deny"));
    }

    #[test]
    fn jsonl_round_trips() {
        let recs = vec![rec(1, "a", true), rec(2, "b", false)];
        let back: Vec<AuditRecord> = format_jsonl(&recs)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, recs);
        let arr: Vec<AuditRecord> = serde_json::from_str(&format_json(&recs)).unwrap();
        assert_eq!(arr, recs);
    }
}
