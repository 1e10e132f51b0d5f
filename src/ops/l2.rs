//! Keras' `l2(factor)` kernel regularizer inside the training step: the penalty
//! `factor·Σw²` joins the loss total (once per sample, so that the mean is data loss plus
//! penalty, as Keras reports it), and its gradient `2·factor·w` joins the kernel's
//! gradient before the optimizer update (an accumulating merge: `grad += w·2·factor`).

use super::merge::{MergeOp, merge_forward};
use super::softmax_xent::BatchRows;
use super::u32_of;
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    factor: f32,
    _pad: [u32; 2],
}

/// `totals[0] += valid·factor·Σw²` for the batch `rows` describes.
pub fn l2_penalty(
    gpu: &Gpu,
    totals: &Tensor,
    w: &Tensor,
    factor: f32,
    rows: &BatchRows,
) -> Result<Dispatch> {
    totals.expect_len(2, "metric totals")?;
    let params = gpu.uniform(
        &Params {
            n: u32_of(w.len(), "weights")?,
            factor,
            _pad: [0; 2],
        },
        "l2 penalty",
    );
    Dispatch::with_uniform(
        gpu,
        Kernel::L2Penalty,
        rows.uniform_buffer(),
        &[&params, &w.buffer, &totals.buffer],
        1,
    )
}

/// `grad += 2·factor·w`.
pub fn l2_gradient(gpu: &Gpu, grad: &Tensor, w: &Tensor, factor: f32) -> Result<Dispatch> {
    merge_forward(gpu, grad, w, w, MergeOp::First, 2.0 * factor, true)
}

/// CPU reference of the penalty `factor·Σw²` (f64).
pub fn l2_penalty_cpu(w: &[f32], factor: f32) -> f64 {
    f64::from(factor) * w.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()
}

/// CPU reference of [`l2_gradient`].
pub fn l2_gradient_cpu(grad: &mut [f32], w: &[f32], factor: f32) {
    grad.iter_mut()
        .zip(w)
        .for_each(|(g, &v)| *g += v * (2.0 * factor));
}
