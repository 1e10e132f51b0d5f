//! BatchNormalization over the last axis of a `[rows, channels]` tensor (rows = batch·H·W
//! after a conv, batch after a dense layer), Keras semantics: batch mean and biased
//! variance in training (over the valid rows of a partial batch only), moving averages
//! `m ← momentum·m + (1 − momentum)·batch` updated there and used in inference. Forward
//! (both modes) and backward are one dispatch each, one workgroup per quad of channels.
//! The kernels read and write whole vec4s only; a channel count that is not a multiple
//! of 4 runs on zero-padded copies of the row tensors (the padded channels are all-zero
//! channels: mean 0, variance 0), which keeps the shaders small and cheap to compile.

use super::concat::ColumnPadding;
use super::u32_of;
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// The kernels' uniform: shapes, mode, valid rows of the current batch.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BatchNormParams {
    rows: u32,
    channels: u32,
    valid: u32,
    training: u32,
    momentum: f32,
    epsilon: f32,
    _pad: [u32; 2],
}

impl BatchNormParams {
    /// `rows` rows of `channels`, all valid, training or inference.
    pub fn new(
        rows: usize,
        channels: usize,
        training: bool,
        momentum: f32,
        epsilon: f32,
    ) -> Result<BatchNormParams> {
        ensure!(
            rows > 0 && channels > 0,
            "batch normalization of {rows} rows × {channels} channels: both must be positive"
        );
        Ok(BatchNormParams {
            rows: u32_of(rows, "rows")?,
            channels: u32_of(channels, "channels")?,
            valid: rows as u32,
            training: u32::from(training),
            momentum,
            epsilon,
            _pad: [0; 2],
        })
    }

    /// The same with only the first `valid` rows real (a partial batch).
    pub fn with_valid(self, valid: usize) -> BatchNormParams {
        BatchNormParams {
            valid: (valid as u32).min(self.rows),
            ..self
        }
    }

    /// The same for a frozen layer in training (Keras' `trainable = False`): the moving
    /// statistics, as in inference, kept in `saved` for the backward pass (whose input
    /// gradient is then the per-channel scale γ·inv alone).
    pub fn frozen(self) -> BatchNormParams {
        BatchNormParams {
            training: 2,
            ..self
        }
    }

    /// The same in inference mode (moving statistics).
    pub fn inference(self) -> BatchNormParams {
        BatchNormParams {
            training: 0,
            ..self
        }
    }

    fn rows(&self) -> usize {
        self.rows as usize
    }
    fn channels(&self) -> usize {
        self.channels as usize
    }
}

/// Workgroups: one per quad of channels.
fn groups(channels: usize) -> u64 {
    channels.div_ceil(4) as u64
}

/// Elements of the `saved` batch statistics of `channels` channels: [mean (C4),
/// 1/√(var + ε) (C4)], C4 = channels rounded up to a multiple of 4.
pub fn saved_len(channels: usize) -> usize {
    2 * channels.next_multiple_of(4)
}

/// The kernels' [rows, C4] view of `rows × c` tensors: `(rows, c, C4)`.
fn padded_dims(rows: usize, c: usize) -> (usize, usize, usize) {
    (rows, c, c.next_multiple_of(4))
}

const PADDED: &str = "batch normalization, channels padded";

/// `y = γ·(x − mean)/√(var + ε) + β`: with the batch statistics (kept in `saved` as
/// [mean, 1/√(var + ε)], and folded into the moving ones) when the uniform says training,
/// with the moving statistics otherwise.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    gpu: &Gpu,
    y: &Tensor,
    x: &Tensor,
    [gamma, beta, moving_mean, moving_var]: [&Tensor; 4],
    saved: &Tensor,
    uniform: &Uniform<BatchNormParams>,
    p: &BatchNormParams,
) -> Result<Dispatch> {
    let (rows, c) = (p.rows(), p.channels());
    x.expect_len(rows * c, "batch normalization input")?;
    y.expect_len(rows * c, "batch normalization output")?;
    for (t, what) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (moving_mean, "moving mean"),
        (moving_var, "moving variance"),
    ] {
        t.expect_len(c, what)?;
    }
    saved.expect_len(saved_len(c), "batch statistics")?;
    let mut pad = ColumnPadding::new();
    let (xp, yp);
    let (x, y) = if c.is_multiple_of(4) {
        (x, y)
    } else {
        xp = pad.input(gpu, x, padded_dims(rows, c), PADDED)?;
        yp = pad.output(gpu, y, padded_dims(rows, c), false, PADDED)?;
        (&xp, &yp)
    };
    let main = Dispatch::with_uniform(
        gpu,
        Kernel::BatchNormForward,
        &uniform.buffer,
        &[
            &x.buffer,
            &y.buffer,
            &gamma.buffer,
            &beta.buffer,
            &moving_mean.buffer,
            &moving_var.buffer,
            &saved.buffer,
        ],
        groups(c),
    )?;
    Ok(pad.around(main))
}

