//! Softmax and the fused softmax + cross-entropies: sparse (class indices; forward gives
//! probabilities and per-sample losses, backward `(p − onehot)/B`, and a reduction adds
//! the batch's loss sum and correct count to totals that stay on the GPU) and categorical
//! (class distributions as targets, one-hot or soft, with label smoothing; its per-row
//! losses and hits go to the totals through [`super::loss::loss_totals`]).
//!
//! `rows` is the batch buffer's capacity; `valid` (rewritten per step) is how many rows
//! hold real samples, so a last, partial batch needs no new buffers.

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// The loss kernels' shape uniform: rows, columns, valid rows and top-k.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowsParams {
    rows: u32,
    cols: u32,
    valid: u32,
    /// loss_metrics' correct rows: 0, the label is the argmax (first maximum); k ≥ 1,
    /// fewer than k classes are more probable than the label.
    top_k: u32,
}

/// The shape uniform shared by the loss kernels of one batch buffer.
pub struct BatchRows {
    /// Rows of the batch buffer (its capacity in samples).
    pub rows: usize,
    /// Columns per row: classes, or elements per sample for the element-wise losses.
    pub cols: usize,
    top_k: u32,
    uniform: Uniform<RowsParams>,
}

impl BatchRows {
    /// The uniform for `rows` rows of `cols` columns, every row valid, top-k 0.
    pub fn new(gpu: &Gpu, rows: usize, cols: usize) -> Result<BatchRows> {
        let p = RowsParams {
            rows: u32_of(rows, "rows")?,
            cols: u32_of(cols, "classes")?,
            valid: rows as u32,
            top_k: 0,
        };
        Ok(BatchRows {
            rows,
            cols,
            top_k: 0,
            uniform: Uniform::new(gpu, &p, "batch rows"),
        })
    }
    /// Counts a row correct when fewer than `k` classes are more probable than its label
    /// (Keras' sparse top-k categorical accuracy; ties at the boundary count); 0, the
    /// default: when the label is the argmax (the first maximum: Keras' accuracy).
    pub fn set_top_k(&mut self, gpu: &Gpu, k: usize) -> Result<()> {
        self.top_k = u32_of(k, "k")?;
        self.set_valid(gpu, self.rows)
    }

    /// The buffer holding (rows, classes, valid rows): kernels that count samples read it.
    pub(crate) fn uniform_buffer(&self) -> &wgpu::Buffer {
        &self.uniform.buffer
    }

    /// Sets how many leading rows are real samples for the next submission.
    pub fn set_valid(&self, gpu: &Gpu, valid: usize) -> Result<()> {
        ensure!(
            valid <= self.rows,
            "{valid} samples do not fit a batch of {}",
            self.rows
        );
        self.uniform.set(
            gpu,
            &RowsParams {
                rows: self.rows as u32,
                cols: self.cols as u32,
                valid: valid as u32,
                top_k: self.top_k,
            },
        );
        Ok(())
    }
    fn check(&self, t: &Tensor, what: &str) -> Result<()> {
        t.expect_len(self.rows * self.cols, what)
    }
}

/// Row-wise softmax (inference).
pub fn softmax(gpu: &Gpu, probs: &Tensor, logits: &Tensor, rows: &BatchRows) -> Result<Dispatch> {
    rows.check(logits, "softmax logits")?;
    rows.check(probs, "softmax probabilities")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::Softmax,
        &rows.uniform.buffer,
        &[&logits.buffer, &probs.buffer],
        groups_for(rows.rows, 64),
    )
}

/// Probabilities and per-sample loss.
pub fn softmax_xent_forward(
    gpu: &Gpu,
    probs: &Tensor,
    loss: &Tensor,
    logits: &Tensor,
    labels: &Tensor,
    rows: &BatchRows,
) -> Result<Dispatch> {
    rows.check(logits, "loss logits")?;
    rows.check(probs, "loss probabilities")?;
    labels.expect_len(rows.rows, "labels")?;
    loss.expect_len(rows.rows, "per-sample loss")?;
    let bufs = [&logits.buffer, &labels.buffer, &probs.buffer, &loss.buffer];
    Dispatch::with_uniform(
        gpu,
        Kernel::SoftmaxXentForward,
        &rows.uniform.buffer,
        &bufs,
        groups_for(rows.rows, 64),
    )
}

/// `dlogits = (probs − onehot(labels)) / valid`.
pub fn softmax_xent_backward(
    gpu: &Gpu,
    dlogits: &Tensor,
    probs: &Tensor,
    labels: &Tensor,
    rows: &BatchRows,
) -> Result<Dispatch> {
    rows.check(dlogits, "loss gradient")?;
    rows.check(probs, "loss probabilities")?;
    labels.expect_len(rows.rows, "labels")?;
    let bufs = [&probs.buffer, &labels.buffer, &dlogits.buffer];
    Dispatch::with_uniform(
        gpu,
        Kernel::SoftmaxXentBackward,
        &rows.uniform.buffer,
        &bufs,
        groups_for(rows.rows * rows.cols, 256),
    )
}

