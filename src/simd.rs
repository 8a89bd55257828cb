//! The one place that decides which instruction set the kernels use.
//!
//! The level is detected once per process from the CPU, then capped by the environment
//! variable `CONVRS_SIMD` (`scalar`, `avx2`, `avx512`, `neon`), so every kernel set can be
//! exercised on one machine. The scalar set is always compiled.

use std::sync::OnceLock;

use crate::error::{ConvError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Scalar,
    /// AVX2 + FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F/VL/DQ/BW plus AVX2 + FMA (x86-64-v4).
    Avx512,
    /// Advanced SIMD, the aarch64 baseline.
    Neon,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Neon => "neon",
        }
    }

    pub fn parse(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(SimdLevel::Scalar),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            "neon" => Some(SimdLevel::Neon),
            _ => None,
        }
    }

    /// Width class used for capping: a cap of rank r allows any level of rank <= r.
    fn rank(self) -> u8 {
        match self {
            SimdLevel::Scalar => 0,
            SimdLevel::Avx2 | SimdLevel::Neon => 1,
            SimdLevel::Avx512 => 2,
        }
    }
}

/// The best level this CPU supports, ignoring `CONVRS_SIMD`.
pub fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        let v3 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let v4 = v3
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw");
        if v4 {
            SimdLevel::Avx512
        } else if v3 {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        SimdLevel::Neon
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        SimdLevel::Scalar
    }
}

/// The best detected level that does not exceed `cap`.
pub fn capped(detected: SimdLevel, cap: Option<SimdLevel>) -> SimdLevel {
    match cap {
        Some(cap) if cap.rank() < detected.rank() => {
            if cap.rank() == 0 {
                SimdLevel::Scalar
            } else if detected == SimdLevel::Avx512 {
                SimdLevel::Avx2
            } else {
                detected
            }
        }
        _ => detected,
    }
}

/// Parse `CONVRS_SIMD`; an unknown name is an error reported at import time.
pub fn cap_from_env() -> Result<Option<SimdLevel>> {
    match std::env::var("CONVRS_SIMD") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => SimdLevel::parse(&v).map(Some).ok_or_else(|| {
            ConvError::Value(format!(
                "CONVRS_SIMD must be one of 'scalar', 'avx2', 'avx512', 'neon'; got {v:?}"
            ))
        }),
        Err(_) => Ok(None),
    }
}

static LEVEL: OnceLock<SimdLevel> = OnceLock::new();

/// The level every kernel dispatch uses, fixed for the life of the process.
pub fn level() -> SimdLevel {
    *LEVEL.get_or_init(|| capped(detected(), cap_from_env().ok().flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_never_raises_the_level() {
        assert_eq!(
            capped(SimdLevel::Avx2, Some(SimdLevel::Avx512)),
            SimdLevel::Avx2
        );
        assert_eq!(
            capped(SimdLevel::Avx512, Some(SimdLevel::Avx2)),
            SimdLevel::Avx2
        );
        assert_eq!(
            capped(SimdLevel::Avx512, Some(SimdLevel::Scalar)),
            SimdLevel::Scalar
        );
        assert_eq!(
            capped(SimdLevel::Neon, Some(SimdLevel::Scalar)),
            SimdLevel::Scalar
        );
        assert_eq!(capped(SimdLevel::Neon, None), SimdLevel::Neon);
    }

    #[test]
    fn names_round_trip() {
        for l in [
            SimdLevel::Scalar,
            SimdLevel::Avx2,
            SimdLevel::Avx512,
            SimdLevel::Neon,
        ] {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
        }
        assert_eq!(SimdLevel::parse("sse"), None);
    }
}
