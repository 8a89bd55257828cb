//! The size of the CPU's level-2 cache, read once: loop orders that trade L2 traffic for
//! fewer concurrent streams pay off only where a band fits in it (see `conv2d::rows`).

use std::sync::OnceLock;

/// Assumed where the CPU does not say: the smallest L2 of the x86-64 cores measured
/// (AMD EPYC, Zen 3), which keeps the loop orders chosen there.
const DEFAULT_L2_BYTES: usize = 512 << 10;

static L2_BYTES: OnceLock<usize> = OnceLock::new();

/// A size the unit tests set to run both sides of the choices that depend on it (they
/// change the order of the work, never a result); 0 for none.
#[cfg(test)]
pub static TEST_L2_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Bytes of level-2 cache per core.
pub fn l2_bytes() -> usize {
    #[cfg(test)]
    {
        let set = TEST_L2_BYTES.load(std::sync::atomic::Ordering::Relaxed);
        if set != 0 {
            return set;
        }
    }
    *L2_BYTES.get_or_init(|| detected_l2().unwrap_or(DEFAULT_L2_BYTES))
}

/// The L2 data (or unified) cache from CPUID's deterministic cache parameters: leaf 4 on
/// Intel, leaf 0x8000_001D on AMD (same layout).
#[cfg(target_arch = "x86_64")]
// CPUID is a safe intrinsic in recent Rust releases and `unsafe` in older ones.
#[allow(unused_unsafe)]
fn detected_l2() -> Option<usize> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let l2_in = |leaf: u32| {
        (0..16).find_map(|sub| {
            // SAFETY: CPUID exists on every x86-64 CPU.
            let r = unsafe { __cpuid_count(leaf, sub) };
            let (kind, level) = (r.eax & 0x1f, (r.eax >> 5) & 0x7);
            if kind == 0 {
                return Some(None); // no more caches
            }
            let ways = (r.ebx >> 22) as usize + 1;
            let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            // Data (1) or unified (3) cache of level 2.
            (level == 2 && kind != 2).then_some(Some(ways * partitions * line * sets))
        })?
    };
    // Leaves 0 and 0x8000_0000 give the highest basic and extended leaf: a leaf beyond
    // them returns data of no meaning.
    // SAFETY: CPUID exists on every x86-64 CPU.
    let (max_basic, max_ext) = unsafe { (__cpuid(0).eax, __cpuid(0x8000_0000).eax) };
    let from_basic = if max_basic >= 4 { l2_in(4) } else { None };
    from_basic
        .or_else(|| {
            (max_ext >= 0x8000_001d)
                .then(|| l2_in(0x8000_001d))
                .flatten()
        })
        .filter(|&b| b >= 64 << 10)
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_l2() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_size_is_plausible() {
        let l2 = l2_bytes();
        assert!((64 << 10..=64 << 20).contains(&l2), "{l2}");
        println!("L2: {} KiB", l2 >> 10);
    }
}
