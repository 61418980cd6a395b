//! Little-endian integer fields with alignment 1, so `#[repr(C)]` layouts made of them have exactly
//! the offsets written in the ABI, on any host, and can be read from any byte buffer.

macro_rules! le_type {
    ($name:ident, $ty:ty, $n:expr) => {
        #[doc = concat!("A little-endian `", stringify!($ty), "` stored as bytes.")]
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name([u8; $n]);

        impl $name {
            pub const fn new(v: $ty) -> Self {
                Self(v.to_le_bytes())
            }
            pub const fn get(self) -> $ty {
                <$ty>::from_le_bytes(self.0)
            }
            pub const fn to_bytes(self) -> [u8; $n] {
                self.0
            }
            pub const fn from_bytes(b: [u8; $n]) -> Self {
                Self(b)
            }
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                Self::new(v)
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> Self {
                v.get()
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{:#x}", self.get())
            }
        }
    };
}

le_type!(Le16, u16, 2);
le_type!(Le32, u32, 4);
le_type!(Le64, u64, 8);

/// Reads a little-endian integer at `off`; the caller has checked the length.
pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_byte_order() {
        let v = Le32::new(0x1122_3344);
        assert_eq!(v.to_bytes(), [0x44, 0x33, 0x22, 0x11]);
        assert_eq!(v.get(), 0x1122_3344);
        assert_eq!(Le64::from(7u64).get(), 7);
        assert_eq!(Le16::new(0xabcd).to_bytes(), [0xcd, 0xab]);
        assert_eq!(core::mem::align_of::<Le64>(), 1);
        assert_eq!(core::mem::size_of::<Le64>(), 8);
    }
}
