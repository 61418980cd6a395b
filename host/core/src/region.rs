//! Region arithmetic: the lock granule of the target volume.

/// A run of `count` regions starting at region `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Regions {
    pub first: u64,
    pub count: u64,
}

impl Regions {
    /// The regions a byte range `[offset, offset + len)` touches; `len` must be non-zero.
    pub fn of_bytes(offset: u64, len: u64, region_size: u64) -> Regions {
        debug_assert!(len > 0 && region_size.is_power_of_two());
        let first = offset / region_size;
        let last = (offset + len - 1) / region_size;
        Regions {
            first,
            count: last - first + 1,
        }
    }

    pub fn end(self) -> u64 {
        self.first + self.count
    }

    pub fn overlaps(self, other: Regions) -> bool {
        self.first < other.end() && other.first < self.end()
    }

    pub fn contains(self, other: Regions) -> bool {
        self.first <= other.first && other.end() <= self.end()
    }
}

/// Whether byte ranges `[a, a + alen)` and `[b, b + blen)` overlap.
pub fn bytes_overlap(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b + blen && b < a + alen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_unaligned_ranges() {
        assert_eq!(
            Regions::of_bytes(0, 1, 4096),
            Regions { first: 0, count: 1 }
        );
        assert_eq!(
            Regions::of_bytes(4095, 2, 4096),
            Regions { first: 0, count: 2 }
        );
        assert_eq!(
            Regions::of_bytes(4096, 4096, 4096),
            Regions { first: 1, count: 1 }
        );
        assert_eq!(
            Regions::of_bytes(100, 3 * 4096, 4096),
            Regions { first: 0, count: 4 }
        );
    }

    #[test]
    fn overlap_and_containment() {
        let a = Regions { first: 2, count: 3 };
        assert!(a.overlaps(Regions { first: 4, count: 1 }));
        assert!(!a.overlaps(Regions { first: 5, count: 1 }));
        assert!(!a.overlaps(Regions { first: 0, count: 2 }));
        assert!(a.contains(Regions { first: 3, count: 2 }));
        assert!(!a.contains(Regions { first: 3, count: 3 }));
        assert!(bytes_overlap(0, 10, 9, 1));
        assert!(!bytes_overlap(0, 10, 10, 1));
    }
}
