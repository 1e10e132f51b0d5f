//! Finite-difference checks of every CPU backward reference: the CPU path is the ground
//! truth the GPU kernels are compared with, so its gradients are proven here against
//! central differences of its own forward pass. Loss: L = Σ out·r for a fixed random r,
//! so ∂L/∂out = r (the softmax-CE check uses its own mean loss).

use wgcnn::ops::Padding;
use wgcnn::ops::batchnorm::{
    BatchNormParams, BatchNormState, batchnorm_backward_cpu, batchnorm_forward_cpu,
};
use wgcnn::ops::conv2d::*;
use wgcnn::ops::conv2d_transpose::*;
use wgcnn::ops::depthwise_conv2d::*;
use wgcnn::ops::layernorm::*;
use wgcnn::ops::matmul::{dense_backward_cpu, dense_forward_cpu};
use wgcnn::ops::pad2d::*;
use wgcnn::ops::pool2d::*;
use wgcnn::ops::softmax_xent::{softmax_xent_backward_cpu, softmax_xent_forward_cpu};
use wgcnn::ops::upsampling2d::*;
use wgcnn::testing::{every_activation, finite_diff, random_labels, random_vec};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Compares analytic and numeric gradients at `count` spread-out indices.
fn check(
    what: &str,
    analytic: &[f32],
    x: &mut [f32],
    eps: f32,
    tol: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    let step = (x.len() / 23).max(1);
    let mut worst = 0f64;
    for i in (0..x.len()).step_by(step) {
        let numeric = finite_diff(x, i, eps, &mut loss);
        let err = (numeric - f64::from(analytic[i])).abs();
        worst = worst.max(err);
        assert!(
            err <= tol * (1.0 + numeric.abs()),
            "{what}[{i}]: analytic {} numeric {numeric} (err {err})",
            analytic[i]
        );
    }
    eprintln!("{what}: worst |analytic − numeric| = {worst:.2e}");
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    for (i, s) in [
        Conv2dShape {
            batch: 2,
            in_h: 6,
            in_w: 5,
            in_c: 3,
            out_c: 4,
            k_h: 3,
            k_w: 2,
            stride_h: 2,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            padding: Padding::Same,
        },
        Conv2dShape {
            batch: 1,
            in_h: 7,
            in_w: 7,
            in_c: 2,
            out_c: 3,
            k_h: 3,
            k_w: 3,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            padding: Padding::Valid,
        },
        Conv2dShape {
            batch: 2,
            in_h: 8,
            in_w: 7,
            in_c: 3,
            out_c: 2,
            k_h: 3,
            k_w: 2,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 2,
            dilation_w: 3,
            padding: Padding::Same,
        },
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * i as u64;
        let (mut x, mut w, mut b) = (
            random_vec(s.input_len(), seed),
            random_vec(s.weight_len(), seed + 1),
            random_vec(s.out_c, seed + 2),
        );
        let r = random_vec(s.output_len(), seed + 3);
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        conv2d_backward_cpu(Some(&mut dx), &mut dw, &mut db, &r, &x, &w, s);
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            conv2d_forward_cpu(&mut y, x, w, b, s, false);
            dot(&y, &r)
        };
        let (w0, b0, x0) = (w.clone(), b.clone(), x.clone());
        check("conv2d dX", &dx, &mut x, 1e-2, 1e-3, |x| fwd(x, &w0, &b0));
        check("conv2d dW", &dw, &mut w, 1e-2, 1e-3, |w| fwd(&x0, w, &b0));
        check("conv2d db", &db, &mut b, 1e-2, 1e-3, |b| fwd(&x0, &w0, b));
    }
}

