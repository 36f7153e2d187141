//! The inner loop of every search and insert: the dot product of two
//! embeddings, with AVX-512 and AVX2-with-FMA versions chosen at run time
//! (the default x86-64 target only has 4-wide SSE2, and this loop is most of
//! the index's CPU time) and a portable one the compiler vectorises.

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
    dot_in_lanes::<16>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{__m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
    use std::arch::x86_64::{_mm512_reduce_add_ps, _mm512_setzero_ps};
    let load = |chunk: &[f32; 64], part: usize| -> __m512 {
        // SAFETY: floats 16 × part to 16 × part + 15 of a 64-float chunk (part < 4)
        // are in bounds; the load needs no alignment.
        unsafe { _mm512_loadu_ps(chunk[16 * part..].as_ptr()) }
    };
    // Four accumulators hide the latency of the fused multiply-adds.
    let mut sums = [_mm512_setzero_ps(); 4];
    let (a_chunks, a_rest) = a.as_chunks::<64>();
    let (b_chunks, b_rest) = b.as_chunks::<64>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for (part, sum) in sums.iter_mut().enumerate() {
            *sum = _mm512_fmadd_ps(load(x, part), load(y, part), *sum);
        }
    }
    // Adding the lanes in a tree, not the chain of 64 dependent scalar adds the
    // compiler makes of a portable sum (which cost as much as the loop itself).
    let sum = _mm512_add_ps(
        _mm512_add_ps(sums[0], sums[1]),
        _mm512_add_ps(sums[2], sums[3]),
    );
    _mm512_reduce_add_ps(sum) + dot_plain(a_rest, b_rest)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{__m256, _mm256_add_ps, _mm256_castps256_ps128};
    use std::arch::x86_64::{_mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps};
    use std::arch::x86_64::{_mm256_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32};
    use std::arch::x86_64::{_mm_movehl_ps, _mm_shuffle_ps};
    let load = |chunk: &[f32; 32], part: usize| -> __m256 {
        // SAFETY: floats 8 × part to 8 × part + 7 of a 32-float chunk (part < 4)
        // are in bounds; the load needs no alignment.
        unsafe { _mm256_loadu_ps(chunk[8 * part..].as_ptr()) }
    };
    let mut sums = [_mm256_setzero_ps(); 4];
    let (a_chunks, a_rest) = a.as_chunks::<32>();
    let (b_chunks, b_rest) = b.as_chunks::<32>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for (part, sum) in sums.iter_mut().enumerate() {
            *sum = _mm256_fmadd_ps(load(x, part), load(y, part), *sum);
        }
    }
    let sum = _mm256_add_ps(
        _mm256_add_ps(sums[0], sums[1]),
        _mm256_add_ps(sums[2], sums[3]),
    );
    let four = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    let one = _mm_add_ss(two, _mm_shuffle_ps::<1>(two, two));
    _mm_cvtss_f32(one) + dot_plain(a_rest, b_rest)
}

/// The dot product of the few values past the last whole chunk.
fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Sums in `LANES` independent parts: floating-point addition is not
/// associative, so the compiler only vectorises a sum it is given split up.
#[inline(always)]
fn dot_in_lanes<const LANES: usize>(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    // Halving the lanes pairwise lets the compiler add them as vectors.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
    }
    sums[0] + dot_plain(a_rest, b_rest)
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
            let portable = dot_in_lanes::<16>(&a, &b);
            assert!((portable as f64 - plain).abs() < 1e-4, "length {len}");
            // The AVX2 path, which `dot` skips on a CPU with AVX-512.
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                let avx2 = unsafe { dot_avx2(&a, &b) };
                assert!((avx2 as f64 - plain).abs() < 1e-4, "length {len}");
            }
        }
    }
}
