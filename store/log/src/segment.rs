//! Segment layout planning: decides, without doing any I/O, where every record goes.
//!
//! The planner runs under the log's state lock at call time, so the in-memory index can hold
//! final disk locations before anything is written; the writer thread then carries the plans out
//! in the same order (see `group_commit`). Keeping the decisions here makes the writer a plain
//! executor and lets the layout rules be stated in one place:
//!
//! * Segments are ordered by id, which is the first index in the header and the file name. The
//!   last segment is the *tail*; only it is written to.
//! * A record goes at the tail's end if it fits; otherwise a new segment is started, named by the
//!   record's index and preallocated to `segment_size` (or larger, for one oversized record). An
//!   empty tail (header only) is grown instead, since the new segment would need its name.
//! * An empty tail's id is always the index the next append must start at.
//! * Truncation from `i` deletes every segment after the one holding entry `i` (all their entries
//!   are `> i`), then cuts that segment, the new tail, at entry `i`'s record. Cutting at the first
//!   record leaves an empty tail, whose id is `i`: the next index.
//! * Truncation is physical, never a marker record, so no segment's content depends on another
//!   one: deleting or cutting a segment can only shorten the log, never resurrect an entry.
//! * Purge to `p` deletes every non-tail segment whose successor starts at or below `p + 1` (all
//!   its live entries are `<= p`), and the tail too when the log ends up empty and the tail's id
//!   is `<= p`.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::format::{entry_record_len, SEGMENT_HEADER_LEN};
use crate::index::Loc;

/// Size and write position of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegInfo {
    /// File length (preallocated).
    pub size: u64,
    /// Offset just past the last record.
    pub end: u64,
}

/// What the writer must do to a segment before writing a run of records into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Write into the existing tail.
    Existing,
    /// Seal the current tail, then create this segment with `size` bytes and a header.
    Create { size: u64 },
    /// Extend the (empty) tail to `size` bytes first.
    Grow { size: u64 },
}

/// Consecutive records written with one `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub segment: u64,
    pub placement: Placement,
    /// Offset of the first record.
    pub offset: u64,
    /// How many of the append's entries, in order, this run holds.
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TruncatePlan {
    /// Segments to delete, newest first, before anything else.
    pub delete: Vec<u64>,
    /// The new tail and the offset to cut it at.
    pub cut_segment: u64,
    pub cut_offset: u64,
}

pub(crate) struct SegmentLayout {
    segment_size: u64,
    segments: BTreeMap<u64, SegInfo>,
}

impl SegmentLayout {
    pub(crate) fn new(segment_size: u64, segments: BTreeMap<u64, SegInfo>) -> Self {
        Self {
            segment_size,
            segments,
        }
    }