/// Depthwise convolution: a depth multiplier, strides with 'same' padding, dilation; and
/// a grouped one.
#[test]
fn depthwise_conv2d_gradients_match_finite_differences() {
    let d = |in_c, mult, k, stride, dilation, padding| DepthwiseShape {
        batch: 2,
        in_h: 7,
        in_w: 6,
        in_c,
        mult,
        group_in: 1,
        k_h: k,
        k_w: k,
        stride_h: stride,
        stride_w: stride,
        dilation_h: dilation,
        dilation_w: dilation,
        padding,
    };
    for (i, s) in [
        d(3, 2, 3, 2, 1, Padding::Same),
        d(5, 1, 3, 1, 2, Padding::Valid),
        d(2, 3, 2, 1, 2, Padding::Same),
        // Grouped: 3 groups of 2 input and 2 output channels.
        DepthwiseShape {
            group_in: 2,
            ..d(6, 2, 3, 1, 1, Padding::Same)
        },
    ]
    .iter()
    .enumerate()
    {
        let seed = 20 * i as u64;
        let (mut x, mut w, mut b) = (
            random_vec(s.input_len(), seed),
            random_vec(s.weight_len(), seed + 1),
            random_vec(s.out_c(), seed + 2),
        );
        let r = random_vec(s.output_len(), seed + 3);
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        depthwise_conv2d_backward_cpu(Some(&mut dx), &mut dw, &mut db, &r, &x, &w, s);
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            depthwise_conv2d_forward_cpu(&mut y, x, w, b, s, false);
            dot(&y, &r)
        };
        let (w0, b0, x0) = (w.clone(), b.clone(), x.clone());
        check("depthwise dX", &dx, &mut x, 1e-2, 1e-3, |x| {
            fwd(x, &w0, &b0)
        });
        check("depthwise dW", &dw, &mut w, 1e-2, 1e-3, |w| {
            fwd(&x0, w, &b0)
        });
        check("depthwise db", &db, &mut b, 1e-2, 1e-3, |b| {
            fwd(&x0, &w0, b)
        });
    }
}

/// Every activation's derivative, read from its input or output as the backward pass
/// does, against central differences of the forward formula, away from the kinks.
#[test]
fn activation_derivatives_match_finite_differences() {
    let kinks = [-3.0f32, 0.0, 1.0, 3.0, 6.0];
    for act in every_activation() {
        for i in 0..161 {
            let x = -8.0 + 0.1 * i as f32 + 0.013;
            if kinks.iter().any(|k| (x - k).abs() < 0.02) {
                continue;
            }
            let h = 1e-3f32;
            let numeric =
                (f64::from(act.apply(x + h)) - f64::from(act.apply(x - h))) / f64::from(2.0 * h);
            let analytic = f64::from(act.derivative(x, act.apply(x)));
            assert!(
                (numeric - analytic).abs() <= 2e-3 * (1.0 + numeric.abs()),
                "{act:?} at {x}: analytic {analytic}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn dense_gradients_match_finite_differences() {
    let (batch, n_in, n_out) = (3, 7, 5);
    let (mut x, mut w, mut b) = (
        random_vec(batch * n_in, 1),
        random_vec(n_in * n_out, 2),
        random_vec(n_out, 3),
    );
    let r = random_vec(batch * n_out, 4);
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; n_out]);
    dense_backward_cpu(
        Some(&mut dx),
        &mut dw,
        &mut db,
        &r,
        &x,
        &w,
        batch,
        n_in,
        n_out,
    );
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0.0; batch * n_out];
        dense_forward_cpu(&mut y, x, w, b, batch, n_in, n_out);
        dot(&y, &r)
    };
    let (w0, b0, x0) = (w.clone(), b.clone(), x.clone());
    check("dense dX", &dx, &mut x, 1e-2, 1e-3, |x| fwd(x, &w0, &b0));
    check("dense dW", &dw, &mut w, 1e-2, 1e-3, |w| fwd(&x0, w, &b0));
    check("dense db", &db, &mut b, 1e-2, 1e-3, |b| fwd(&x0, &w0, b));
}

