//! Element-wise losses and metrics for value targets (Keras 3): mean squared and
//! absolute error, Huber, binary cross-entropy on probabilities or logits (label
//! smoothing), with MAE, MSE or binary accuracy beside them. The forward pass gives per-
//! sample means (the batch's valid rows only, as the class losses do), the backward pass
//! the gradient of the batch mean. [`BatchRows`] carries (rows, elements per sample, valid
//! rows) as for the softmax losses.

use super::groups_for;
use super::softmax_xent::BatchRows;
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// An element-wise loss, Keras 3's formula and defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ElementLoss {
    /// `mean((y − t)²)`.
    MeanSquaredError,
    /// `mean(|y − t|)`.
    MeanAbsoluteError,
    /// `½x²` for `|x| ≤ delta`, `delta·|x| − ½delta²` beyond (Keras' delta 1.0).
    Huber {
        /// Where the loss turns from quadratic to linear.
        delta: f32,
    },
    /// `−(t·ln y + (1 − t)·ln(1 − y))` on probabilities clipped to [1e-7, 1 − 1e-7], or on
    /// logits (`from_logits`); targets smoothed to `t·(1 − s) + s/2`.
    BinaryCrossentropy {
        /// Whether `y` holds logits rather than probabilities.
        from_logits: bool,
        /// The smoothing `s`, in [0, 1].
        label_smoothing: f32,
    },
}

/// A metric computed beside an element-wise loss, per element and averaged like it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ElementMetric {
    /// `mean(|y − t|)`.
    MeanAbsoluteError,
    /// `mean((y − t)²)`.
    MeanSquaredError,
    /// The fraction of elements whose target equals `y > threshold` as 0 or 1 (Keras'
    /// `binary_accuracy`, threshold 0.5; 0 for logits): a target strictly between 0 and 1
    /// never counts.
    BinaryAccuracy {
        /// Predictions above it count as 1.
        threshold: f32,
    },
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    kind: u32,
    metric: u32,
    delta: f32,
    smoothing: f32,
    threshold: f32,
    _pad: [u32; 3],
}

fn params(loss: ElementLoss, metric: ElementMetric) -> Result<Params> {
    let (kind, delta, smoothing) = match loss {
        ElementLoss::MeanSquaredError => (0, 0.0, 0.0),
        ElementLoss::MeanAbsoluteError => (1, 0.0, 0.0),
        ElementLoss::Huber { delta } => {
            ensure!(delta > 0.0, "Huber: delta {delta} must be positive");
            (2, delta, 0.0)
        }
        ElementLoss::BinaryCrossentropy {
            from_logits,
            label_smoothing,
        } => {
            ensure!(
                (0.0..=1.0).contains(&label_smoothing),
                "BinaryCrossentropy: label_smoothing {label_smoothing} must be in [0, 1]"
            );
            (if from_logits { 4 } else { 3 }, 0.0, label_smoothing)
        }
    };
    let (metric, threshold) = match metric {
        ElementMetric::MeanAbsoluteError => (0, 0.0),
        ElementMetric::MeanSquaredError => (1, 0.0),
        ElementMetric::BinaryAccuracy { threshold } => (2, threshold),
    };
    Ok(Params {
        kind,
        metric,
        delta,
        smoothing,
        threshold,
        _pad: [0; 3],
    })
}

/// Per sample: `sample_loss[i]`, `sample_metric[i]` = the means over its elements (0 past
/// the valid rows).
#[allow(clippy::too_many_arguments)]
pub fn loss_forward(
    gpu: &Gpu,
    sample_loss: &Tensor,
    sample_metric: &Tensor,
    pred: &Tensor,
    target: &Tensor,
    rows: &BatchRows,
    loss: ElementLoss,
    metric: ElementMetric,
) -> Result<Dispatch> {
    let n = rows.rows * rows.cols;
    pred.expect_len(n, "loss predictions")?;
    target.expect_len(n, "loss targets")?;
    sample_loss.expect_len(rows.rows, "per-sample losses")?;
    sample_metric.expect_len(rows.rows, "per-sample metrics")?;
    Dispatch::new(
        gpu,
        Kernel::LossForward,
        &params(loss, metric)?,
        &[
            rows.uniform_buffer(),
            &pred.buffer,
            &target.buffer,
            &sample_loss.buffer,
            &sample_metric.buffer,
        ],
        groups_for(rows.rows, 64),
    )
}

/// `dpred` = the gradient of the batch's mean loss (0 past the valid rows).
pub fn loss_backward(
    gpu: &Gpu,
    dpred: &Tensor,
    pred: &Tensor,
    target: &Tensor,
    rows: &BatchRows,
    loss: ElementLoss,
) -> Result<Dispatch> {
    let n = rows.rows * rows.cols;
    for (t, what) in [(dpred, "dpred"), (pred, "predictions"), (target, "targets")] {
        t.expect_len(n, &format!("loss {what}"))?;
    }
    let p = params(loss, ElementMetric::MeanAbsoluteError)?;
    Dispatch::new(
        gpu,
        Kernel::LossBackward,
        &p,
        &[
            rows.uniform_buffer(),
            &pred.buffer,
            &target.buffer,
            &dpred.buffer,
        ],
        groups_for(n, 256),
    )
}

