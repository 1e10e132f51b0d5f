//! Element-wise merges of two same-shape tensors: Keras' `Add`, `Subtract`, `Multiply`,
//! `Average`, `Maximum` and `Minimum`, which fold their inputs pairwise
//! (`y = f(f(x0, x1), x2)…`, Average as the sum scaled by 1/n at the last step), and the
//! sum of a tensor's gradients from its several readers (`accumulate`).

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// The pairwise function of a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MergeOp {
    /// `a + b`.
    Add = 0,
    /// `a − b`.
    Subtract = 1,
    /// `a · b`.
    Multiply = 2,
    /// `max(a, b)`.
    Maximum = 3,
    /// `min(a, b)`.
    Minimum = 4,
    /// `a` alone: a copy, or `y += a` when accumulating.
    First = 5,
}

impl MergeOp {
    /// f(a, b).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            MergeOp::Add => a + b,
            MergeOp::Subtract => a - b,
            MergeOp::Multiply => a * b,
            MergeOp::Maximum => a.max(b),
            MergeOp::Minimum => a.min(b),
            MergeOp::First => a,
        }
    }

    /// (∂f/∂a, ∂f/∂b) at (a, b); maximum and minimum favour `a` on ties.
    pub fn partials(self, a: f32, b: f32) -> (f32, f32) {
        match self {
            MergeOp::Add => (1.0, 1.0),
            MergeOp::Subtract => (1.0, -1.0),
            MergeOp::Multiply => (b, a),
            MergeOp::Maximum if a >= b => (1.0, 0.0),
            MergeOp::Minimum if a <= b => (1.0, 0.0),
            MergeOp::Maximum | MergeOp::Minimum => (0.0, 1.0),
            MergeOp::First => (1.0, 0.0),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    kind: u32,
    accumulate: u32,
    scale: f32,
}

fn params(len: usize, op: MergeOp, accumulate: bool, scale: f32) -> Result<Params> {
    Ok(Params {
        n: u32_of(len, "elements")?,
        kind: op as u32,
        accumulate: u32::from(accumulate),
        scale,
    })
}

/// `y = op(a, b) · scale`, or `y += op(a, b) · scale` with `accumulate`. `y` must be
/// another tensor than `a` and `b` (which may be the same one).
pub fn merge_forward(
    gpu: &Gpu,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    op: MergeOp,
    scale: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    ensure!(
        a.len() == y.len() && b.len() == y.len(),
        "merge: inputs of {} and {} elements into an output of {}",
        a.len(),
        b.len(),
        y.len()
    );
    Dispatch::new(
        gpu,
        Kernel::MergeForward,
        &params(y.len(), op, accumulate, scale)?,
        &[&a.buffer, &b.buffer, &y.buffer],
        groups_for(y.len().div_ceil(4), 256),
    )
}

/// The gradients of [`merge_forward`]'s `y = op(a, b) · scale` (not accumulating):
/// `da = dy·scale·∂op/∂a`, `db = dy·scale·∂op/∂b`.
#[allow(clippy::too_many_arguments)]
pub fn merge_backward(
    gpu: &Gpu,
    da: &Tensor,
    db: &Tensor,
    dy: &Tensor,
    a: &Tensor,
    b: &Tensor,
    op: MergeOp,
    scale: f32,
) -> Result<Dispatch> {
    ensure!(
        op != MergeOp::First,
        "merge_backward: 'first' is not a merge"
    );
    ensure!(
        [da.len(), db.len(), a.len(), b.len()]
            .iter()
            .all(|&n| n == dy.len()),
        "merge backward: tensors of different sizes"
    );
    Dispatch::new(
        gpu,
        Kernel::MergeBackward,
        &params(dy.len(), op, false, scale)?,
        &[&dy.buffer, &a.buffer, &b.buffer, &da.buffer, &db.buffer],
        groups_for(dy.len().div_ceil(4), 256),
    )
}

/// CPU reference of [`merge_forward`].
pub fn merge_forward_cpu(
    y: &mut [f32],
    a: &[f32],
    b: &[f32],
    op: MergeOp,
    scale: f32,
    accumulate: bool,
) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        let v = op.apply(a, b) * scale;
        *y = if accumulate { *y + v } else { v };
    }
}

/// CPU reference of [`merge_backward`]; accumulates into `da` and `db` (llm.c style).
pub fn merge_backward_cpu(
    da: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    a: &[f32],
    b: &[f32],
    op: MergeOp,
    scale: f32,
) {
    for i in 0..dy.len() {
        let g = dy[i] * scale;
        let (pa, pb) = op.partials(a[i], b[i]);
        da[i] += g * pa;
        db[i] += g * pb;
    }
}
