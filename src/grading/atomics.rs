//! Vectors of atomics that several threads fill at once (each its own slots), in the allocations
//! of plain integers: made without writing every element first, and turned back without a copy.
//! A relaxed atomic load or store is a plain one on the machines we run on; atomics only say,
//! without `unsafe` at every write, that the slots are shared.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// `n` atomic zeros in memory the kernel zeroes as it is first touched (by the threads that
/// place values, in parallel), instead of being filled here first.
pub fn zeroed_u64(n: usize) -> Vec<AtomicU64> {
    const _: () = assert!(std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>());
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u64; n]);
    // SAFETY: `AtomicU64` has the size and bit validity of `u64` (std documents it) and, as
    // asserted above, its alignment, so the allocation is a valid `Vec<AtomicU64>` of the same
    // length and capacity; `zeros` is never used again.
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU64>(), zeros.len(), zeros.capacity()) }
}

/// The plain integers of atomics no other thread can see any more, in the same allocation.
pub fn plain_u64(atomics: Vec<AtomicU64>) -> Vec<u64> {
    let mut atomics = std::mem::ManuallyDrop::new(atomics);
    // SAFETY: as in `zeroed_u64`, the other way round: the allocation holds `len` initialised
    // values of the same size, alignment and bit validity; `atomics` is never used again.
    unsafe { Vec::from_raw_parts(atomics.as_mut_ptr().cast::<u64>(), atomics.len(), atomics.capacity()) }
}

/// [`zeroed_u64`] for `u8`.
pub fn zeroed_u8(n: usize) -> Vec<AtomicU8> {
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u8; n]);
    // SAFETY: as in `zeroed_u64` (`AtomicU8` has the size, alignment and bit validity of `u8`).
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU8>(), zeros.len(), zeros.capacity()) }
}

/// [`zeroed_u64`] for `u32`.
pub fn zeroed_u32(n: usize) -> Vec<AtomicU32> {
    const _: () = assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>());
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u32; n]);
    // SAFETY: as in `zeroed_u64`.
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU32>(), zeros.len(), zeros.capacity()) }
}

/// Plain integers as atomics, in the same allocation.
pub fn atomic_u64(values: Vec<u64>) -> Vec<AtomicU64> {
    let mut values = std::mem::ManuallyDrop::new(values);
    // SAFETY: as in `zeroed_u64`: the same size, alignment and bit validity; `values` is never
    // used again.
    unsafe { Vec::from_raw_parts(values.as_mut_ptr().cast::<AtomicU64>(), values.len(), values.capacity()) }
}
