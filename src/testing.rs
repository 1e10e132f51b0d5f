//! Helpers shared by the tests and benches: seeded random data and a tolerance check that
//! prints the first mismatches (llm.c's `validate_result`).

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` uniform values in [-1, 1) from `seed`.
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `n` labels in 0..classes from `seed`.
pub fn random_labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.random_range(0..classes as u32))
        .collect()
}

/// `n` random 8×8 grey images (values in [0, 1)) labelled by their brightest third
/// (rows 0–2⅔, 2⅔–5⅓, 5⅓–8 as pixels 0..21, 21..42, 42..64): a task a small model
/// partly learns in a few steps.
pub fn brightest_third(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let x: Vec<f32> = random_vec(n * 64, seed).iter().map(|v| v.abs()).collect();
    let y = (0..n)
        .map(|i| {
            let img = &x[i * 64..(i + 1) * 64];
            let s = |r: std::ops::Range<usize>| img[r].iter().sum::<f32>();
            let parts = [s(0..21), s(21..42), s(42..64)];
            (0..3)
                .max_by(|&a, &b| parts[a].total_cmp(&parts[b]))
                .unwrap_or(0) as u32
        })
        .collect();
    (x, y)
}

/// A field of this process's `/proc/self/status` in KiB (`VmRSS`, `VmHWM`: the resident
/// set and its peak); 0 where there is no /proc.
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A NaN-filled vector: written into outputs before a kernel runs, so that any element the
/// kernel fails to write fails the comparison.
pub fn poison(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

/// Largest |gpu − cpu| seen.
pub fn max_abs_diff(gpu: &[f32], cpu: &[f32]) -> f32 {
    gpu.iter()
        .zip(cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Checks `|gpu − cpu| ≤ atol + rtol·|cpu|` element-wise (NaN never passes); on failure the
/// error lists the first ten mismatches and the count.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) -> Result<f32> {
    if gpu.len() != cpu.len() {
        bail!("{what}: GPU gave {} values, CPU {}", gpu.len(), cpu.len());
    }
    let mut bad = Vec::new();
    let mut count = 0;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = (g - c).abs() <= atol + rtol * c.abs();
        if !ok {
            count += 1;
            if bad.len() < 10 {
                bad.push(format!("  [{i}] gpu {g:.6e} cpu {c:.6e}"));
            }
        }
    }
    if count > 0 {
        bail!(
            "{what}: {count} of {} elements differ (atol {atol}, rtol {rtol}); first:\n{}",
            cpu.len(),
            bad.join("\n")
        );
    }
    let worst = max_abs_diff(gpu, cpu);
    // Shown with `cargo test -- --nocapture`: the largest error each check saw.
    eprintln!("{what}: max |gpu − cpu| = {worst:.2e}");
    Ok(worst)
}

/// Central finite difference of `f` w.r.t. `x[i]`, in f64.
pub fn finite_diff(x: &mut [f32], i: usize, eps: f32, mut f: impl FnMut(&[f32]) -> f64) -> f64 {
    let orig = x[i];
    x[i] = orig + eps;
    let plus = f(x);
    x[i] = orig - eps;
    let minus = f(x);
    x[i] = orig;
    (plus - minus) / (2.0 * f64::from(eps))
}

/// Every element-wise activation, the parameterised ones with Keras' defaults and with
/// other parameters (a leaky slope, a cap and a threshold together, another alpha).
pub fn every_activation() -> Vec<crate::ops::activation::Act> {
    use crate::ops::activation::Act;
    vec![
        Act::Linear,
        Act::RELU,
        Act::RELU6,
        Act::leaky_relu(0.2),
        Act::leaky_relu(0.3),
        Act::Relu {
            negative_slope: 0.1,
            max_value: 6.0,
            threshold: 1.0,
        },
        Act::Sigmoid,
        Act::Tanh,
        Act::Elu { alpha: 1.0 },
        Act::Elu { alpha: 0.5 },
        Act::Softplus,
        Act::Softsign,
        Act::HardSigmoid,
        Act::Gelu { approximate: false },
        Act::Gelu { approximate: true },
        Act::Silu,
        Act::HardSwish,
    ]
}
