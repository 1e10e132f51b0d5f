//! Batched transpose of the last two axes, `out[b, c, r] = inp[b, r, c]`. The GEMM kernels
//! read only row-major operands (as vec4s); ops that need `Aᵀ`, `Bᵀ` or a conv kernel with
//! its channel axes swapped transpose it first into a scratch tensor.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    _pad: u32,
}

/// `out[b, c, r] = inp[b, r, c]` for `inp` of shape `[batch, rows, cols]`.
pub fn transpose(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let n = batch * rows * cols;
    inp.expect_len(n, "transpose input")?;
    out.expect_len(n, "transpose output")?;
    let params = Params {
        batch: u32_of(batch, "batch")?,
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        _pad: 0,
    };
    Dispatch::new(
        gpu,
        Kernel::Transpose,
        &params,
        &[&inp.buffer, &out.buffer],
        // One invocation per 4×4 block, 64 per workgroup.
        groups_for(batch * rows.div_ceil(4) * cols.div_ceil(4), 64),
    )
}

/// CPU reference of [`transpose`].
pub fn transpose_cpu(out: &mut [f32], inp: &[f32], batch: usize, rows: usize, cols: usize) {
    for b in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                out[(b * cols + c) * rows + r] = inp[(b * rows + r) * cols + c];
            }
        }
    }
}