/// `totals[0] += Σ sample_loss`, `totals[1] += Σ sample_metric` over the valid rows.
pub fn loss_totals(
    gpu: &Gpu,
    totals: &Tensor,
    sample_loss: &Tensor,
    sample_metric: &Tensor,
    rows: &BatchRows,
) -> Result<Dispatch> {
    sample_loss.expect_len(rows.rows, "per-sample losses")?;
    sample_metric.expect_len(rows.rows, "per-sample metrics")?;
    totals.expect_len(2, "metric totals")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::LossTotals,
        rows.uniform_buffer(),
        &[&sample_loss.buffer, &sample_metric.buffer, &totals.buffer],
        1,
    )
}

const EPS: f64 = 1e-7;

fn smooth(t: f64, s: f32) -> f64 {
    t * (1.0 - f64::from(s)) + 0.5 * f64::from(s)
}

/// One element's loss (f64).
pub fn element_loss(loss: ElementLoss, y: f32, t: f32) -> f64 {
    let (y, t) = (f64::from(y), f64::from(t));
    let x = y - t;
    match loss {
        ElementLoss::MeanSquaredError => x * x,
        ElementLoss::MeanAbsoluteError => x.abs(),
        ElementLoss::Huber { delta } => {
            let d = f64::from(delta);
            if x.abs() <= d {
                0.5 * x * x
            } else {
                d * x.abs() - 0.5 * d * d
            }
        }
        ElementLoss::BinaryCrossentropy {
            from_logits: false,
            label_smoothing,
        } => {
            // Clipped in f32, as Keras does: 1 − 1e-7 rounds to 1 − 1.19e-7 there.
            let q = f64::from((y as f32).clamp(EPS as f32, 1.0 - EPS as f32));
            let s = smooth(t, label_smoothing);
            -(s * q.ln() + (1.0 - s) * (1.0 - q).ln())
        }
        ElementLoss::BinaryCrossentropy {
            from_logits: true,
            label_smoothing,
        } => y.max(0.0) - y * smooth(t, label_smoothing) + (-y.abs()).exp().ln_1p(),
    }
}

/// One element's loss derivative dloss/dy (f64).
pub fn element_slope(loss: ElementLoss, y: f32, t: f32) -> f64 {
    let (y, t) = (f64::from(y), f64::from(t));
    let x = y - t;
    match loss {
        ElementLoss::MeanSquaredError => 2.0 * x,
        ElementLoss::MeanAbsoluteError => {
            if x == 0.0 {
                0.0
            } else {
                x.signum()
            }
        }
        ElementLoss::Huber { delta } => x.clamp(-f64::from(delta), f64::from(delta)),
        ElementLoss::BinaryCrossentropy {
            from_logits: false,
            label_smoothing,
        } => {
            let s = smooth(t, label_smoothing);
            let (lo, hi) = (f64::from(EPS as f32), f64::from(1.0 - EPS as f32));
            if y > lo && y < hi {
                (1.0 - s) / (1.0 - y) - s / y
            } else {
                0.0
            }
        }
        ElementLoss::BinaryCrossentropy {
            from_logits: true,
            label_smoothing,
        } => 1.0 / (1.0 + (-y).exp()) - smooth(t, label_smoothing),
    }
}

fn element_metric(metric: ElementMetric, y: f32, t: f32) -> f64 {
    let x = f64::from(y) - f64::from(t);
    match metric {
        ElementMetric::MeanAbsoluteError => x.abs(),
        ElementMetric::MeanSquaredError => x * x,
        ElementMetric::BinaryAccuracy { threshold } => {
            f64::from(u8::from(t == f32::from(u8::from(y > threshold))))
        }
    }
}

/// CPU reference of [`loss_forward`] over `rows` samples of `cols` elements, `valid` real.
#[allow(clippy::too_many_arguments)]
pub fn loss_forward_cpu(
    sample_loss: &mut [f32],
    sample_metric: &mut [f32],
    pred: &[f32],
    target: &[f32],
    (rows, cols, valid): (usize, usize, usize),
    loss: ElementLoss,
    metric: ElementMetric,
) {
    for i in 0..rows {
        let (mut l, mut m) = (0f64, 0f64);
        if i < valid {
            for k in i * cols..(i + 1) * cols {
                l += element_loss(loss, pred[k], target[k]);
                m += element_metric(metric, pred[k], target[k]);
            }
        }
        sample_loss[i] = (l / cols as f64) as f32;
        sample_metric[i] = (m / cols as f64) as f32;
    }
}

/// CPU reference of [`loss_backward`].
pub fn loss_backward_cpu(
    dpred: &mut [f32],
    pred: &[f32],
    target: &[f32],
    (rows, cols, valid): (usize, usize, usize),
    loss: ElementLoss,
) {
    let n = (valid.max(1) * cols) as f64;
    for k in 0..rows * cols {
        dpred[k] = if k / cols < valid {
            (element_slope(loss, pred[k], target[k]) / n) as f32
        } else {
            0.0
        };
    }
}