#[test]
fn pooling_gradients_match_finite_differences() {
    for s in [
        Pool2dShape {
            batch: 2,
            in_h: 6,
            in_w: 7,
            c: 3,
            pool_h: 2,
            pool_w: 2,
            stride_h: 2,
            stride_w: 2,
            padding: Padding::Same,
        },
        Pool2dShape {
            batch: 1,
            in_h: 7,
            in_w: 6,
            c: 2,
            pool_h: 3,
            pool_w: 2,
            stride_h: 1,
            stride_w: 2,
            padding: Padding::Valid,
        },
        // GlobalAveragePooling2D's window: the whole image
        Pool2dShape {
            batch: 2,
            in_h: 5,
            in_w: 3,
            c: 4,
            pool_h: 5,
            pool_w: 3,
            stride_h: 5,
            stride_w: 3,
            padding: Padding::Valid,
        },
    ] {
        let mut x = random_vec(s.input_len(), 5);
        let r = random_vec(s.output_len(), 6);
        // Max pooling: a step of 1e-3 must not change which element is the maximum; random
        // values in [-1, 1) are far enough apart for that at these sizes.
        let mut y = vec![0.0; s.output_len()];
        let mut arg = vec![0u32; s.output_len()];
        maxpool2d_forward_cpu(&mut y, &mut arg, &x, &s);
        let mut dx = vec![0.0; x.len()];
        maxpool2d_backward_cpu(&mut dx, &r, &arg, &s);
        check("maxpool dX", &dx, &mut x, 1e-3, 1e-3, |x| {
            let (mut y, mut a) = (vec![0.0; s.output_len()], vec![0u32; s.output_len()]);
            maxpool2d_forward_cpu(&mut y, &mut a, x, &s);
            dot(&y, &r)
        });
        let mut dx = vec![0.0; x.len()];
        avgpool2d_backward_cpu(&mut dx, &r, &s);
        check("avgpool dX", &dx, &mut x, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; s.output_len()];
            avgpool2d_forward_cpu(&mut y, x, &s);
            dot(&y, &r)
        });
    }
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let (rows, cols) = (5, 7);
    for valid in [5, 3] {
        let mut z: Vec<f32> = random_vec(rows * cols, 8).iter().map(|v| v * 3.0).collect();
        let labels = random_labels(rows, cols, 9);
        let (mut p, mut loss) = (vec![0.0; rows * cols], vec![0.0; rows]);
        softmax_xent_forward_cpu(&mut p, &mut loss, &z, &labels, cols, valid);
        let mut dz = vec![0.0; rows * cols];
        softmax_xent_backward_cpu(&mut dz, &p, &labels, cols, valid);
        // The backward is the gradient of the mean loss over the valid rows.
        check("softmax-CE dlogits", &dz, &mut z, 1e-2, 1e-3, |z| {
            let (mut p, mut loss) = (vec![0.0; rows * cols], vec![0.0; rows]);
            softmax_xent_forward_cpu(&mut p, &mut loss, z, &labels, cols, valid);
            loss.iter().map(|&l| f64::from(l)).sum::<f64>() / valid as f64
        });
    }
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    // Training mode: the batch statistics depend on x, and only the valid rows count (the
    // loss of the padding rows' outputs must not reach x).
    for (rows, c, valid) in [(12, 3, 12), (10, 5, 7)] {
        let mut x: Vec<f32> = random_vec(rows * c, 20)
            .iter()
            .map(|v| 1.0 + 2.0 * v)
            .collect();
        let mut gamma: Vec<f32> = random_vec(c, 21).iter().map(|v| 1.0 + 0.5 * v).collect();
        let mut beta = random_vec(c, 22);
        // Rows past `valid` are excluded from the loss, as the loss head does.
        let r: Vec<f32> = random_vec(rows * c, 23)
            .iter()
            .enumerate()
            .map(|(i, v)| if i / c < valid { *v } else { 0.0 })
            .collect();
        let p = BatchNormParams::new(rows, c, true, 0.9, 1e-3)
            .unwrap()
            .with_valid(valid);
        let fwd = |x: &[f32], gamma: &[f32], beta: &[f32]| -> (Vec<f32>, Vec<f32>) {
            let (mut y, mut mm, mut mv) = (vec![0.0; rows * c], vec![0.0; c], vec![1.0; c]);
            let state = BatchNormState {
                gamma,
                beta,
                moving_mean: &mut mm,
                moving_var: &mut mv,
            };
            let saved = batchnorm_forward_cpu(&mut y, x, state, &p);
            (y, saved)
        };
        let (_, saved) = fwd(&x, &gamma, &beta);
        let (mut dx, mut dg, mut db) = (vec![0.0; rows * c], vec![0.0; c], vec![0.0; c]);
        batchnorm_backward_cpu(&mut dx, &mut dg, &mut db, &r, &x, &gamma, &saved, &p);
        let loss = |x: &[f32], g: &[f32], b: &[f32]| dot(&fwd(x, g, b).0, &r);
        let (x0, g0, b0) = (x.clone(), gamma.clone(), beta.clone());
        check("batchnorm dX", &dx, &mut x, 1e-2, 2e-3, |x| {
            loss(x, &g0, &b0)
        });
        check("batchnorm dgamma", &dg, &mut gamma, 1e-2, 1e-3, |g| {
            loss(&x0, g, &b0)
        });
        check("batchnorm dbeta", &db, &mut beta, 1e-2, 1e-3, |b| {
            loss(&x0, &g0, b)
        });
        assert!(
            dx[valid * c..].iter().all(|&v| v == 0.0),
            "padding rows get no gradient"
        );
    }
}

