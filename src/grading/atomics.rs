//! Vectors of atomics that several threads fill at once (each its own slots), in the allocations
//! of plain integers: made without writing every element first, and turned back without a copy.
//! A relaxed atomic load or store is a plain one on the machines we run on; atomics only say,
//! without `unsafe` at every write, that the slots are shared.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// A plain integer and its atomic twin, which std documents to have the same size and bit
/// validity; the alignment is asserted for each pair below.
///
/// # Safety
/// `Atomic` must have the size, alignment and bit validity of `Self`.
pub unsafe trait Plain: Copy + Default {
    type Atomic;
}

macro_rules! plain {
    ($plain:ty, $atomic:ty) => {
        const _: () =
            assert!(std::mem::align_of::<$atomic>() == std::mem::align_of::<$plain>() && std::mem::size_of::<$atomic>() == std::mem::size_of::<$plain>());
        // SAFETY: std documents the same size and bit validity; the alignment is asserted above.
        unsafe impl Plain for $plain {
            type Atomic = $atomic;
        }
    };
}

plain!(u8, AtomicU8);
plain!(u32, AtomicU32);
plain!(u64, AtomicU64);

/// `n` atomic zeros in memory the kernel zeroes as it is first touched (by the threads that
/// place values, in parallel), instead of being filled here first.
pub fn zeroed<T: Plain>(n: usize) -> Vec<T::Atomic> {
    atomic(vec![T::default(); n])
}

/// Plain integers as atomics, in the same allocation.
pub fn atomic<T: Plain>(values: Vec<T>) -> Vec<T::Atomic> {
    let mut values = std::mem::ManuallyDrop::new(values);
    // SAFETY: `T::Atomic` has the size, alignment and bit validity of `T` (the trait's
    // contract), so the allocation is a valid vector of as many atomics with the same capacity;
    // `values` is never used again.
    unsafe { Vec::from_raw_parts(values.as_mut_ptr().cast::<T::Atomic>(), values.len(), values.capacity()) }
}

/// The plain integers of atomics no other thread can see any more, in the same allocation.
pub fn plain<T: Plain>(atomics: Vec<T::Atomic>) -> Vec<T> {
    let mut atomics = std::mem::ManuallyDrop::new(atomics);
    // SAFETY: as in `atomic`, the other way round: every atomic holds an initialised value of
    // the same size, alignment and bit validity; `atomics` is never used again.
    unsafe { Vec::from_raw_parts(atomics.as_mut_ptr().cast::<T>(), atomics.len(), atomics.capacity()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn round_trips_keep_values_and_allocation() {
        let values: Vec<u64> = (0..1000).map(|i| i * 7).collect();
        let pointer = values.as_ptr() as usize;
        let atomics = atomic(values);
        atomics[3].store(99, Ordering::Relaxed);
        let back: Vec<u64> = plain(atomics);
        assert_eq!(back.as_ptr() as usize, pointer, "no copy");
        assert_eq!((back[2], back[3], back[999]), (14, 99, 6993));
        let zeros = zeroed::<u8>(5);
        assert!(zeros.iter().all(|z| z.load(Ordering::Relaxed) == 0));
        assert_eq!(plain::<u32>(zeroed::<u32>(3)), vec![0, 0, 0]);
    }
}
