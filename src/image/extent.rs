//! Byte ranges of a disk, kept sorted and disjoint: which parts of a VDI hold data.

/// `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

impl Extent {
    pub fn new(start: u64, len: u64) -> Extent {
        Extent { start, len }
    }
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Sorted, with overlapping and touching ranges merged and empty ones dropped.
pub fn normalize(mut v: Vec<Extent>) -> Vec<Extent> {
    v.retain(|e| e.len > 0);
    v.sort_unstable();
    let mut out: Vec<Extent> = Vec::with_capacity(v.len());
    for e in v {
        match out.last_mut() {
            Some(last) if e.start <= last.end() => {
                last.len = last.len.max(e.end() - last.start);
            }
            _ => out.push(e),
        }
    }
    out
}

/// Each range widened to whole `unit`s, cut at `size`, then normalized.
pub fn align(v: &[Extent], unit: u64, size: u64) -> Vec<Extent> {
    let v = v
        .iter()
        .filter(|e| e.start < size)
        .map(|e| {
            let start = e.start / unit * unit;
            let end = e
                .end()
                .min(size)
                .div_ceil(unit)
                .saturating_mul(unit)
                .min(size);
            Extent::new(start, end - start)
        })
        .collect();
    normalize(v)
}

/// What of `a` (normalized) is not in `b` (normalized).
pub fn subtract(a: &[Extent], b: &[Extent]) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut j = 0;
    for e in a {
        let (mut start, end) = (e.start, e.end());
        while j < b.len() && b[j].end() <= start {
            j += 1;
        }
        let mut k = j;
        while start < end && k < b.len() && b[k].start < end {
            if b[k].start > start {
                out.push(Extent::new(start, b[k].start - start));
            }
            start = start.max(b[k].end());
            k += 1;
        }
        if start < end {
            out.push(Extent::new(start, end - start));
        }
    }
    out
}

/// The total length.
pub fn total(v: &[Extent]) -> u64 {
    v.iter().map(|e| e.len).sum()
}

/// The ranges cut into pieces of at most `max` bytes, for bounded reads.
pub fn pieces(v: &[Extent], max: u64) -> impl Iterator<Item = Extent> + '_ {
    v.iter().flat_map(move |e| {
        (0..e.len.div_ceil(max)).map(move |i| {
            let start = e.start + i * max;
            Extent::new(start, max.min(e.end() - start))
        })
    })
}

/// A growing set of byte ranges, kept merged: which bytes of a disk were written, asked
/// piece by piece as writes arrive (a migration's leaf, written 4 KiB at a time).
#[derive(Debug, Default, Clone)]
pub struct ExtentSet {
    /// start -> end, disjoint and not touching.
    ranges: std::collections::BTreeMap<u64, u64>,
}

impl ExtentSet {
    pub fn from_extents(v: &[Extent]) -> ExtentSet {
        let mut s = ExtentSet::default();
        for e in v {
            s.insert(e.start, e.len);
        }
        s
    }

    /// Adds `len` bytes from `start`, merged with what overlaps or touches them.
    pub fn insert(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (mut start, mut end) = (start, start.saturating_add(len));
        // The range that begins at or before `start` and reaches it.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let inside: Vec<u64> = self.ranges.range(start..=end).map(|(s, _)| *s).collect();
        for s in inside {
            let e = self.ranges.remove(&s).expect("listed");
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    /// `len` bytes from `start` cut where the set begins or ends: each piece in order,
    /// with whether the set holds it.
    pub fn split(&self, start: u64, len: u64) -> Vec<(Extent, bool)> {
        let end = start.saturating_add(len);
        let mut out = Vec::new();
        let mut at = start;
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .filter(|(_, &e)| e > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        for (&s, &e) in self.ranges.range(first..end) {
            if s > at {
                out.push((Extent::new(at, s - at), false));
                at = s;
            }
            let to = e.min(end);
            if to > at {
                out.push((Extent::new(at, to - at), true));
                at = to;
            }
        }
        if at < end {
            out.push((Extent::new(at, end - at), false));
        }
        out
    }

    /// The ranges, sorted and merged.
    pub fn extents(&self) -> Vec<Extent> {
        self.ranges
            .iter()
            .map(|(&s, &e)| Extent::new(s, e - s))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(v: &[(u64, u64)]) -> Vec<Extent> {
        v.iter().map(|&(s, l)| Extent::new(s, l)).collect()
    }

    #[test]
    fn normalizes_aligns_and_subtracts() {
        assert_eq!(
            normalize(x(&[(10, 5), (0, 3), (3, 2), (12, 10), (40, 0)])),
            x(&[(0, 5), (10, 12)])
        );
        assert_eq!(
            align(&x(&[(1, 1), (70, 10), (200, 100)]), 64, 256),
            x(&[(0, 128), (192, 64)])
        );
        let a = x(&[(0, 100), (200, 100)]);
        let b = x(&[(10, 10), (90, 120), (250, 10), (400, 1)]);
        assert_eq!(
            subtract(&a, &b),
            x(&[(0, 10), (20, 70), (210, 40), (260, 40)])
        );
        assert_eq!(subtract(&a, &[]), a);
        assert_eq!(subtract(&[], &a), vec![]);
        assert_eq!(total(&a), 200);
        let p: Vec<_> = pieces(&x(&[(0, 10), (20, 3)]), 4).collect();
        assert_eq!(p, x(&[(0, 4), (4, 4), (8, 2), (20, 3)]));
    }

    #[test]
    fn a_set_merges_what_it_is_given_and_splits_a_range_where_it_ends() {
        let mut s = ExtentSet::default();
        s.insert(100, 10);
        s.insert(200, 50);
        s.insert(110, 5); // touches: merged
        s.insert(240, 20); // overlaps
        s.insert(0, 0);
        assert_eq!(s.extents(), x(&[(100, 15), (200, 60)]));
        let got = s.split(90, 200);
        let want = vec![
            (Extent::new(90, 10), false),
            (Extent::new(100, 15), true),
            (Extent::new(115, 85), false),
            (Extent::new(200, 60), true),
            (Extent::new(260, 30), false),
        ];
        assert_eq!(got, want);
        assert_eq!(s.split(105, 5), vec![(Extent::new(105, 5), true)]);
        assert_eq!(s.split(120, 5), vec![(Extent::new(120, 5), false)]);
        s.insert(50, 300); // swallows both
        assert_eq!(s.extents(), x(&[(50, 300)]));
        assert_eq!(
            ExtentSet::from_extents(&x(&[(5, 5), (0, 5)])).extents(),
            x(&[(0, 10)])
        );
    }

    #[test]
    fn a_set_answers_as_a_list_of_bytes_would() {
        // Against a byte map, over many random inserts and splits.
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut set = ExtentSet::default();
        let mut bytes = vec![false; 4096];
        for _ in 0..400 {
            let (s, l) = (next(4000), next(90));
            set.insert(s, l);
            for b in &mut bytes[s as usize..(s + l) as usize] {
                *b = true;
            }
            let (qs, ql) = (next(4000), next(96) + 1);
            let pieces = set.split(qs, ql);
            assert_eq!(pieces.iter().map(|(e, _)| e.len).sum::<u64>(), ql);
            let mut at = qs;
            for (e, held) in pieces {
                assert_eq!(e.start, at);
                at = e.end();
                assert!((e.start..e.end()).all(|i| bytes[i as usize] == held));
            }
        }
        let covered: u64 = bytes.iter().filter(|b| **b).count() as u64;
        assert_eq!(total(&set.extents()), covered);
    }
}
