//! Inverted dropout. The keep mask is a hash of (seed, index), recomputed by the backward
//! pass, so no mask buffer is stored; the seed changes every step.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::Result;

/// The dropout kernels' uniform (layout shared with the shaders).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    /// Elements in the tensor.
    pub n: u32,
    /// Fraction of elements dropped, in [0, 1).
    pub rate: f32,
    /// This step's seed for the keep mask.
    pub seed: u32,
    /// The global index of element 0: a rank training on a shard of the batch that starts
    /// at sample s passes s × (elements per sample), and draws the masks one process
    /// would draw for those samples.
    pub offset: u32,
}

impl DropoutParams {
    /// Params for `n` elements at `rate` with `seed`, offset 0; fails unless rate is in [0, 1).
    pub fn new(n: usize, rate: f32, seed: u32) -> Result<DropoutParams> {
        anyhow::ensure!(
            (0.0..1.0).contains(&rate),
            "dropout rate {rate} must be in [0, 1)"
        );
        Ok(DropoutParams {
            n: u32_of(n, "elements")?,
            rate,
            seed,
            offset: 0,
        })
    }

    /// The same with element 0 at global index `offset` (wrapping, as the shaders do).
    pub fn with_offset(self, offset: usize) -> DropoutParams {
        DropoutParams {
            offset: offset as u32,
            ..self
        }
    }
}

/// PCG hash; the shaders compute the same bits.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// Whether element `i` survives with this seed and rate.
pub fn keep(i: u32, seed: u32, rate: f32) -> bool {
    let u = (pcg(i ^ pcg(seed)) >> 8) as f32 * (1.0 / 16777216.0);
    u >= rate
}

/// `out = inp / (1 − rate)` where [`keep`] keeps the element, else 0.
pub fn dropout_forward(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    params: &Uniform<DropoutParams>,
) -> Result<Dispatch> {
    out.expect_len(inp.len(), "dropout output")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::DropoutForward,
        &params.buffer,
        &[&inp.buffer, &out.buffer],
        groups_for(inp.len(), 256),
    )
}

/// `dinp = dout / (1 − rate)` where the forward pass kept the element, else 0 (the mask
/// is recomputed from the same params).
pub fn dropout_backward(
    gpu: &Gpu,
    dinp: &Tensor,
    dout: &Tensor,
    params: &Uniform<DropoutParams>,
) -> Result<Dispatch> {
    dinp.expect_len(dout.len(), "dropout gradient")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::DropoutBackward,
        &params.buffer,
        &[&dout.buffer, &dinp.buffer],
        groups_for(dout.len(), 256),
    )
}

/// CPU reference of [`dropout_forward`].
pub fn dropout_forward_cpu(out: &mut [f32], inp: &[f32], p: &DropoutParams) {
    for (i, (o, &x)) in out.iter_mut().zip(inp).enumerate() {
        *o = if keep((i as u32).wrapping_add(p.offset), p.seed, p.rate) {
            x / (1.0 - p.rate)
        } else {
            0.0
        };
    }
}

/// CPU reference of [`dropout_backward`]; accumulates into `dinp`, as every backward
/// reference does (a tensor read by a dropout and another layer sums both gradients).
pub fn dropout_backward_cpu(dinp: &mut [f32], dout: &[f32], p: &DropoutParams) {
    for (i, (d, &g)) in dinp.iter_mut().zip(dout).enumerate() {
        if keep((i as u32).wrapping_add(p.offset), p.seed, p.rate) {
            *d += g / (1.0 - p.rate);
        }
    }
}