/// `totals[0] += Σ loss`, `totals[1] += #(argmax probs == label)` over the valid rows.
pub fn loss_metrics(
    gpu: &Gpu,
    totals: &Tensor,
    probs: &Tensor,
    labels: &Tensor,
    loss: &Tensor,
    rows: &BatchRows,
) -> Result<Dispatch> {
    rows.check(probs, "loss probabilities")?;
    labels.expect_len(rows.rows, "labels")?;
    loss.expect_len(rows.rows, "per-sample loss")?;
    totals.expect_len(2, "metric totals")?;
    let bufs = [&probs.buffer, &labels.buffer, &loss.buffer, &totals.buffer];
    Dispatch::with_uniform(gpu, Kernel::LossMetrics, &rows.uniform.buffer, &bufs, 1)
}

/// CPU softmax of each row.
pub fn softmax_cpu(probs: &mut [f32], logits: &[f32], cols: usize) {
    for (p, z) in probs.chunks_mut(cols).zip(logits.chunks(cols)) {
        let mx = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f64 = z.iter().map(|&v| f64::from((v - mx).exp())).sum();
        p.iter_mut()
            .zip(z)
            .for_each(|(p, &v)| *p = (f64::from((v - mx).exp()) / sum) as f32);
    }
}

/// CPU reference of the fused forward; rows at or past `valid` get loss 0.
pub fn softmax_xent_forward_cpu(
    probs: &mut [f32],
    loss: &mut [f32],
    logits: &[f32],
    labels: &[u32],
    cols: usize,
    valid: usize,
) {
    softmax_cpu(probs, logits, cols);
    for (r, z) in logits.chunks(cols).enumerate() {
        let mx = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = f64::from(mx) + z.iter().map(|&v| f64::from(v - mx).exp()).sum::<f64>().ln();
        let label = (labels[r] as usize).min(cols - 1);
        loss[r] = if r < valid {
            (lse - f64::from(z[label])) as f32
        } else {
            0.0
        };
    }
}

/// CPU reference of the fused backward: `(p − onehot)/valid`, 0 for padding rows.
pub fn softmax_xent_backward_cpu(
    dlogits: &mut [f32],
    probs: &[f32],
    labels: &[u32],
    cols: usize,
    valid: usize,
) {
    for (r, (d, p)) in dlogits.chunks_mut(cols).zip(probs.chunks(cols)).enumerate() {
        for (j, (d, &p)) in d.iter_mut().zip(p).enumerate() {
            let onehot = if labels[r] as usize == j { 1.0 } else { 0.0 };
            *d = if r < valid {
                (p - onehot) / valid as f32
            } else {
                0.0
            };
        }
    }
}