/// `dx`, `dγ`, `dβ` (all overwritten) from `dy`, with the statistics the training
/// forward pass saved.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    gpu: &Gpu,
    dx: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &Tensor,
    uniform: &Uniform<BatchNormParams>,
    p: &BatchNormParams,
) -> Result<Dispatch> {
    let (rows, c) = (p.rows(), p.channels());
    for (t, what) in [(dx, "dx"), (dy, "dy"), (x, "input")] {
        t.expect_len(rows * c, &format!("batch normalization {what}"))?;
    }
    for (t, what) in [(dgamma, "dgamma"), (dbeta, "dbeta"), (gamma, "gamma")] {
        t.expect_len(c, what)?;
    }
    saved.expect_len(saved_len(c), "batch statistics")?;
    let mut pad = ColumnPadding::new();
    let (xp, dyp, dxp);
    let (x, dy, dx) = if c.is_multiple_of(4) {
        (x, dy, dx)
    } else {
        xp = pad.input(gpu, x, padded_dims(rows, c), PADDED)?;
        dyp = pad.input(gpu, dy, padded_dims(rows, c), PADDED)?;
        dxp = pad.output(gpu, dx, padded_dims(rows, c), false, PADDED)?;
        (&xp, &dyp, &dxp)
    };
    let main = Dispatch::with_uniform(
        gpu,
        Kernel::BatchNormBackward,
        &uniform.buffer,
        &[
            &x.buffer,
            &dy.buffer,
            &dx.buffer,
            &gamma.buffer,
            &saved.buffer,
            &dgamma.buffer,
            &dbeta.buffer,
        ],
        groups(c),
    )?;
    Ok(pad.around(main))
}

/// The per-channel tensors of a BatchNormalization layer on the host, in Keras' order.
pub struct BatchNormState<'a> {
    /// Scale γ, one per channel.
    pub gamma: &'a [f32],
    /// Offset β, one per channel.
    pub beta: &'a [f32],
    /// Moving mean, one per channel (updated in training).
    pub moving_mean: &'a mut [f32],
    /// Moving variance, one per channel (updated in training).
    pub moving_var: &'a mut [f32],
}

/// CPU reference of [`batchnorm_forward`] (f64 statistics). In training it returns the
/// batch [mean (C4), 1/√(var + ε) (C4)] (what the GPU keeps in `saved`, padded channels
/// being all-zero ones) and updates the moving statistics; in inference it returns them
/// computed from the moving ones.
pub fn batchnorm_forward_cpu(
    y: &mut [f32],
    x: &[f32],
    s: BatchNormState<'_>,
    p: &BatchNormParams,
) -> Vec<f32> {
    let (rows, c, valid) = (p.rows(), p.channels(), p.valid as usize);
    let eps = f64::from(p.epsilon);
    let c4 = c.next_multiple_of(4);
    let mut saved = vec![0f32; saved_len(c)];
    for pad in c..c4 {
        saved[c4 + pad] = (1.0 / eps.sqrt()) as f32;
    }
    for ch in 0..c {
        let (mean, inv) = if p.training == 1 {
            let n = valid.max(1) as f64;
            let mean = (0..valid).map(|r| f64::from(x[r * c + ch])).sum::<f64>() / n;
            let var = (0..valid)
                .map(|r| (f64::from(x[r * c + ch]) - mean).powi(2))
                .sum::<f64>()
                / n;
            let k = 1.0 - f64::from(p.momentum);
            let (mm, mv) = (f64::from(s.moving_mean[ch]), f64::from(s.moving_var[ch]));
            s.moving_mean[ch] = (mm + k * (mean - mm)) as f32;
            s.moving_var[ch] = (mv + k * (var - mv)) as f32;
            (mean, 1.0 / (var + eps).sqrt())
        } else {
            (
                f64::from(s.moving_mean[ch]),
                1.0 / (f64::from(s.moving_var[ch]) + eps).sqrt(),
            )
        };
        saved[ch] = mean as f32;
        saved[c4 + ch] = inv as f32;
        let (g, b) = (f64::from(s.gamma[ch]), f64::from(s.beta[ch]));
        for r in 0..rows {
            y[r * c + ch] = ((f64::from(x[r * c + ch]) - mean) * inv * g + b) as f32;
        }
    }
    saved
}

/// CPU reference of [`batchnorm_backward`], accumulating into `dx`, `dgamma`, `dbeta`
/// (rows past `valid` get no gradient), from the batch statistics `saved`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_cpu(
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    saved: &[f32],
    p: &BatchNormParams,
) {
    let (c, valid) = (p.channels(), p.valid as usize);
    let c4 = c.next_multiple_of(4);
    let n = valid.max(1) as f64;
    for ch in 0..c {
        let (mean, inv) = (f64::from(saved[ch]), f64::from(saved[c4 + ch]));
        let xh = |r: usize| (f64::from(x[r * c + ch]) - mean) * inv;
        let sd: f64 = (0..valid).map(|r| f64::from(dy[r * c + ch])).sum();
        let sdx: f64 = (0..valid).map(|r| f64::from(dy[r * c + ch]) * xh(r)).sum();
        dbeta[ch] += sd as f32;
        dgamma[ch] += sdx as f32;
        let k = f64::from(gamma[ch]) * inv;
        // Frozen (fixed statistics): no gradient through the mean and variance.
        let (md, mdx) = if p.training == 1 {
            (sd / n, sdx / n)
        } else {
            (0.0, 0.0)
        };
        for r in 0..valid {
            dx[r * c + ch] += (k * (f64::from(dy[r * c + ch]) - md - xh(r) * mdx)) as f32;
        }
    }
}