#[test]
fn pad2d_and_upsampling2d_gradients_match_finite_differences() {
    let pads = [
        Pad2dShape::padding(2, [5, 4, 3], [[1, 2], [2, 0]]),
        Pad2dShape::cropping(2, [7, 6, 3], [[2, 1], [0, 3]]),
    ];
    for (i, s) in pads.iter().enumerate() {
        let mut x = random_vec(s.input_len(), 40 + i as u64);
        let r = random_vec(s.output_len(), 45 + i as u64);
        let mut dx = vec![0.0; x.len()];
        pad2d_cpu(&mut dx, &r, &s.reversed());
        check("pad2d dX", &dx, &mut x, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; s.output_len()];
            pad2d_cpu(&mut y, x, s);
            dot(&y, &r)
        });
    }
    for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
        let s = UpSampling2dShape {
            batch: 2,
            in_h: 5,
            in_w: 3,
            c: 3,
            scale_h: 3,
            scale_w: 2,
            interpolation,
        };
        let mut x = random_vec(s.input_len(), 50);
        let r = random_vec(s.output_len(), 51);
        let mut dx = vec![0.0; x.len()];
        upsampling2d_backward_cpu(&mut dx, &r, &s);
        check("upsampling dX", &dx, &mut x, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; s.output_len()];
            upsampling2d_forward_cpu(&mut y, x, &s);
            dot(&y, &r)
        });
    }
}

#[test]
fn conv2d_transpose_gradients_match_finite_differences() {
    for (i, padding) in [Padding::Same, Padding::Valid].into_iter().enumerate() {
        let s = Conv2dTransposeShape {
            batch: 2,
            in_h: 3,
            in_w: 4,
            in_c: 3,
            filters: 2,
            k_h: 3,
            k_w: 2,
            stride_h: 2,
            stride_w: 3,
            padding,
        };
        let seed = 60 + 10 * i as u64;
        let (mut x, mut w, mut b) = (
            random_vec(s.input_len(), seed),
            random_vec(s.weight_len(), seed + 1),
            random_vec(s.filters, seed + 2),
        );
        let r = random_vec(s.output_len(), seed + 3);
        let (mut dx, mut dw, mut db) =
            (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; s.filters]);
        conv2d_transpose_backward_cpu(Some(&mut dx), &mut dw, Some(&mut db), &r, &x, &w, &s);
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            conv2d_transpose_forward_cpu(&mut y, x, w, Some(b), &s);
            dot(&y, &r)
        };
        let (x0, w0, b0) = (x.clone(), w.clone(), b.clone());
        check("conv transpose dX", &dx, &mut x, 1e-2, 1e-3, |x| {
            fwd(x, &w0, &b0)
        });
        check("conv transpose dW", &dw, &mut w, 1e-2, 1e-3, |w| {
            fwd(&x0, w, &b0)
        });
        check("conv transpose db", &db, &mut b, 1e-2, 1e-3, |b| {
            fwd(&x0, &w0, b)
        });
    }
}

#[test]
fn layernorm_gradients_match_finite_differences() {
    let s = LayerNormShape {
        rows: 4,
        cols: 5,
        epsilon: 1e-3,
    };
    let (mut x, mut gamma, mut beta) = (
        random_vec(s.len(), 80),
        random_vec(s.cols, 81),
        random_vec(s.cols, 82),
    );
    let r = random_vec(s.len(), 83);
    let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
        let (mut y, mut saved) = (vec![0.0; s.len()], vec![0.0; s.saved_len()]);
        layernorm_forward_cpu(&mut y, &mut saved, x, g, b, &s);
        (dot(&y, &r), saved)
    };
    let (_, saved) = fwd(&x, &gamma, &beta);
    let (mut dx, mut dg, mut db) = (vec![0.0; s.len()], vec![0.0; s.cols], vec![0.0; s.cols]);
    layernorm_backward_cpu(&mut dx, &mut dg, &mut db, &r, &x, &gamma, &saved, &s);
    let (x0, g0, b0) = (x.clone(), gamma.clone(), beta.clone());
    check("layernorm dX", &dx, &mut x, 1e-2, 1e-3, |x| {
        fwd(x, &g0, &b0).0
    });
    check("layernorm dgamma", &dg, &mut gamma, 1e-2, 1e-3, |g| {
        fwd(&x0, g, &b0).0
    });
    check("layernorm dbeta", &db, &mut beta, 1e-2, 1e-3, |b| {
        fwd(&x0, &g0, b).0
    });
}