/// CPU reference of [`loss_metrics`]: (loss sum, correct count) over the valid rows, a
/// row correct as [`BatchRows::set_top_k`] says (`top_k` 0: the first argmax).
pub fn loss_metrics_cpu(
    probs: &[f32],
    labels: &[u32],
    loss: &[f32],
    (cols, top_k): (usize, usize),
    valid: usize,
) -> (f64, usize) {
    let mut sum = 0f64;
    let mut hits = 0;
    for r in 0..valid {
        sum += f64::from(loss[r]);
        let row = &probs[r * cols..][..cols];
        let l = (labels[r] as usize).min(cols - 1);
        let first = top_k == 0;
        let rank = (0..cols)
            .filter(|&j| row[j] > row[l] || (first && row[j] == row[l] && j < l))
            .count();
        hits += usize::from(rank < top_k.max(1));
    }
    (sum, hits)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftParams {
    smoothing: f32,
    _pad: [u32; 3],
}

fn soft_params(smoothing: f32) -> Result<SoftParams> {
    ensure!(
        (0.0..=1.0).contains(&smoothing),
        "CategoricalCrossentropy: label_smoothing {smoothing} must be in [0, 1]"
    );
    Ok(SoftParams {
        smoothing,
        _pad: [0; 3],
    })
}

/// Categorical cross-entropy on class distributions `targets` (rows × classes): the
/// probabilities, per-row losses and hits (argmax p == argmax t), 0 past the valid rows.
#[allow(clippy::too_many_arguments)]
pub fn soft_xent_forward(
    gpu: &Gpu,
    probs: &Tensor,
    row_loss: &Tensor,
    row_hit: &Tensor,
    logits: &Tensor,
    targets: &Tensor,
    rows: &BatchRows,
    smoothing: f32,
) -> Result<Dispatch> {
    rows.check(logits, "loss logits")?;
    rows.check(probs, "loss probabilities")?;
    rows.check(targets, "target distributions")?;
    row_loss.expect_len(rows.rows, "per-row loss")?;
    row_hit.expect_len(rows.rows, "per-row hits")?;
    Dispatch::new(
        gpu,
        Kernel::SoftXentForward,
        &soft_params(smoothing)?,
        &[
            &rows.uniform.buffer,
            &logits.buffer,
            &targets.buffer,
            &probs.buffer,
            &row_loss.buffer,
            &row_hit.buffer,
        ],
        groups_for(rows.rows, 64),
    )
}

/// `dlogits = (probs·Σt' − t') / valid`, t' the smoothed targets.
pub fn soft_xent_backward(
    gpu: &Gpu,
    dlogits: &Tensor,
    probs: &Tensor,
    targets: &Tensor,
    rows: &BatchRows,
    smoothing: f32,
) -> Result<Dispatch> {
    for (t, what) in [
        (dlogits, "loss gradient"),
        (probs, "probabilities"),
        (targets, "targets"),
    ] {
        rows.check(t, what)?;
    }
    Dispatch::new(
        gpu,
        Kernel::SoftXentBackward,
        &soft_params(smoothing)?,
        &[
            &rows.uniform.buffer,
            &probs.buffer,
            &targets.buffer,
            &dlogits.buffer,
        ],
        groups_for(rows.rows, 64),
    )
}

/// CPU reference of [`soft_xent_forward`] (f64 sums); returns per-row (loss, hit).
pub fn soft_xent_forward_cpu(
    probs: &mut [f32],
    logits: &[f32],
    targets: &[f32],
    (rows, cols, valid): (usize, usize, usize),
    smoothing: f32,
) -> Vec<(f64, f64)> {
    softmax_cpu(probs, logits, cols);
    let first_max = |v: &[f32]| (1..v.len()).fold(0, |b, j| if v[j] > v[b] { j } else { b });
    (0..rows)
        .map(|r| {
            if r >= valid {
                return (0.0, 0.0);
            }
            let (z, t, p) = (
                &logits[r * cols..][..cols],
                &targets[r * cols..][..cols],
                &probs[r * cols..][..cols],
            );
            let mx = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let lse = f64::from(mx) + z.iter().map(|&v| f64::from(v - mx).exp()).sum::<f64>().ln();
            let s = f64::from(smoothing);
            let loss = z
                .iter()
                .zip(t)
                .map(|(&zj, &tj)| {
                    (f64::from(tj) * (1.0 - s) + s / cols as f64) * (lse - f64::from(zj))
                })
                .sum();
            (loss, f64::from(u8::from(first_max(p) == first_max(t))))
        })
        .collect()
}

/// CPU reference of [`soft_xent_backward`].
pub fn soft_xent_backward_cpu(
    dlogits: &mut [f32],
    probs: &[f32],
    targets: &[f32],
    (rows, cols, valid): (usize, usize, usize),
    smoothing: f32,
) {
    let s = f64::from(smoothing);
    for r in 0..rows {
        let t: Vec<f64> = targets[r * cols..][..cols]
            .iter()
            .map(|&v| f64::from(v) * (1.0 - s) + s / cols as f64)
            .collect();
        let total: f64 = t.iter().sum();
        for j in 0..cols {
            dlogits[r * cols + j] = if r < valid {
                ((f64::from(probs[r * cols + j]) * total - t[j]) / valid.max(1) as f64) as f32
            } else {
                0.0
            };
        }
    }
}

/// `confusion[label·C + argmax p] += 1` over the valid rows (u32 counts), for MeanIoU.
pub fn confusion(
    gpu: &Gpu,
    confusion: &Tensor,
    probs: &Tensor,
    labels: &Tensor,
    rows: &BatchRows,
) -> Result<Dispatch> {
    rows.check(probs, "probabilities")?;
    labels.expect_len(rows.rows, "labels")?;
    confusion.expect_len(rows.cols * rows.cols, "confusion matrix")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::Confusion,
        &rows.uniform.buffer,
        &[&probs.buffer, &labels.buffer, &confusion.buffer],
        groups_for(rows.rows, 64),
    )
}

/// CPU reference of [`confusion`]: adds the valid rows' (label, first argmax) counts.
pub fn confusion_cpu(
    confusion: &mut [u64],
    probs: &[f32],
    labels: &[u32],
    cols: usize,
    valid: usize,
) {
    for r in 0..valid {
        let row = &probs[r * cols..][..cols];
        let best = (1..cols).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        let label = (labels[r] as usize).min(cols - 1);
        confusion[label * cols + best] += 1;
    }
}

/// Keras' MeanIoU from a confusion matrix (rows: labels, columns: predictions): the
/// mean over classes seen (in labels or predictions) of TP / (TP + FP + FN).
pub fn mean_iou(confusion: &[u64], classes: usize) -> f64 {
    let (mut sum, mut seen) = (0f64, 0usize);
    for c in 0..classes {
        let tp = confusion[c * classes + c] as f64;
        let row: u64 = confusion[c * classes..][..classes].iter().sum();
        let col: u64 = (0..classes).map(|r| confusion[r * classes + c]).sum();
        let denominator = row as f64 + col as f64 - tp;
        if denominator > 0.0 {
            sum += tp / denominator;
            seen += 1;
        }
    }
    if seen == 0 { 0.0 } else { sum / seen as f64 }
}
