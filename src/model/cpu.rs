//! The CPU reference execution of a model: the same node walk as the GPU graph, built on
//! the ops' CPU references. It validates the GPU graph end to end (same initial weights,
//! same batches → same weights) and is the baseline in the benchmarks.

use super::data_parallel::Shard;
use super::{Graph, Objective, Targets, plan_head};
use crate::layers::{Node, Op};
use crate::ops::activation::{Act, activation_backward_cpu, activation_forward_cpu};
use crate::ops::batchnorm::{
    BatchNormParams, BatchNormState, batchnorm_backward_cpu, batchnorm_forward_cpu,
};
use crate::ops::channel_affine::{channel_affine_backward_cpu, channel_affine_cpu};
use crate::ops::clip::clip_gradients_cpu;
use crate::ops::concat::{Columns, copy_columns_cpu};
use crate::ops::conv2d::{conv2d_backward_cpu, conv2d_forward_cpu};
use crate::ops::conv2d_transpose::{conv2d_transpose_backward_cpu, conv2d_transpose_forward_cpu};
use crate::ops::depthwise_conv2d::{depthwise_conv2d_backward_cpu, depthwise_conv2d_forward_cpu};
use crate::ops::dropout::{DropoutParams, dropout_backward_cpu, dropout_forward_cpu};
use crate::ops::l2::{l2_gradient_cpu, l2_penalty_cpu};
use crate::ops::layernorm::{layernorm_backward_cpu, layernorm_forward_cpu};
use crate::ops::loss::{loss_backward_cpu, loss_forward_cpu};
use crate::ops::matmul::{dense_backward_cpu, dense_forward_cpu};
use crate::ops::merge::{merge_backward_cpu, merge_forward_cpu};
use crate::ops::optimizer::Optimizer;
use crate::ops::pad2d::pad2d_cpu;
use crate::ops::pool2d::{
    avgpool2d_backward_cpu, avgpool2d_forward_cpu, maxpool2d_backward_cpu, maxpool2d_forward_cpu,
};
use crate::ops::softmax_xent::{
    confusion_cpu, loss_metrics_cpu, mean_iou, soft_xent_backward_cpu, soft_xent_forward_cpu,
    softmax_cpu, softmax_xent_backward_cpu, softmax_xent_forward_cpu,
};
use crate::ops::upsampling2d::{upsampling2d_backward_cpu, upsampling2d_forward_cpu};
use anyhow::{Result, bail};

/// Parameters (per node: kernel, bias) and optimizer state on the host.
pub(crate) struct CpuEngine {
    pub params: Vec<Vec<Vec<f32>>>,
    /// Per node, per trainable tensor, the optimizer's slots.
    pub state: Vec<Vec<Vec<Vec<f32>>>>,
    /// MeanIoU's confusion matrix since the last reset, and the metric total reported
    /// for it so far (each batch reports the change, so that the sums add up to it).
    confusion: Vec<u64>,
    iou_reported: f64,
}

/// A BatchNormalization node's training batch: its [mean, 1/√(var + ε)] and the moving
/// mean and variance after it.
type BatchStats = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Activations of one forward pass: acts[t] is node t's output.
struct Trace {
    acts: Vec<Vec<f32>>,
    /// Per node with an activation: its input (empty for the others).
    pre: Vec<Vec<f32>>,
    /// Per element-wise merge of more than two inputs: the partial results of its fold.
    folds: Vec<Vec<Vec<f32>>>,
    argmax: Vec<Vec<u32>>,
    /// Per BatchNormalization node in training: its batch [mean, 1/√(var + ε)] and the
    /// moving statistics after this batch.
    batchnorm: Vec<Option<BatchStats>>,
}

impl CpuEngine {
    pub fn new(nodes: &[Node], params: Vec<Vec<Vec<f32>>>, opt: &Optimizer) -> CpuEngine {
        // State for the trainable tensors only, as on the GPU (they come first).
        let state = nodes
            .iter()
            .zip(&params)
            .map(|(node, p)| {
                p.iter()
                    .take(node.trainable_tensors())
                    .map(|t| vec![vec![0.0; t.len()]; opt.slots()])
                    .collect()
            })
            .collect();
        CpuEngine {
            params,
            state,
            confusion: Vec::new(),
            iou_reported: 0.0,
        }
    }