/// Every element-wise loss's gradient (of the batch mean) against central differences of
/// the mean loss, away from MAE's and Huber's kinks and from the clipped probabilities.
#[test]
fn element_loss_gradients_match_finite_differences() {
    use wgcnn::ops::loss::*;
    let (rows, cols, valid) = (4, 5, 3);
    for loss in [
        ElementLoss::MeanSquaredError,
        ElementLoss::MeanAbsoluteError,
        ElementLoss::Huber { delta: 0.3 },
        ElementLoss::BinaryCrossentropy {
            from_logits: false,
            label_smoothing: 0.1,
        },
        ElementLoss::BinaryCrossentropy {
            from_logits: true,
            label_smoothing: 0.0,
        },
    ] {
        let probabilities = matches!(
            loss,
            ElementLoss::BinaryCrossentropy {
                from_logits: false,
                ..
            }
        );
        let mut pred: Vec<f32> = random_vec(rows * cols, 90)
            .iter()
            .map(|v| {
                if probabilities {
                    0.5 + 0.4 * v
                } else {
                    2.0 * v
                }
            })
            .collect();
        let target: Vec<f32> = random_vec(rows * cols, 91)
            .iter()
            .map(|v| {
                if probabilities {
                    f32::from(*v > 0.0)
                } else {
                    *v
                }
            })
            .collect();
        let mean = |p: &[f32]| {
            let (mut l, mut m) = (vec![0.0; rows], vec![0.0; rows]);
            let metric = ElementMetric::MeanAbsoluteError;
            loss_forward_cpu(
                &mut l,
                &mut m,
                p,
                &target,
                (rows, cols, valid),
                loss,
                metric,
            );
            l.iter().map(|&v| f64::from(v)).sum::<f64>() / valid as f64
        };
        let mut d = vec![0.0; rows * cols];
        loss_backward_cpu(&mut d, &pred, &target, (rows, cols, valid), loss);
        // Skip elements within the step of a kink (|y − t| = 0 or δ).
        let kinked: Vec<bool> = pred
            .iter()
            .zip(&target)
            .map(|(y, t)| {
                let x = (y - t).abs();
                x < 2e-2 || (x - 0.3).abs() < 2e-2
            })
            .collect();
        for i in 0..rows * cols {
            if kinked[i] {
                continue;
            }
            let numeric = finite_diff(&mut pred, i, 1e-3, mean);
            let err = (numeric - f64::from(d[i])).abs();
            assert!(
                err <= 1e-3 * (1.0 + numeric.abs()),
                "{loss:?}[{i}]: analytic {} numeric {numeric}",
                d[i]
            );
        }
    }
}

#[test]
fn soft_cross_entropy_gradient_matches_finite_differences() {
    use wgcnn::ops::softmax_xent::{soft_xent_backward_cpu, soft_xent_forward_cpu};
    let (rows, cols, valid) = (4, 5, 3);
    let mut z = random_vec(rows * cols, 70);
    let t: Vec<f32> = random_vec(rows * cols, 71)
        .iter()
        .map(|v| v.abs())
        .collect();
    for smoothing in [0.0, 0.15] {
        let mean = |z: &[f32]| {
            let mut p = vec![0.0; rows * cols];
            let per_row = soft_xent_forward_cpu(&mut p, z, &t, (rows, cols, valid), smoothing);
            per_row.iter().map(|r| r.0).sum::<f64>() / valid as f64
        };
        let mut p = vec![0.0; rows * cols];
        soft_xent_forward_cpu(&mut p, &z, &t, (rows, cols, valid), smoothing);
        let mut d = vec![0.0; rows * cols];
        soft_xent_backward_cpu(&mut d, &p, &t, (rows, cols, valid), smoothing);
        check("soft cross-entropy dz", &d, &mut z, 1e-2, 1e-3, mean);
    }
}