    /// Places `entries` (contiguous, continuing the log) and reports each entry's location.
    pub(crate) fn plan_append(
        &mut self,
        entries: &[(u64, Bytes)],
        mut located: impl FnMut(u64, Loc, &Bytes),
    ) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (index, data) in entries {
            let record = entry_record_len(data.len());
            let needed = SEGMENT_HEADER_LEN + record;
            let (segment, placement) = match self.segments.last_key_value() {
                Some((&id, info)) if info.end + record <= info.size => (id, Placement::Existing),
                Some((&id, info)) if info.end == SEGMENT_HEADER_LEN => {
                    debug_assert_eq!(id, *index, "an empty tail is named by the next index");
                    (id, Placement::Grow { size: needed })
                }
                _ => {
                    let size = self.segment_size.max(needed);
                    (*index, Placement::Create { size })
                }
            };
            let info = self.segments.entry(segment).or_insert(SegInfo {
                size: 0,
                end: SEGMENT_HEADER_LEN,
            });
            if let Placement::Create { size } | Placement::Grow { size } = placement {
                info.size = size;
            }
            let offset = info.end;
            info.end += record;
            located(
                *index,
                Loc {
                    segment,
                    offset,
                    len: data.len() as u32,
                },
                data,
            );
            match runs.last_mut() {
                Some(run) if run.segment == segment && placement == Placement::Existing => {
                    run.count += 1;
                }
                _ => runs.push(Run {
                    segment,
                    placement,
                    offset,
                    count: 1,
                }),
            }
        }
        runs
    }

    /// Plans removing every entry from the one located at `first_removed` on.
    pub(crate) fn plan_truncate(&mut self, first_removed: Loc) -> TruncatePlan {
        let deleted = self
            .segments
            .split_off(&first_removed.segment.saturating_add(1));
        // Newest first: a crash part-way leaves a shorter log, never one with a hole.
        let delete = deleted.keys().rev().copied().collect();
        if let Some(tail) = self.segments.get_mut(&first_removed.segment) {
            tail.end = first_removed.offset;
        }
        TruncatePlan {
            delete,
            cut_segment: first_removed.segment,
            cut_offset: first_removed.offset,
        }
    }

    /// Plans dropping entries `<= purged`; `now_empty` says whether any live entry remains.
    /// Returns the segments to delete, oldest first: a crash part-way leaves the oldest ones,
    /// which recovery recognises as purged.
    pub(crate) fn plan_purge(&mut self, purged: u64, now_empty: bool) -> Vec<u64> {
        let ids: Vec<u64> = self.segments.keys().copied().collect();
        let mut delete = Vec::new();
        for pair in ids.windows(2) {
            if pair[1] <= purged.saturating_add(1) {
                delete.push(pair[0]);
            }
        }
        if let Some(&tail) = ids.last() {
            if now_empty && tail <= purged {
                delete.push(tail);
            }
        }
        for id in &delete {
            self.segments.remove(id);
        }
        delete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 200;

    fn entries(range: std::ops::Range<u64>, len: usize) -> Vec<(u64, Bytes)> {
        range.map(|i| (i, Bytes::from(vec![0; len]))).collect()
    }

    fn layout() -> SegmentLayout {
        SegmentLayout::new(SIZE, BTreeMap::new())
    }

    fn append(layout: &mut SegmentLayout, range: std::ops::Range<u64>, len: usize) -> Vec<Run> {
        layout.plan_append(&entries(range, len), |_, _, _| {})
    }

    #[test]
    fn appends_fill_a_segment_then_rotate() {
        let mut layout = layout();
        // Records of 9 + 8 + 33 = 50 bytes: 3 fit after the 24-byte header of a 200-byte segment.
        let runs = append(&mut layout, 1..5, 33);
        assert_eq!(
            runs,
            vec![
                Run {
                    segment: 1,
                    placement: Placement::Create { size: SIZE },
                    offset: 24,
                    count: 3
                },
                Run {
                    segment: 4,
                    placement: Placement::Create { size: SIZE },
                    offset: 24,
                    count: 1
                },
            ]
        );
        let runs = append(&mut layout, 5..6, 33);
        assert_eq!(runs[0].placement, Placement::Existing);
        assert_eq!((runs[0].segment, runs[0].offset), (4, 74));
    }

    #[test]
    fn an_oversized_entry_gets_a_segment_of_its_own_size() {
        let mut layout = layout();
        let runs = append(&mut layout, 1..2, 500);
        assert_eq!(
            runs[0].placement,
            Placement::Create {
                size: 24 + 9 + 8 + 500
            }
        );
    }

    fn located(layout: &mut SegmentLayout, range: std::ops::Range<u64>) -> Vec<Loc> {
        let mut locs = Vec::new();
        layout.plan_append(&entries(range, 33), |_, loc, _| locs.push(loc));
        locs
    }

    #[test]
    fn truncation_deletes_later_segments_and_cuts_the_new_tail() {
        let mut layout = layout();
        let locs = located(&mut layout, 1..10); // segments 1 (1..=3), 4 (4..=6), 7 (7..=9)
        let plan = layout.plan_truncate(locs[1]);
        assert_eq!(
            plan,
            TruncatePlan {
                delete: vec![7, 4],
                cut_segment: 1,
                cut_offset: 74
            }
        );
        // Entry 2 goes where the old entry 2 was.
        let runs = append(&mut layout, 2..3, 33);
        assert_eq!(
            (runs[0].segment, runs[0].offset, runs[0].placement),
            (1, 74, Placement::Existing)
        );
    }

    #[test]
    fn truncation_at_a_segment_start_leaves_an_empty_tail_named_by_the_index() {
        let mut layout = layout();
        let locs = located(&mut layout, 1..7);
        let plan = layout.plan_truncate(locs[3]);
        assert_eq!(
            (plan.delete, plan.cut_segment, plan.cut_offset),
            (vec![], 4, 24)
        );
        let runs = append(&mut layout, 4..5, 33);
        assert_eq!((runs[0].segment, runs[0].offset), (4, 24));
    }

    #[test]
    fn purge_deletes_whole_segments_only() {
        let mut layout = layout();
        append(&mut layout, 1..10, 33); // segments 1, 4, 7
        assert_eq!(layout.plan_purge(5, false), vec![1]);
        assert_eq!(layout.plan_purge(6, false), vec![4]);
        assert_eq!(layout.plan_purge(8, false), Vec::<u64>::new());
        assert_eq!(layout.plan_purge(9, true), vec![7]);
        let runs = append(&mut layout, 10..11, 33);
        assert_eq!(runs[0].placement, Placement::Create { size: SIZE });
    }
}