    /// Starts new totals (an epoch, an evaluation): MeanIoU's confusion matrix.
    pub fn reset_totals(&mut self) {
        self.confusion.clear();
        self.iou_reported = 0.0;
    }

    /// Replaces the optimizer state (per node, per trainable tensor, its slots).
    pub fn set_state(&mut self, state: Vec<Vec<Vec<Vec<f32>>>>) {
        self.state = state;
    }

    pub fn reset_state(&mut self) {
        for s in self.state.iter_mut().flatten().flatten() {
            s.iter_mut().for_each(|v| *v = 0.0);
        }
    }

    fn forward(
        &self,
        graph: &Graph,
        x: &[f32],
        batch: usize,
        // (seed, step, index of the first sample within the global batch).
        dropout_seed: Option<(u64, u64, usize)>,
    ) -> Trace {
        let nodes = &graph.nodes;
        let mut acts: Vec<Vec<f32>> = Vec::new();
        let mut pre: Vec<Vec<f32>> = Vec::new();
        let mut argmax = Vec::new();
        let mut batchnorm = Vec::new();
        let mut folds = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let n_out = batch * node.out_shape.iter().product::<usize>();
            let mut y = vec![0f32; n_out];
            let mut am = Vec::new();
            let mut bn = None;
            let mut fold = Vec::new();
            let a: &[f32] = match node.inputs.first() {
                Some(&t) => &acts[t],
                None => x,
            };
            match &node.op {
                Op::Input => y.copy_from_slice(x),
                Op::BatchNorm {
                    channels,
                    momentum,
                    epsilon,
                    ..
                } => {
                    let training = dropout_seed.is_some();
                    let mut p = BatchNormParams::new(
                        a.len() / channels,
                        *channels,
                        training,
                        *momentum,
                        *epsilon,
                    )
                    .expect("shapes checked at add");
                    if training && !node.trainable {
                        p = p.frozen();
                    }
                    let w = &self.params[i];
                    let (g, be, m, v) = node.op.batchnorm_slots().expect("batch norm op");
                    let (ones, zeros) = (vec![1.0; *channels], vec![0.0; *channels]);
                    let (mut mm, mut mv) = (w[m].clone(), w[v].clone());
                    let state = BatchNormState {
                        gamma: g.map_or(&ones[..], |k| &w[k][..]),
                        beta: be.map_or(&zeros[..], |k| &w[k][..]),
                        moving_mean: &mut mm,
                        moving_var: &mut mv,
                    };
                    let saved = batchnorm_forward_cpu(&mut y, a, state, &p);
                    bn = training.then_some((saved, mm, mv));
                }
                Op::Conv { filters, .. } => conv2d_forward_cpu(
                    &mut y,
                    a,
                    &self.params[i][0],
                    &self.bias(i, *filters),
                    &node.op.conv_shape(batch).expect("conv op"),
                    false,
                ),
                Op::LayerNorm { .. } => {
                    let s = node.op.layernorm_shape(a.len()).expect("layer norm op");
                    let mut saved = vec![0.0; s.saved_len()];
                    let (gamma, beta) = self.layernorm_affine(node, i);
                    layernorm_forward_cpu(&mut y, &mut saved, a, &gamma, &beta, &s);
                }
                Op::ConvTranspose { filters, .. } => conv2d_transpose_forward_cpu(
                    &mut y,
                    a,
                    &self.params[i][0],
                    Some(&self.bias(i, *filters)),
                    &node
                        .op
                        .conv_transpose_shape(batch)
                        .expect("transposed conv op"),
                ),
                Op::DepthwiseConv { .. } => {
                    let s = node.op.depthwise_shape(batch).expect("depthwise op");
                    depthwise_conv2d_forward_cpu(
                        &mut y,
                        a,
                        &self.params[i][0],
                        &self.bias(i, s.out_c()),
                        &s,
                        false,
                    );
                }
                Op::SeparableConv { filters, .. } => {
                    let mid = self.separable_mid(node, i, a, batch);
                    conv2d_forward_cpu(
                        &mut y,
                        &mid,
                        &self.params[i][1],
                        &self.separable_bias(i, *filters),
                        &node.op.pointwise_shape(batch).expect("separable op"),
                        false,
                    );
                }
                Op::Dense { n_in, units, .. } => dense_forward_cpu(
                    &mut y,
                    a,
                    &self.params[i][0],
                    &self.bias(i, *units),
                    batch,
                    *n_in,
                    *units,
                ),
                Op::MaxPool { .. } => {
                    am = vec![0u32; n_out];
                    maxpool2d_forward_cpu(
                        &mut y,
                        &mut am,
                        a,
                        &node.op.pool_shape(batch).expect("pool op"),
                    );
                }
                Op::AvgPool { .. } => {
                    avgpool2d_forward_cpu(&mut y, a, &node.op.pool_shape(batch).expect("pool op"))
                }
                Op::Pad { .. } => pad2d_cpu(&mut y, a, &node.op.pad_shape(batch).expect("pad op")),
                Op::UpSampling { .. } => upsampling2d_forward_cpu(
                    &mut y,
                    a,
                    &node.op.upsampling_shape(batch).expect("up-sampling op"),
                ),
                Op::ChannelAffine { scale, offset } => channel_affine_cpu(&mut y, a, scale, offset),
                Op::Dropout { rate } => match dropout_seed {
                    Some((seed, step, first)) => {
                        let p = DropoutParams::new(
                            a.len(),
                            *rate,
                            super::gpu::dropout_seed(seed, step, graph.layer_index(i)),
                        )
                        .expect("rate checked at add")
                        .with_offset(first * a.len() / batch.max(1));
                        dropout_forward_cpu(&mut y, a, &p);
                    }
                    None => y.copy_from_slice(a),
                },
                Op::Merge { op, scale } => {
                    // The pairwise fold, its partial results kept for the backward pass.
                    let n = node.inputs.len();
                    let mut left = a.to_vec();
                    for k in 1..n {
                        let s = if k == n - 1 { *scale } else { 1.0 };
                        let mut r = vec![0f32; n_out];
                        merge_forward_cpu(&mut r, &left, &acts[node.inputs[k]], *op, s, false);
                        if k < n - 1 {
                            fold.push(r.clone()); // step k + 1's left operand
                        }
                        left = r;
                    }
                    y = left;
                }
                Op::Concat { rows, widths } => {
                    let total: usize = widths.iter().sum();
                    let mut offset = 0;
                    for (k, &w) in widths.iter().enumerate() {
                        let c = Columns::into_output(batch * rows, w, offset, total);
                        copy_columns_cpu(&mut y, &acts[node.inputs[k]], &c, false);
                        offset += w;
                    }
                }
                Op::Flatten | Op::Activation => y.copy_from_slice(a),
            }
            if node.act != Act::Linear {
                let z = y.clone();
                activation_forward_cpu(&mut y, &z, node.act);
                pre.push(z);
            } else {
                pre.push(Vec::new());
            }
            acts.push(y);
            argmax.push(am);
            batchnorm.push(bn);
            folds.push(fold);
        }
        Trace {
            acts,
            pre,
            argmax,
            batchnorm,
            folds,
        }
    }

    /// Loss and metric sums of a batch (the metric: correct count for class labels), and
    /// the gradient of the batch's mean loss with respect to the output.
    fn loss(
        &mut self,
        graph: &Graph,
        out: &[f32],
        targets: Targets,
        batch: usize,
    ) -> Result<(f64, f64, Vec<f32>)> {
        let head = plan_head(graph)?;
        let cols = head.classes;
        let mut dout = vec![0.0; out.len()];
        let mut loss = vec![0.0; batch];
        match (head.objective, targets) {
            (Objective::Classes { top_k, iou }, Targets::Classes(labels)) => {
                // One row per class label: per sample, or per position of each sample.
                let rows = batch * head.positions;
                let mut probs = vec![0.0; rows * cols];
                let mut loss = vec![0.0; rows];
                softmax_xent_forward_cpu(&mut probs, &mut loss, out, labels, cols, rows);
                let k = (cols, top_k);
                let (sum, hits) = loss_metrics_cpu(&probs, labels, &loss, k, rows);
                softmax_xent_backward_cpu(&mut dout, &probs, labels, cols, rows);
                if !iou {
                    return Ok((sum, hits as f64, dout));
                }
                // MeanIoU so far, scaled by the rows counted (as the GPU path reports it).
                self.confusion.resize(cols * cols, 0);
                confusion_cpu(&mut self.confusion, &probs, labels, cols, rows);
                let counted: u64 = self.confusion.iter().sum();
                let total = mean_iou(&self.confusion, cols) * counted as f64;
                let change = total - self.iou_reported;
                self.iou_reported = total;
                Ok((sum, change, dout))
            }
            (
                Objective::Distributions {
                    label_smoothing, ..
                },
                Targets::Values(t),
            ) => {
                let rows = batch * head.positions;
                let mut probs = vec![0.0; rows * cols];
                let shape = (rows, cols, rows);
                let per_row = soft_xent_forward_cpu(&mut probs, out, t, shape, label_smoothing);
                soft_xent_backward_cpu(&mut dout, &probs, t, shape, label_smoothing);
                let (sum, hits) = per_row
                    .iter()
                    .fold((0.0, 0.0), |(s, h), (l, k)| (s + l, h + k));
                Ok((sum, hits, dout))
            }
            (Objective::Values { loss: l, metric }, Targets::Values(t)) => {
                let mut m = vec![0.0; batch];
                let shape = (batch, cols, batch);
                loss_forward_cpu(&mut loss, &mut m, out, t, shape, l, metric);
                loss_backward_cpu(&mut dout, out, t, shape, l);
                let sum = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
                Ok((sum(&loss), sum(&m), dout))
            }
            _ => bail!("the targets do not match the compiled loss (class labels or values)"),
        }
    }

    /// One training step on `batch` samples; returns (loss sum, correct count).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        graph: &Graph,
        x: &[f32],
        targets: Targets,
        batch: usize,
        opt: &Optimizer,
        step: u64,
        seed: u64,
        shard: Option<&Shard>,
    ) -> Result<(f64, f64)> {
        let nodes = &graph.nodes;
        let head = plan_head(graph)?;
        let first = shard.map_or(0, |s| s.first);
        let t = self.forward(graph, x, batch, Some((seed, step, first)));
        let (sum, hits, dout) = self.loss(graph, &t.acts[head.output], targets, batch)?;
        // grads[t]: the gradient of tensor t, summed over its readers (the references
        // accumulate), where something upstream learns.
        let need = graph.needs_grad();
        let mut grads: Vec<Option<Vec<f32>>> = t
            .acts
            .iter()
            .enumerate()
            .map(|(i, a)| need[i].then(|| vec![0.0; a.len()]))
            .collect();
        grads[head.output] = Some(dout);
        let mut pgrads: Vec<Vec<Vec<f32>>> = self
            .params
            .iter()
            .map(|p| p.iter().map(|t| vec![0.0; t.len()]).collect())
            .collect();
        for (i, node) in nodes.iter().enumerate().rev() {
            let Some(mut dy) = grads[i].take() else {
                continue;
            };
            if node.act != Act::Linear {
                activation_backward_cpu(&mut dy, &t.acts[i], &t.pre[i], node.act);
            }
            let Some(&src) = node.inputs.first() else {
                continue; // an input
            };
            let a = &t.acts[src];
            // The input gradients this node adds to (a scratch one where none is needed).
            let mut da: Vec<Vec<f32>> = node
                .inputs
                .iter()
                .map(|&k| {
                    grads[k]
                        .take()
                        .unwrap_or_else(|| vec![0.0; t.acts[k].len()])
                })
                .collect();
            let need_da = need[src];
            match &node.op {
                Op::BatchNorm { channels, .. } => {
                    let (saved, _, _) = t.batchnorm[i].as_ref().expect("training statistics");
                    let mut p =
                        BatchNormParams::new(a.len() / channels, *channels, true, 0.0, 1.0)?;
                    if !node.trainable {
                        p = p.frozen();
                    }
                    let (g, be, ..) = node.op.batchnorm_slots().expect("batch norm op");
                    let ones = vec![1.0; *channels];
                    let gamma = g.map_or(&ones[..], |k| &self.params[i][k][..]);
                    let (mut dg, mut db) = (vec![0.0; *channels], vec![0.0; *channels]);
                    batchnorm_backward_cpu(&mut da[0], &mut dg, &mut db, &dy, a, gamma, saved, &p);
                    for (slot, d) in [(g, dg), (be, db)] {
                        if let Some(k) = slot {
                            pgrads[i][k].iter_mut().zip(d).for_each(|(g, d)| *g += d);
                        }
                    }
                }
                Op::LayerNorm { channels, .. } => {
                    // The row statistics again, from the kept input.
                    let s = node.op.layernorm_shape(a.len()).expect("layer norm op");
                    let (mut y, mut saved) = (vec![0.0; a.len()], vec![0.0; s.saved_len()]);
                    let (gamma, beta) = self.layernorm_affine(node, i);
                    layernorm_forward_cpu(&mut y, &mut saved, a, &gamma, &beta, &s);
                    let (mut dg, mut db) = (vec![0.0; *channels], vec![0.0; *channels]);
                    layernorm_backward_cpu(
                        &mut da[0], &mut dg, &mut db, &dy, a, &gamma, &saved, &s,
                    );
                    let (g, be) = node.op.layernorm_slots().expect("layer norm op");
                    for (slot, d) in [(g, dg), (be, db)] {
                        if let Some(k) = slot {
                            pgrads[i][k].iter_mut().zip(d).for_each(|(g, d)| *g += d);
                        }
                    }
                }
                Op::ConvTranspose { filters, .. } => {
                    let (gw, gb) = pgrads[i].split_at_mut(1);
                    let mut unused = Vec::new();
                    conv2d_transpose_backward_cpu(
                        need_da.then_some(&mut da[0][..]),
                        &mut gw[0],
                        Some(bias_grad(gb, &mut unused, *filters)),
                        &dy,
                        a,
                        &self.params[i][0],
                        &node
                            .op
                            .conv_transpose_shape(batch)
                            .expect("transposed conv op"),
                    );
                }
                Op::Conv { filters, .. } => {
                    let (gw, gb) = pgrads[i].split_at_mut(1);
                    let mut unused = Vec::new();
                    conv2d_backward_cpu(
                        need_da.then_some(&mut da[0][..]),
                        &mut gw[0],
                        bias_grad(gb, &mut unused, *filters),
                        &dy,
                        a,
                        &self.params[i][0],
                        &node.op.conv_shape(batch).expect("conv op"),
                    );
                }
                Op::DepthwiseConv { .. } => {
                    let s = node.op.depthwise_shape(batch).expect("depthwise op");
                    let (gw, gb) = pgrads[i].split_at_mut(1);
                    let mut unused = Vec::new();
                    depthwise_conv2d_backward_cpu(
                        need_da.then_some(&mut da[0][..]),
                        &mut gw[0],
                        bias_grad(gb, &mut unused, s.out_c()),
                        &dy,
                        a,
                        &self.params[i][0],
                        &s,
                    );
                }
                Op::SeparableConv { filters, .. } => {
                    // The depthwise stage's output again, then back through both stages.
                    let mid = self.separable_mid(node, i, a, batch);
                    let sd = node.op.depthwise_shape(batch).expect("separable op");
                    let mut dmid = vec![0.0; mid.len()];
                    let (gd, rest) = pgrads[i].split_at_mut(1);
                    let (gp, gb) = rest.split_at_mut(1);
                    let mut unused = Vec::new();
                    conv2d_backward_cpu(
                        Some(&mut dmid),
                        &mut gp[0],
                        bias_grad(gb, &mut unused, *filters),
                        &dy,
                        &mid,
                        &self.params[i][1],
                        &node.op.pointwise_shape(batch).expect("separable op"),
                    );
                    let mut unused_db = vec![0.0; sd.out_c()];
                    depthwise_conv2d_backward_cpu(
                        need_da.then_some(&mut da[0][..]),
                        &mut gd[0],
                        &mut unused_db,
                        &dmid,
                        a,
                        &self.params[i][0],
                        &sd,
                    );
                }
                Op::Dense { n_in, units, .. } => {
                    let (gw, gb) = pgrads[i].split_at_mut(1);
                    let mut unused = Vec::new();
                    dense_backward_cpu(
                        need_da.then_some(&mut da[0][..]),
                        &mut gw[0],
                        bias_grad(gb, &mut unused, *units),
                        &dy,
                        a,
                        &self.params[i][0],
                        batch,
                        *n_in,
                        *units,
                    );
                }
                Op::MaxPool { .. } => maxpool2d_backward_cpu(
                    &mut da[0],
                    &dy,
                    &t.argmax[i],
                    &node.op.pool_shape(batch).expect("pool op"),
                ),
                Op::AvgPool { .. } => avgpool2d_backward_cpu(
                    &mut da[0],
                    &dy,
                    &node.op.pool_shape(batch).expect("pool op"),
                ),
                Op::Pad { .. } => {
                    let s = node.op.pad_shape(batch).expect("pad op");
                    pad2d_cpu(&mut da[0], &dy, &s.reversed());
                }
                Op::UpSampling { .. } => upsampling2d_backward_cpu(
                    &mut da[0],
                    &dy,
                    &node.op.upsampling_shape(batch).expect("up-sampling op"),
                ),
                Op::ChannelAffine { scale, .. } => {
                    channel_affine_backward_cpu(&mut da[0], &dy, scale)
                }
                Op::Dropout { rate } => {
                    let p = DropoutParams::new(
                        a.len(),
                        *rate,
                        super::gpu::dropout_seed(seed, step, graph.layer_index(i)),
                    )?
                    .with_offset(first * a.len() / batch.max(1));
                    dropout_backward_cpu(&mut da[0], &dy, &p);
                }
                Op::Merge { op, scale } => {
                    // The fold backwards; the left gradient of step k feeds step k − 1.
                    let n = node.inputs.len();
                    let mut g = dy;
                    for k in (1..n).rev() {
                        let left = if k == 1 { a } else { &t.folds[i][k - 2] };
                        let s = if k == n - 1 { *scale } else { 1.0 };
                        let mut dleft = vec![0.0; g.len()];
                        let (before, from_k) = da.split_at_mut(k);
                        let right = &t.acts[node.inputs[k]];
                        let dl = if k == 1 { &mut before[0] } else { &mut dleft };
                        merge_backward_cpu(dl, &mut from_k[0], &g, left, right, *op, s);
                        g = dleft;
                    }
                }
                Op::Concat { rows, widths } => {
                    let total: usize = widths.iter().sum();
                    let mut offset = 0;
                    for (k, &w) in widths.iter().enumerate() {
                        let c = Columns::out_of_output(batch * rows, w, offset, total);
                        let mut part = vec![0.0; da[k].len()];
                        copy_columns_cpu(&mut part, &dy, &c, false);
                        da[k].iter_mut().zip(part).for_each(|(d, p)| *d += p);
                        offset += w;
                    }
                }
                Op::Flatten | Op::Activation => {
                    da[0].iter_mut().zip(&dy).for_each(|(d, g)| *d += g);
                }
                Op::Input => {}
            }
            // Back into the tensors' gradients; a tensor read twice by this node (a merge
            // with itself) gets both contributions.
            for (&k, d) in node.inputs.iter().zip(da) {
                if !need[k] {
                    continue;
                }
                match &mut grads[k] {
                    Some(g) => g.iter_mut().zip(d).for_each(|(g, d)| *g += d),
                    none => *none = Some(d),
                }
            }
        }
        let (sum, _) = self.regularize(graph, Some(&mut pgrads), sum, batch);
        // Clipping by norm sees every trainable gradient (they come first in each node).
        let mut trainable_grads: Vec<&mut [f32]> = nodes
            .iter()
            .zip(pgrads.iter_mut())
            .flat_map(|(node, g)| g.iter_mut().take(node.trainable_tensors()))
            .map(|g| &mut g[..])
            .collect();
        if let Some(shard) = shard {
            // The global batch's mean gradient, from every rank's (as the GPU step does).
            let mut flat: Vec<f32> = trainable_grads
                .iter()
                .flat_map(|g| g.iter())
                .copied()
                .collect();
            shard.reduce(&mut flat)?;
            let mut at = 0;
            for g in trainable_grads.iter_mut() {
                g.copy_from_slice(&flat[at..at + g.len()]);
                at += g.len();
            }
        }
        clip_gradients_cpu(&mut trainable_grads, opt.clip);
        // The optimizer updates the trainable tensors (they come first); a batch
        // normalization's moving statistics take this batch's.
        for (i, node) in nodes.iter().enumerate() {
            let trainable = node.trainable_tensors();
            let (p, g, s) = (&mut self.params[i], &pgrads[i], &mut self.state[i]);
            for ((p, g), s) in p.iter_mut().zip(g).zip(s).take(trainable) {
                opt.update_cpu(p, g, s, step);
            }
            if let (Some((_, mm, mv)), Some((.., m, v))) =
                (&t.batchnorm[i], node.op.batchnorm_slots())
            {
                p[m].clone_from(mm);
                p[v].clone_from(mv);
            }
        }
        Ok((sum, hits))
    }

    /// Loss sum and correct count without training.
    pub fn eval_batch(
        &mut self,
        graph: &Graph,
        x: &[f32],
        targets: Targets,
        batch: usize,
    ) -> Result<(f64, f64)> {
        let t = self.forward(graph, x, batch, None);
        let output = graph.output()?;
        let (sum, hits, _) = self.loss(graph, &t.acts[output], targets, batch)?;
        let (sum, _) = self.regularize(graph, None, sum, batch);
        Ok((sum, hits))
    }

    /// A separable convolution's depthwise stage output for input `a`.
    fn separable_mid(&self, node: &Node, i: usize, a: &[f32], batch: usize) -> Vec<f32> {
        let sd = node.op.depthwise_shape(batch).expect("separable op");
        let mut mid = vec![0.0; sd.output_len()];
        let zero = vec![0.0; sd.out_c()];
        depthwise_conv2d_forward_cpu(&mut mid, a, &self.params[i][0], &zero, &sd, false);
        mid
    }

    /// A separable convolution's bias (its third tensor), or `n` zeros.
    fn separable_bias(&self, i: usize, n: usize) -> std::borrow::Cow<'_, [f32]> {
        match self.params[i].get(2) {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(vec![0.0; n]),
        }
    }

    /// Node `i`'s bias: its parameter, or `n` zeros for a layer without one.
    fn bias(&self, i: usize, n: usize) -> std::borrow::Cow<'_, [f32]> {
        match self.params[i].get(1) {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(vec![0.0; n]),
        }
    }

    /// A layer normalization's (gamma, beta): its parameters, or ones and zeros where
    /// it has none.
    fn layernorm_affine(&self, node: &Node, i: usize) -> (Vec<f32>, Vec<f32>) {
        let (g, b) = node.op.layernorm_slots().expect("layer norm op");
        let c = *node.out_shape.last().unwrap_or(&0);
        let get = |slot: Option<usize>, fill: f32| {
            slot.map_or_else(|| vec![fill; c], |k| self.params[i][k].clone())
        };
        (get(g, 1.0), get(b, 0.0))
    }

    /// Kernel regularizers: adds each penalty, once per sample, to the loss sum of a
    /// batch of `valid` samples, and (given the parameter gradients) each penalty's
    /// gradient to its kernel's.
    fn regularize(
        &self,
        graph: &Graph,
        mut grads: Option<&mut Vec<Vec<Vec<f32>>>>,
        sum: f64,
        valid: usize,
    ) -> (f64, ()) {
        let mut sum = sum;
        for (i, node) in graph.nodes.iter().enumerate() {
            if !node.trainable {
                continue; // Keras counts the penalties of trainable weights only
            }
            for (k, factor) in node.op.l2_penalties() {
                let w = &self.params[i][k];
                sum += valid as f64 * l2_penalty_cpu(w, factor);
                if let Some(g) = grads.as_deref_mut() {
                    l2_gradient_cpu(&mut g[i][k], w, factor);
                }
            }
        }
        (sum, ())
    }

    /// Model outputs (probabilities with a softmax head) of a batch.
    pub fn predict_batch(&self, graph: &Graph, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let head = plan_head(graph)?;
        let t = self.forward(graph, x, batch, None);
        let logits = &t.acts[head.output];
        if !head.softmax {
            return Ok(logits.clone());
        }
        let mut probs = vec![0.0; logits.len()];
        softmax_cpu(&mut probs, logits, head.classes);
        Ok(probs)
    }

    /// Every tensor of the graph for a batch, the input's included (feature maps).
    pub fn layer_outputs(&self, graph: &Graph, x: &[f32], batch: usize) -> Vec<Vec<f32>> {
        self.forward(graph, x, batch, None).acts
    }
}

/// The bias gradient a layer's backward reference adds to: its own, or `unused` (sized
/// `n`) for a layer without a bias.
fn bias_grad<'a>(gb: &'a mut [Vec<f32>], unused: &'a mut Vec<f32>, n: usize) -> &'a mut [f32] {
    match gb.first_mut() {
        Some(g) => g,
        None => {
            *unused = vec![0.0; n];
            unused
        }
    }
}
