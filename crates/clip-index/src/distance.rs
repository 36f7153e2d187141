//! The inner loop of every search and insert: the dot product of two
//! embeddings. Written so the compiler vectorises it, and compiled again for
//! AVX-512 and for AVX2 with FMA, chosen at run time: the default x86-64
//! target only has 4-wide SSE2, and this loop is most of the index's CPU time.

/// The dot product of `a` and `b` (of equal length).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_in_lanes::<16>(a, b, |x, y, sum| sum + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    // Four 16-wide accumulators hide the latency of the fused multiply-adds.
    dot_in_lanes::<64>(a, b, f32::mul_add)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_in_lanes::<32>(a, b, f32::mul_add)
}

/// Sums in `LANES` independent parts: floating-point addition is not
/// associative, so the compiler only vectorises a sum it is given split up.
#[inline(always)]
fn dot_in_lanes<const LANES: usize>(
    a: &[f32],
    b: &[f32],
    multiply_add: impl Fn(f32, f32, f32) -> f32,
) -> f32 {
    let mut sums = [0.0f32; LANES];
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] = multiply_add(x[lane], y[lane], sums[lane]);
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_at_every_length() {
        for len in [0, 1, 15, 16, 17, 33, 65, 512, 515] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - plain).abs() < 1e-4, "length {len}");
            let portable = dot_in_lanes::<16>(&a, &b, |x, y, sum| sum + x * y);
            assert!((portable as f64 - plain).abs() < 1e-4, "length {len}");
        }
    }
}
