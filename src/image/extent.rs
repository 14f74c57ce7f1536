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
}
