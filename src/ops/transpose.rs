//! Batched transpose of the last two axes, `out[b, c, r] = inp[b, r, c]`. The GEMM kernels
//! read only row-major operands (as vec4s); ops that need `Aᵀ`, `Bᵀ` or a conv kernel with
//! its channel axes swapped transpose it first into a scratch tensor.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    inner: u32,
    in_start: u32,
    step_outer: u32,
    step_inner: u32,
    out_start: u32,
}

/// Which matrices of a batch [`transpose_gather`] reads: `outer × inner` of them, matrix
/// (i, j) at index `start + i·step_outer + j·step_inner` of the input, written in that
/// order from matrix `out_start` of the output. (The taps of one phase of a strided
/// convolution's kernel: every stride-th row and column of the tap grid.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixGather {
    /// Matrices along the outer axis (tap rows).
    pub outer: usize,
    /// Matrices along the inner axis (taps of one row).
    pub inner: usize,
    /// Index of the first matrix read.
    pub start: usize,
    /// Matrices between consecutive outer steps.
    pub step_outer: usize,
    /// Matrices between consecutive inner steps.
    pub step_inner: usize,
    /// Index of the first matrix written.
    pub out_start: usize,
}

impl MatrixGather {
    /// Every matrix of a batch of `batch`, in order.
    pub fn all(batch: usize) -> MatrixGather {
        MatrixGather {
            outer: batch,
            inner: 1,
            start: 0,
            step_outer: 1,
            step_inner: 0,
            out_start: 0,
        }
    }

    /// The input matrix that the `b`-th written matrix comes from.
    pub fn source(&self, b: usize) -> usize {
        self.start + (b / self.inner) * self.step_outer + (b % self.inner) * self.step_inner
    }

    /// Matrices read (and written).
    pub fn len(&self) -> usize {
        self.outer * self.inner
    }

    /// True when no matrix is read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    transpose_gather(gpu, out, inp, rows, cols, &MatrixGather::all(batch))
}

/// `out[g.out_start + b, c, r] = inp[g.source(b), r, c]` for every `b < g.len()`: the
/// transposes of the `rows × cols` matrices `g` picks.
pub fn transpose_gather(
    gpu: &Gpu,
    out: &Tensor,
    inp: &Tensor,
    rows: usize,
    cols: usize,
    g: &MatrixGather,
) -> Result<Dispatch> {
    ensure!(!g.is_empty(), "transpose: no matrix to move ({g:?})");
    let matrix = rows * cols;
    let last_in = g.source(g.len() - 1).max(g.start);
    ensure!(
        (last_in + 1) * matrix <= inp.len() && (g.out_start + g.len()) * matrix <= out.len(),
        "transpose: {g:?} of {rows}×{cols} matrices reads past the input ({} elements) or \
         writes past the output ({} elements)",
        inp.len(),
        out.len()
    );
    let params = Params {
        batch: u32_of(g.len(), "batch")?,
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        inner: u32_of(g.inner, "matrices")?,
        in_start: u32_of(g.start, "first matrix")?,
        step_outer: u32_of(g.step_outer, "matrix step")?,
        step_inner: u32_of(g.step_inner, "matrix step")?,
        out_start: u32_of(g.out_start, "first matrix")?,
    };
    // Element indices are u32 in the kernel.
    u32_of(inp.len().max(out.len()), "transpose elements")?;
    Dispatch::new(
        gpu,
        Kernel::Transpose,
        &params,
        &[&inp.buffer, &out.buffer],
        // One invocation per 4×4 block, 64 per workgroup.
        groups_for(g.len() * rows.div_ceil(4) * cols.div_ceil(4), 64),
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

/// CPU reference of [`transpose_gather`].
pub fn transpose_gather_cpu(
    out: &mut [f32],
    inp: &[f32],
    rows: usize,
    cols: usize,
    g: &MatrixGather,
) {
    let matrix = rows * cols;
    for b in 0..g.len() {
        let src = &inp[g.source(b) * matrix..][..matrix];
        let dst = &mut out[(g.out_start + b) * matrix..][..matrix];
        transpose_cpu(dst, src, 1, rows, cols);
    }
}
