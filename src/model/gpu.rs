//! The GPU step recorder of a [`Model`](super::Model): every buffer of one
//! batch size allocated once, and every dispatch of a training step recorded once, so
//! that a step is: queue the batch, record the dispatch list into one encoder, submit.

use super::data_parallel::Shard;
use super::{Graph, LossHead, Objective, Targets, plan_head};
use crate::data::source::GpuDraws;
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform, Variant};
use crate::layers::{Node, Op};
use crate::ops::activation::{Act, activation_backward, activation_forward};
use crate::ops::batchnorm::{BatchNormParams, batchnorm_backward, batchnorm_forward, saved_len};
use crate::ops::bias::bias_backward;
use crate::ops::bytes::{BytesParams, bytes_to_unit, pack_bytes, unit_table};
use crate::ops::channel_affine::channel_affine;
use crate::ops::clip::clip_gradients;
use crate::ops::concat::{Columns, copy_columns};
use crate::ops::conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use crate::ops::conv2d_transpose::{
    conv2d_transpose_backward_input, conv2d_transpose_backward_weight, conv2d_transpose_forward,
};
use crate::ops::depthwise_conv2d::{
    depthwise_conv2d_backward_input, depthwise_conv2d_backward_weight, depthwise_conv2d_forward,
};
use crate::ops::dropout::{DropoutParams, dropout_backward, dropout_forward};
use crate::ops::l2::{l2_gradient, l2_penalty};
use crate::ops::layernorm::{layernorm_backward, layernorm_forward};
use crate::ops::loss::{loss_backward, loss_forward, loss_totals};
use crate::ops::matmul::{MatmulShape, matmul};
use crate::ops::merge::{MergeOp, merge_backward, merge_forward};
use crate::ops::optimizer::{Clip, Optimizer};
use crate::ops::pad2d::pad2d;
use crate::ops::pool2d::{
    avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward,
    maxpool2d_relu_backward,
};
use crate::ops::softmax_xent::{
    BatchRows, confusion as confusion_counts, loss_metrics, mean_iou, soft_xent_backward,
    soft_xent_forward, softmax, softmax_xent_backward, softmax_xent_forward,
};
use crate::ops::upsampling2d::{upsampling2d_backward, upsampling2d_forward};
use crate::tensor::Tensor;
use anyhow::{Context, Result};
use std::sync::Arc;

/// Parameters, gradients and optimizer state on the GPU: independent of the batch size.
pub(crate) struct GpuParams {
    pub gpu: Arc<Gpu>,
    /// Per node: kernel and bias tensors (empty for layers without parameters).
    pub params: Vec<Vec<Tensor>>,
    pub grads: Vec<Vec<Tensor>>,
    pub state: Vec<Vec<Vec<Tensor>>>,
    pub opt_uniform: Uniform<[f32; 8]>,
    pub updates: Vec<Dispatch>,
    /// Per convolution without a bias: the zeros its kernel adds instead.
    zero_bias: Vec<Option<Tensor>>,
    /// Reuse gradient buffers by liveness (off only to measure or check the plan).
    pub reuse_gradients: bool,
    /// Where a data-parallel step gathers its gradients for the all-reduce (made by the
    /// first such step).
    exchange: std::sync::OnceLock<wgpu::Buffer>,
}

impl GpuParams {
    /// Node `i`'s bias: its parameter, or zeros for a convolution without one.
    fn bias(&self, i: usize) -> &Tensor {
        self.zero_bias[i]
            .as_ref()
            .unwrap_or_else(|| &self.params[i][1])
    }

    pub fn new(
        gpu: Arc<Gpu>,
        nodes: &[Node],
        values: &[Vec<Vec<f32>>],
        opt: &Optimizer,
    ) -> Result<GpuParams> {
        let mut params = Vec::new();
        let mut grads = Vec::new();
        let mut state = Vec::new();
        for (node, vals) in nodes.iter().zip(values) {
            let mut p = Vec::new();
            let mut g = Vec::new();
            let mut s = Vec::new();
            // Gradients and optimizer state for the trainable tensors only (they come
            // first: a BatchNormalization's moving statistics have neither).
            for (param, v) in node.params().iter().zip(vals) {
                let name = format!("{}/{}", node.name, param.suffix);
                p.push(Tensor::from_slice(&gpu, &param.shape, v, &name)?);
                if !param.trainable {
                    continue;
                }
                g.push(Tensor::zeros(
                    &gpu,
                    &param.shape,
                    &format!("{name} gradient"),
                )?);
                s.push(
                    (0..opt.slots())
                        .map(|_| Tensor::zeros(&gpu, &param.shape, &format!("{name} state")))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            params.push(p);
            grads.push(g);
            state.push(s);
        }
        let opt_uniform = Uniform::new(&gpu, &opt.params(1), "optimizer");
        let mut updates = Vec::new();
        // Clipping by norm first, over every trainable gradient.
        if matches!(opt.clip, Clip::Norm(_) | Clip::GlobalNorm(_)) {
            let all: Vec<&Tensor> = grads.iter().flatten().collect();
            if !all.is_empty() {
                let norms = Tensor::zeros(&gpu, &[all.len()], "gradient norms")?;
                updates.extend(clip_gradients(&gpu, &all, &norms, opt.clip)?);
            }
        }
        for ((p, g), s) in params.iter().zip(&grads).zip(&state) {
            for ((p, g), s) in p.iter().zip(g).zip(s) {
                updates.push(opt.update(&gpu, &opt_uniform, p, g, s)?);
            }
        }
        let zero_bias = nodes
            .iter()
            .map(|n| match n.op {
                Op::Conv {
                    filters, options, ..
                } if !options.use_bias => {
                    Tensor::zeros(&gpu, &[filters], &format!("{} zero bias", n.name)).map(Some)
                }
                // A transposed convolution's input gradient runs conv2d's forward pass,
                // which adds a bias: zeros, one per input channel.
                Op::ConvTranspose { in_hwc, .. } => {
                    Tensor::zeros(&gpu, &[in_hwc[2]], &format!("{} zero bias", n.name)).map(Some)
                }
                Op::SeparableConv {
                    filters, use_bias, ..
                } if !use_bias => {
                    Tensor::zeros(&gpu, &[filters], &format!("{} zero bias", n.name)).map(Some)
                }
                Op::DepthwiseConv { options, .. } if !options.use_bias => {
                    let filters = n.op.depthwise_shape(1).expect("depthwise op").out_c();
                    Tensor::zeros(&gpu, &[filters], &format!("{} zero bias", n.name)).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(GpuParams {
            gpu,
            params,
            grads,
            state,
            opt_uniform,
            updates,
            zero_bias,
            reuse_gradients: true,
            exchange: std::sync::OnceLock::new(),
        })
    }

    /// Bytes of the weights, their gradients and the optimizer state.
    pub fn bytes(&self) -> u64 {
        let count = |ts: &[Tensor]| ts.iter().map(|t| t.len() as u64 * 4).sum::<u64>();
        self.params.iter().map(|p| count(p)).sum::<u64>()
            + self.grads.iter().map(|g| count(g)).sum::<u64>()
            + self.state.iter().flatten().map(|s| count(s)).sum::<u64>()
    }

    /// Reads every parameter back, per node.
    pub fn read(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        self.params
            .iter()
            .map(|p| p.iter().map(|t| t.read::<f32>(&self.gpu)).collect())
            .collect()
    }

    /// Overwrites every parameter (shapes already checked by the caller).
    pub fn write(&self, values: &[Vec<Vec<f32>>]) -> Result<()> {
        for (p, v) in self.params.iter().zip(values) {
            for (t, v) in p.iter().zip(v) {
                t.write(&self.gpu, v)?;
            }
        }
        Ok(())
    }

    /// Reads the optimizer state back: per node, per trainable tensor, its slots.
    pub fn read_state(&self) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
        self.state
            .iter()
            .map(|node| {
                node.iter()
                    .map(|slots| slots.iter().map(|t| t.read::<f32>(&self.gpu)).collect())
                    .collect()
            })
            .collect()
    }

    /// Overwrites the optimizer state (the layout of [`GpuParams::read_state`]).
    pub fn write_state(&self, values: &[Vec<Vec<Vec<f32>>>]) -> Result<()> {
        for (node, vals) in self.state.iter().zip(values) {
            for (slots, vals) in node.iter().zip(vals) {
                for (t, v) in slots.iter().zip(vals) {
                    t.write(&self.gpu, v)?;
                }
            }
        }
        Ok(())
    }

    /// Zeroes the optimizer state (after loading weights, or a re-compile).
    pub fn reset_state(&self) -> Result<()> {
        for s in self.state.iter().flatten().flatten() {
            s.write(&self.gpu, &vec![0f32; s.len()])?;
        }
        Ok(())
    }
}

/// Everything that depends on the batch size: one buffer per tensor (views share their
/// input's), the gradient buffers, and the recorded dispatch lists of a training step,
/// an evaluation and a prediction.
pub(crate) struct GpuGraph {
    /// The input node (its tensor holds the loaded batch) and the output node.
    pub input: usize,
    pub output: usize,
    pub labels: Tensor,
    /// Value targets (for an element-wise loss).
    pub targets: Option<Tensor>,
    /// acts[t]: the output of node t, for the whole batch.
    pub acts: Vec<Tensor>,
    pub probs: Tensor,
    pub totals: Tensor,
    pub staging: wgpu::Buffer,
    /// MeanIoU's confusion matrix and its staging buffer.
    confusion: Option<(Tensor, wgpu::Buffer)>,
    pub rows: BatchRows,
    /// Samples the batch buffer holds.
    batch_rows: usize,
    /// Dropout nodes: (uniform, node, layer index for the mask seed, rate).
    dropout: Vec<(Uniform<DropoutParams>, usize, usize, f32)>,
    /// Per node: its BatchNormalization state, if it is one.
    batchnorm: Vec<Option<BatchNormNode>>,
    train: Vec<Dispatch>,
    eval: Vec<Dispatch>,
    predict: Vec<Dispatch>,
    /// Whether predict's output is `probs` (softmax head) or the output's activations.
    pub predict_probs: bool,
    /// Bytes of the activations (and what the backward pass keeps beside them), and of
    /// the gradient buffers as planned and as one buffer per gradient would take.
    pub bytes: (u64, (u64, u64)),
    /// For batches loaded as bytes: the packed bytes, the byte → float table and the
    /// dispatch that fills the input from them (made by the first such batch).
    byte_input: std::sync::OnceLock<ByteInput>,
    /// Whether the loaded batch came as bytes: its step starts with that dispatch.
    from_bytes: std::sync::atomic::AtomicBool,
}

/// What a BatchNormalization node needs beyond its parameters: uniforms for training and
/// inference (the valid rows change with each batch) and the batch statistics that the
/// training forward pass keeps for the backward one.
struct BatchNormNode {
    train: Uniform<BatchNormParams>,
    infer: Uniform<BatchNormParams>,
    params: BatchNormParams,
    /// Rows per sample (H·W after a conv, 1 after a dense layer).
    spatial: usize,
    saved: Tensor,
    /// Stand-ins for a missing gamma (ones) or beta (zeros), and where their gradients go.
    ones: Tensor,
    zeros: Tensor,
    unused_grad: Tensor,
}

/// What a LayerNormalization node needs beyond its parameters: the rows' statistics the
/// forward pass keeps for the backward one, scratch for dgamma's products, and stand-ins
/// for a missing gamma (ones) or beta (zeros) and their gradients.
struct LayerNormNode {
    shape: crate::ops::layernorm::LayerNormShape,
    saved: Tensor,
    prod: Tensor,
    ones: Tensor,
    zeros: Tensor,
    unused_grad: Tensor,
}

/// Where a normalization writes dx: its input's gradient, or scratch shaped like `like`
/// where none is needed (it runs for dγ and dβ anyway).
fn or_scratch<'t>(
    gpu: &Gpu,
    da: Option<&'t Tensor>,
    like: &Tensor,
    unused: &'t mut Option<Tensor>,
) -> Result<&'t Tensor> {
    match da {
        Some(da) => Ok(da),
        None => Ok(unused.insert(Tensor::zeros(gpu, &like.shape, "unused input gradient")?)),
    }
}

/// Nodes whose output is a view of their input (no kernel runs).
fn is_alias(node: &Node) -> bool {
    matches!(node.op, Op::Flatten) || (matches!(node.op, Op::Activation) && node.act == Act::Linear)
}

/// Nodes whose input gradient is their output gradient itself (a view, or an activation
/// layer, whose backward runs in place on its output gradient).
fn passes_gradient(node: &Node) -> bool {
    is_alias(node) || matches!(node.op, Op::Activation)
}

/// The element-wise activation a node applies after its op (None when fused or absent:
/// the convolutions and dense layers fuse a plain relu).
fn separate_activation(node: &Node) -> Option<Act> {
    match node.op {
        Op::Conv { .. }
        | Op::DepthwiseConv { .. }
        | Op::SeparableConv { .. }
        | Op::Dense { .. }
            if node.act == Act::RELU =>
        {
            None
        }
        Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::DepthwiseConv { .. }
        | Op::SeparableConv { .. }
        | Op::Dense { .. }
        | Op::Activation => Some(node.act).filter(|a| *a != Act::Linear),
        _ => None,
    }
}

/// The activation whose derivative the backward pass applies to a node's output gradient.
fn backward_activation(node: &Node) -> Option<Act> {
    Some(node.act).filter(|a| *a != Act::Linear)
}

impl GpuGraph {
    pub fn new(p: &GpuParams, graph: &Graph, batch: usize, training: bool) -> Result<GpuGraph> {
        let gpu = &*p.gpu;
        let nodes = &graph.nodes;
        let head: LossHead = plan_head(graph)?;
        let (input, output) = (graph.input()?, head.output);
        let shape_of = |s: &[usize]| -> Vec<usize> {
            std::iter::once(batch).chain(s.iter().copied()).collect()
        };
        // A label per output position (one for a 1-D classifier).
        let labels = Tensor::zeros(gpu, &[batch * head.positions], "labels")?;
        // Value targets, of the output's shape.
        let targets = match head.objective {
            Objective::Values { .. } | Objective::Distributions { .. } => Some(Tensor::zeros(
                gpu,
                &[batch * head.positions * head.classes],
                "targets",
            )?),
            Objective::Classes { .. } => None,
        };
        // Activations; a node with a separate activation also needs its pre-activation,
        // a max pooling its argmax, an element-wise merge of more than two inputs the
        // partial results of its fold.
        let mut acts: Vec<Tensor> = Vec::new();
        let mut pre = Vec::new();
        let mut argmax = Vec::new();
        let mut folds: Vec<Vec<Tensor>> = Vec::new();
        for node in nodes {
            let out_shape = shape_of(&node.out_shape);
            let y = if node.op == Op::Input {
                Tensor::zeros(gpu, &out_shape, "input batch")
                    .context("allocating the input batch")?
            } else if is_alias(node) {
                acts[node.inputs[0]].alias(&out_shape)?
            } else {
                Tensor::zeros(gpu, &out_shape, &format!("{} output", node.name))?
            };
            let z = match separate_activation(node) {
                Some(_) if !matches!(node.op, Op::Activation) => Some(Tensor::zeros(
                    gpu,
                    &out_shape,
                    &format!("{} pre-activation", node.name),
                )?),
                _ => None,
            };
            let am = match node.op {
                Op::MaxPool { .. } => Some(Tensor::zeros(
                    gpu,
                    &out_shape,
                    &format!("{} argmax", node.name),
                )?),
                _ => None,
            };
            let fold = match node.op {
                Op::Merge { .. } => (2..node.inputs.len())
                    .map(|_| Tensor::zeros(gpu, &out_shape, &format!("{} partial", node.name)))
                    .collect::<Result<_>>()?,
                _ => Vec::new(),
            };
            acts.push(y);
            pre.push(z);
            argmax.push(am);
            folds.push(fold);
        }

        let bytes_of = |t: &Tensor| t.len() as u64 * 4;
        // A separable convolution's depthwise stage output (kept for its backward pass;
        // every recorded pass shares it) and the zero bias that stage adds.
        let separable: Vec<Option<(Tensor, Tensor)>> = nodes
            .iter()
            .map(|n| match n.op.depthwise_shape(batch) {
                Some(s) if matches!(n.op, Op::SeparableConv { .. }) => {
                    let what = format!("{} depthwise stage", n.name);
                    let mid = Tensor::zeros(gpu, &[s.output_len()], &what)?;
                    let zero = Tensor::zeros(gpu, &[s.out_c()], &what)?;
                    Ok(Some((mid, zero)))
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let activation_bytes: u64 = nodes
            .iter()
            .zip(&acts)
            .filter(|(n, _)| !is_alias(n))
            .map(|(_, t)| bytes_of(t))
            .chain(separable.iter().flatten().map(|(mid, _)| bytes_of(mid)))
            .chain(pre.iter().flatten().map(bytes_of))
            .chain(argmax.iter().flatten().map(bytes_of))
            .chain(folds.iter().flatten().map(bytes_of))
            .sum();
        // The loss's rows: one per class label (per position) or per sample (values).
        let classes = head.classes;
        let loss_rows = batch * head.positions;
        let mut rows = BatchRows::new(gpu, loss_rows, classes)?;
        if let Objective::Classes { top_k, .. } = head.objective {
            rows.set_top_k(gpu, top_k)?;
        }
        let probs = Tensor::zeros(gpu, &[loss_rows, classes], "probabilities")?;
        let loss = Tensor::zeros(gpu, &[loss_rows], "per-row loss")?;
        let metric_per_sample = Tensor::zeros(gpu, &[loss_rows], "per-sample metric")?;
        let totals = Tensor::zeros(gpu, &[2], "metric totals")?;
        let staging = gpu.staging_buffer(8);
        // MeanIoU's confusion matrix (u32 counts) and its read-back.
        let confusion = match head.objective {
            Objective::Classes { iou: true, .. } => {
                let cells = classes * classes;
                let t = Tensor::zeros(gpu, &[cells], "confusion matrix")?;
                Some((t, gpu.staging_buffer(cells as u64 * 4)))
            }
            _ => None,
        };
        let logits = &acts[output];

        let mut batchnorm = Vec::new();
        for node in nodes {
            batchnorm.push(match node.op {
                Op::BatchNorm {
                    channels,
                    momentum,
                    epsilon,
                    ..
                } => {
                    let spatial = node.in_shape.iter().product::<usize>() / channels.max(1);
                    let mut params =
                        BatchNormParams::new(batch * spatial, channels, true, momentum, epsilon)?;
                    if !node.trainable {
                        params = params.frozen();
                    }
                    let infer = params.inference();
                    Some(BatchNormNode {
                        train: Uniform::new(gpu, &params, "batch normalization"),
                        infer: Uniform::new(gpu, &infer, "batch normalization"),
                        params,
                        spatial,
                        saved: Tensor::zeros(
                            gpu,
                            &[saved_len(channels)],
                            &format!("{} batch statistics", node.name),
                        )?,
                        ones: Tensor::from_slice(
                            gpu,
                            &[channels],
                            &vec![1.0f32; channels],
                            "batch normalization without scale",
                        )?,
                        zeros: Tensor::zeros(
                            gpu,
                            &[channels],
                            "batch normalization without center",
                        )?,
                        unused_grad: Tensor::zeros(gpu, &[channels], "unused gradient")?,
                    })
                }
                _ => None,
            });
        }

        let mut layernorm = Vec::new();
        for (node, y) in nodes.iter().zip(&acts) {
            layernorm.push(match node.op.layernorm_shape(y.len()) {
                Some(shape) => {
                    let c = shape.cols;
                    let what = |w: &str| format!("{} {w}", node.name);
                    Some(LayerNormNode {
                        shape,
                        saved: Tensor::zeros(gpu, &[shape.saved_len()], &what("statistics"))?,
                        prod: Tensor::zeros(gpu, &[shape.len()], &what("gamma products"))?,
                        ones: Tensor::from_slice(gpu, &[c], &vec![1.0f32; c], &what("ones"))?,
                        zeros: Tensor::zeros(gpu, &[c], &what("zeros"))?,
                        unused_grad: Tensor::zeros(gpu, &[c], &what("unused gradient"))?,
                    })
                }
                None => None,
            });
        }

        // Kept beside the activations for the backward pass, as a BatchNormalization's
        // statistics are.
        let activation_bytes = activation_bytes
            + layernorm
                .iter()
                .flatten()
                .map(|l| bytes_of(&l.saved) + bytes_of(&l.prod))
                .sum::<u64>();
        // Forward passes: training (dropout on, batch statistics) and inference (dropout
        // off, moving statistics).
        let mut dropout = Vec::new();
        let forward = |train: bool,
                       dropout: &mut Vec<(Uniform<DropoutParams>, usize, usize, f32)>|
         -> Result<Vec<Dispatch>> {
            let mut ds = Vec::new();
            for (i, node) in nodes.iter().enumerate() {
                if node.op == Op::Input {
                    continue;
                }
                let (a, y) = (&acts[node.inputs[0]], &acts[i]);
                let sep = separate_activation(node);
                let out = pre[i].as_ref().unwrap_or(y);
                let relu = node.act == Act::RELU;
                match &node.op {
                    Op::Conv { .. } => {
                        let s = node.op.conv_shape(batch).expect("conv op");
                        ds.push(conv2d_forward(
                            gpu,
                            out,
                            a,
                            &p.params[i][0],
                            p.bias(i),
                            &s,
                            relu,
                        )?);
                    }
                    Op::ConvTranspose { options, .. } => {
                        let s = node
                            .op
                            .conv_transpose_shape(batch)
                            .expect("transposed conv");
                        let bias = options.use_bias.then(|| &p.params[i][1]);
                        ds.push(conv2d_transpose_forward(
                            gpu,
                            out,
                            a,
                            &p.params[i][0],
                            bias,
                            &s,
                        )?);
                    }
                    Op::DepthwiseConv { .. } => {
                        let s = node.op.depthwise_shape(batch).expect("depthwise op");
                        ds.push(depthwise_conv2d_forward(
                            gpu,
                            out,
                            a,
                            &p.params[i][0],
                            p.bias(i),
                            &s,
                            relu,
                        )?);
                    }
                    Op::SeparableConv { use_bias, .. } => {
                        let (mid, zero) = separable[i].as_ref().expect("separable state");
                        let sd = node.op.depthwise_shape(batch).expect("separable op");
                        let sp = node.op.pointwise_shape(batch).expect("separable op");
                        let pp = &p.params[i];
                        ds.push(depthwise_conv2d_forward(
                            gpu, mid, a, &pp[0], zero, &sd, false,
                        )?);
                        let bias = if *use_bias { &pp[2] } else { p.bias(i) };
                        ds.push(conv2d_forward(gpu, out, mid, &pp[1], bias, &sp, relu)?);
                    }
                    Op::Dense {
                        n_in,
                        units,
                        options,
                    } => {
                        let s = MatmulShape {
                            m: batch,
                            n: *units,
                            k: *n_in,
                            bias: options.use_bias,
                            relu,
                            ..Default::default()
                        };
                        let bias = options.use_bias.then(|| &p.params[i][1]);
                        ds.push(matmul(gpu, out, a, &p.params[i][0], bias, &s)?);
                    }
                    Op::MaxPool { .. } => {
                        let s = node.op.pool_shape(batch).expect("pool op");
                        ds.push(maxpool2d_forward(
                            gpu,
                            y,
                            argmax[i].as_ref().expect("argmax"),
                            a,
                            &s,
                        )?);
                    }
                    Op::AvgPool { .. } => ds.push(avgpool2d_forward(
                        gpu,
                        y,
                        a,
                        &node.op.pool_shape(batch).expect("pool op"),
                    )?),
                    Op::Pad { .. } => {
                        let s = node.op.pad_shape(batch).expect("pad op");
                        ds.push(pad2d(gpu, y, a, &s, false)?);
                    }
                    Op::UpSampling { .. } => {
                        let s = node.op.upsampling_shape(batch).expect("up-sampling op");
                        ds.push(upsampling2d_forward(gpu, y, a, &s)?);
                    }
                    Op::ChannelAffine { scale, offset } => {
                        let s = Tensor::from_slice(gpu, &[scale.len()], scale, &node.name)?;
                        let o = Tensor::from_slice(gpu, &[offset.len()], offset, &node.name)?;
                        ds.push(channel_affine(gpu, y, a, (&s, &o), scale.len(), false)?);
                    }
                    Op::Dropout { rate } => {
                        let r = if train { *rate } else { 0.0 };
                        let u = Uniform::new(gpu, &DropoutParams::new(a.len(), r, 0)?, "dropout");
                        ds.push(dropout_forward(gpu, y, a, &u)?);
                        if train {
                            dropout.push((u, i, graph.layer_index(i), r));
                        }
                    }
                    Op::BatchNorm { .. } => {
                        let b = batchnorm[i].as_ref().expect("batch norm state");
                        let pp = &p.params[i];
                        let (g, be, m, v) = node.op.batchnorm_slots().expect("batch norm op");
                        let gamma = g.map_or(&b.ones, |k| &pp[k]);
                        let beta = be.map_or(&b.zeros, |k| &pp[k]);
                        let params = [gamma, beta, &pp[m], &pp[v]];
                        let u = if train { &b.train } else { &b.infer };
                        ds.push(batchnorm_forward(
                            gpu, y, a, params, &b.saved, u, &b.params,
                        )?);
                    }
                    Op::LayerNorm { .. } => {
                        let l = layernorm[i].as_ref().expect("layer norm state");
                        let (g, b) = node.op.layernorm_slots().expect("layer norm op");
                        let gamma = g.map_or(&l.ones, |k| &p.params[i][k]);
                        let beta = b.map_or(&l.zeros, |k| &p.params[i][k]);
                        ds.push(layernorm_forward(
                            gpu,
                            y,
                            &l.saved,
                            a,
                            [gamma, beta],
                            &l.shape,
                        )?);
                    }
                    Op::Merge { op, scale } => {
                        // y = f(…f(f(x0, x1), x2)…, xn) · scale, the partial results kept.
                        let n = node.inputs.len();
                        let mut left = a;
                        for k in 1..n {
                            let dst = if k == n - 1 { y } else { &folds[i][k - 1] };
                            let s = if k == n - 1 { *scale } else { 1.0 };
                            let right = &acts[node.inputs[k]];
                            ds.push(merge_forward(gpu, dst, left, right, *op, s, false)?);
                            left = dst;
                        }
                    }
                    Op::Concat { rows, widths } => {
                        let total: usize = widths.iter().sum();
                        let mut offset = 0;
                        for (k, &w) in widths.iter().enumerate() {
                            let c = Columns::into_output(batch * rows, w, offset, total);
                            ds.push(copy_columns(gpu, y, &acts[node.inputs[k]], &c, false)?);
                            offset += w;
                        }
                    }
                    Op::Input | Op::Flatten | Op::Activation => {}
                }
                if let Some(act) = sep {
                    let src = if matches!(node.op, Op::Activation) {
                        a
                    } else {
                        out
                    };
                    ds.push(activation_forward(gpu, y, src, act)?);
                }
            }
            Ok(ds)
        };
        let mut train_ds = if training {
            forward(true, &mut dropout)?
        } else {
            Vec::new()
        };
        let mut eval = forward(false, &mut dropout)?;
        let mut predict = forward(false, &mut dropout)?;
        // The loss and metric totals: class labels through the fused softmax cross-entropy,
        // value targets through an element-wise loss.
        let loss_passes = |ds: &mut Vec<Dispatch>| -> Result<()> {
            match (&head.objective, &targets) {
                (Objective::Values { loss: l, metric }, Some(t)) => {
                    ds.push(loss_forward(
                        gpu,
                        &loss,
                        &metric_per_sample,
                        logits,
                        t,
                        &rows,
                        *l,
                        *metric,
                    )?);
                    ds.push(loss_totals(gpu, &totals, &loss, &metric_per_sample, &rows)?);
                }
                (
                    Objective::Distributions {
                        label_smoothing, ..
                    },
                    Some(t),
                ) => {
                    let hits = &metric_per_sample;
                    ds.push(soft_xent_forward(
                        gpu,
                        &probs,
                        &loss,
                        hits,
                        logits,
                        t,
                        &rows,
                        *label_smoothing,
                    )?);
                    ds.push(loss_totals(gpu, &totals, &loss, hits, &rows)?);
                }
                _ => {
                    ds.push(softmax_xent_forward(
                        gpu, &probs, &loss, logits, &labels, &rows,
                    )?);
                    ds.push(loss_metrics(gpu, &totals, &probs, &labels, &loss, &rows)?);
                    if let Some((c, _)) = &confusion {
                        ds.push(confusion_counts(gpu, c, &probs, &labels, &rows)?);
                    }
                }
            }
            Ok(())
        };
        loss_passes(&mut eval)?;
        if head.softmax {
            predict.push(softmax(gpu, &probs, logits, &rows)?);
        }

        let mut gradient_bytes = (0, 0);
        if training {
            loss_passes(&mut train_ds)?;
            let plan = GradientPlan::new(gpu, graph, &acts, p.reuse_gradients)?;
            gradient_bytes = plan.bytes;
            let dout = plan.grads[output].as_ref().expect("the output's gradient");
            train_ds.push(match (&head.objective, &targets) {
                (Objective::Values { loss: l, .. }, Some(t)) => {
                    loss_backward(gpu, dout, logits, t, &rows, *l)?
                }
                (
                    Objective::Distributions {
                        label_smoothing, ..
                    },
                    Some(t),
                ) => soft_xent_backward(gpu, dout, &probs, t, &rows, *label_smoothing)?,
                _ => softmax_xent_backward(gpu, dout, &probs, &labels, &rows)?,
            });
            let readers = graph.readers();
            // Nodes whose relu backward a following max pooling already applied.
            let mut relu_fused = vec![false; nodes.len()];
            let scratch = |t: &Tensor| Tensor::zeros(gpu, &t.shape, "unused input gradient");
            for (i, node) in nodes.iter().enumerate().rev() {
                let Some(dy) = plan.grads[i].as_ref() else {
                    continue; // nothing upstream learns: no backward pass
                };
                // A tensor read several times: its gradient is the sum of its readers'
                // contributions, added in reader order (no atomics: bit-reproducible).
                if let [e0, e1, rest @ ..] = &plan.sums[i][..] {
                    train_ds.push(merge_forward(gpu, dy, e0, e1, MergeOp::Add, 1.0, false)?);
                    for e in rest {
                        train_ds.push(merge_forward(gpu, dy, e, e, MergeOp::First, 1.0, true)?);
                    }
                }
                let da = |k: usize| plan.edges[i][k].as_ref();
                // Whether its parameters learn (a frozen layer passes gradients only).
                let learn = !p.grads[i].is_empty();
                let learned = |slot: Option<usize>| slot.filter(|_| learn);

                let a = &acts[node.inputs.first().copied().unwrap_or(i)];
                if let Some(act) = backward_activation(node).filter(|_| !relu_fused[i]) {
                    // The activation's input: the layer's pre-activation, or an
                    // activation layer's input (a fused relu reads only its output).
                    let x = match node.op {
                        Op::Activation => a,
                        _ => pre[i].as_ref().unwrap_or(&acts[i]),
                    };
                    train_ds.push(activation_backward(gpu, dy, &acts[i], x, act)?);
                }
                match &node.op {
                    Op::Conv { .. } => {
                        let s = node.op.conv_shape(batch).expect("conv op");
                        if let Some(da) = da(0) {
                            train_ds.push(conv2d_backward_input(
                                gpu,
                                da,
                                dy,
                                &p.params[i][0],
                                &s,
                                false,
                            )?);
                        }
                        if learn {
                            let dw = &p.grads[i][0];
                            train_ds.push(conv2d_backward_weight(gpu, dw, dy, a, &s, false)?);
                        }
                        if p.grads[i].len() > 1 {
                            train_ds.push(bias_backward(
                                gpu,
                                &p.grads[i][1],
                                dy,
                                batch * s.out_h() * s.out_w(),
                                s.out_c,
                                false,
                            )?);
                        }
                    }
                    Op::ConvTranspose { .. } => {
                        let s = node
                            .op
                            .conv_transpose_shape(batch)
                            .expect("transposed conv");
                        let zero = p.zero_bias[i].as_ref().expect("a transposed conv's zeros");
                        if let Some(da) = da(0) {
                            let w = &p.params[i][0];
                            let d = conv2d_transpose_backward_input(gpu, da, dy, w, zero, &s)?;
                            train_ds.push(d);
                        }
                        if learn {
                            let db = p.grads[i].get(1);
                            let dw = &p.grads[i][0];
                            let d =
                                conv2d_transpose_backward_weight(gpu, dw, db, dy, a, &s, false)?;
                            train_ds.push(d);
                        }
                    }
                    Op::DepthwiseConv { .. } => {
                        let s = node.op.depthwise_shape(batch).expect("depthwise op");
                        if let Some(da) = da(0) {
                            train_ds.push(depthwise_conv2d_backward_input(
                                gpu,
                                da,
                                dy,
                                &p.params[i][0],
                                &s,
                                false,
                            )?);
                        }
                        if learn {
                            let dw = &p.grads[i][0];
                            let d = depthwise_conv2d_backward_weight(gpu, dw, dy, a, &s, false)?;
                            train_ds.push(d);
                        }
                        if p.grads[i].len() > 1 {
                            train_ds.push(bias_backward(
                                gpu,
                                &p.grads[i][1],
                                dy,
                                batch * s.out_h() * s.out_w(),
                                s.out_c(),
                                false,
                            )?);
                        }
                    }
                    Op::SeparableConv { .. } => {
                        let (mid, _) = separable[i].as_ref().expect("separable state");
                        let sd = node.op.depthwise_shape(batch).expect("separable op");
                        let sp = node.op.pointwise_shape(batch).expect("separable op");
                        let (pp, pg) = (&p.params[i], &p.grads[i]);
                        let dmid = scratch(mid)?;
                        train_ds.push(conv2d_backward_input(gpu, &dmid, dy, &pp[1], &sp, false)?);
                        if learn {
                            let d = conv2d_backward_weight(gpu, &pg[1], dy, mid, &sp, false)?;
                            train_ds.push(d);
                        }
                        if pg.len() > 2 {
                            let rows = batch * sp.in_h * sp.in_w;
                            train_ds.push(bias_backward(gpu, &pg[2], dy, rows, sp.out_c, false)?);
                        }
                        if let Some(da) = da(0) {
                            let d = depthwise_conv2d_backward_input(
                                gpu, da, &dmid, &pp[0], &sd, false,
                            )?;
                            train_ds.push(d);
                        }
                        if learn {
                            let d = depthwise_conv2d_backward_weight(
                                gpu, &pg[0], &dmid, a, &sd, false,
                            )?;
                            train_ds.push(d);
                        }
                    }
                    Op::Dense { n_in, units, .. } => {
                        if let Some(da) = da(0) {
                            let s = MatmulShape {
                                m: batch,
                                n: *n_in,
                                k: *units,
                                trans_b: true,
                                ..Default::default()
                            };
                            train_ds.push(matmul(gpu, da, dy, &p.params[i][0], None, &s)?);
                        }
                        let s = MatmulShape {
                            m: *n_in,
                            n: *units,
                            k: batch,
                            trans_a: true,
                            ..Default::default()
                        };
                        if learn {
                            train_ds.push(matmul(gpu, &p.grads[i][0], a, dy, None, &s)?);
                        }
                        if p.grads[i].len() > 1 {
                            train_ds.push(bias_backward(
                                gpu,
                                &p.grads[i][1],
                                dy,
                                batch,
                                *units,
                                false,
                            )?);
                        }
                    }
                    Op::MaxPool { .. } => {
                        if let Some(da) = da(0) {
                            let s = node.op.pool_shape(batch).expect("pool op");
                            let arg = argmax[i].as_ref().expect("argmax");
                            // A relu right before the pooling, read by it alone: mask by
                            // the pooled output here instead of a relu-backward pass over
                            // the larger input.
                            let src = node.inputs[0];
                            let relu_before = backward_activation(&nodes[src]) == Some(Act::RELU)
                                && readers[src].len() == 1;
                            train_ds.push(if relu_before {
                                relu_fused[src] = true;
                                maxpool2d_relu_backward(gpu, da, dy, arg, &acts[i], &s, false)?
                            } else {
                                maxpool2d_backward(gpu, da, dy, arg, &s, false)?
                            });
                        }
                    }
                    Op::AvgPool { .. } => {
                        if let Some(da) = da(0) {
                            train_ds.push(avgpool2d_backward(
                                gpu,
                                da,
                                dy,
                                &node.op.pool_shape(batch).expect("pool op"),
                                false,
                            )?);
                        }
                    }
                    Op::Pad { .. } => {
                        if let Some(da) = da(0) {
                            let s = node.op.pad_shape(batch).expect("pad op");
                            train_ds.push(pad2d(gpu, da, dy, &s.reversed(), false)?);
                        }
                    }
                    Op::UpSampling { .. } => {
                        if let Some(da) = da(0) {
                            let s = node.op.upsampling_shape(batch).expect("up-sampling op");
                            train_ds.push(upsampling2d_backward(gpu, da, dy, &s, false)?);
                        }
                    }
                    Op::BatchNorm { .. } => {
                        // Always: dγ and dβ are needed even where dx is not.
                        let b = batchnorm[i].as_ref().expect("batch norm state");
                        let mut unused = None;
                        let dx = or_scratch(gpu, da(0), a, &mut unused)?;
                        let (g, be, ..) = node.op.batchnorm_slots().expect("batch norm op");
                        // Without gamma or beta (or frozen) their gradient is computed and
                        // dropped; a frozen layer's gamma still scales dx.
                        let dgamma = learned(g).map_or(&b.unused_grad, |k| &p.grads[i][k]);
                        let dbeta = learned(be).map_or(&b.unused_grad, |k| &p.grads[i][k]);
                        let gamma = g.map_or(&b.ones, |k| &p.params[i][k]);
                        train_ds.push(batchnorm_backward(
                            gpu, dx, dgamma, dbeta, dy, a, gamma, &b.saved, &b.train, &b.params,
                        )?);
                    }
                    Op::LayerNorm { .. } => {
                        // Always: dgamma and dbeta are needed even where dx is not.
                        let l = layernorm[i].as_ref().expect("layer norm state");
                        let mut unused = None;
                        let dx = or_scratch(gpu, da(0), a, &mut unused)?;
                        let (g, b) = node.op.layernorm_slots().expect("layer norm op");
                        let dgamma = learned(g).map_or(&l.unused_grad, |k| &p.grads[i][k]);
                        let dbeta = learned(b).map_or(&l.unused_grad, |k| &p.grads[i][k]);
                        let gamma = g.map_or(&l.ones, |k| &p.params[i][k]);
                        train_ds.push(layernorm_backward(
                            gpu,
                            [dx, dgamma, dbeta],
                            &l.prod,
                            dy,
                            a,
                            gamma,
                            &l.saved,
                            &l.shape,
                            false,
                        )?);
                    }
                    Op::ChannelAffine { scale, .. } => {
                        if let Some(da) = da(0) {
                            let s = Tensor::from_slice(gpu, &[scale.len()], scale, &node.name)?;
                            let none = Tensor::zeros(gpu, &[scale.len()], &node.name)?;
                            train_ds.push(channel_affine(
                                gpu,
                                da,
                                dy,
                                (&s, &none),
                                scale.len(),
                                true,
                            )?);
                        }
                    }
                    Op::Dropout { .. } => {
                        if let Some(da) = da(0) {
                            let (u, ..) = dropout
                                .iter()
                                .find(|(_, j, ..)| *j == i)
                                .expect("dropout uniform");
                            train_ds.push(dropout_backward(gpu, da, dy, u)?);
                        }
                    }
                    Op::Merge { op, scale } => {
                        // The fold backwards: step k took (left, x_k) to its result.
                        let n = node.inputs.len();
                        let mut g = dy.alias(&dy.shape)?;
                        for k in (1..n).rev() {
                            let left = if k == 1 {
                                &acts[node.inputs[0]]
                            } else {
                                &folds[i][k - 2]
                            };
                            let s = if k == n - 1 { *scale } else { 1.0 };
                            let dleft = match (k, da(0)) {
                                (1, Some(d)) => d.alias(&d.shape)?,
                                _ => scratch(&g)?,
                            };
                            let dright = match da(k) {
                                Some(d) => d.alias(&d.shape)?,
                                None => scratch(&g)?,
                            };
                            let right = &acts[node.inputs[k]];
                            train_ds.push(merge_backward(
                                gpu, &dleft, &dright, &g, left, right, *op, s,
                            )?);
                            g = dleft;
                        }
                    }
                    Op::Concat { rows, widths } => {
                        let total: usize = widths.iter().sum();
                        let mut offset = 0;
                        for (k, &w) in widths.iter().enumerate() {
                            if let Some(da) = da(k) {
                                let c = Columns::out_of_output(batch * rows, w, offset, total);
                                train_ds.push(copy_columns(gpu, da, dy, &c, false)?);
                            }
                            offset += w;
                        }
                    }
                    Op::Input | Op::Flatten | Op::Activation => {}
                }
            }
        }
        // Kernel regularizers: the penalty joins the loss total (training and evaluation,
        // as in Keras) and its gradient the kernel's, before the optimizer update.
        for (i, node) in nodes.iter().enumerate() {
            if !node.trainable {
                continue; // Keras counts the penalties of trainable weights only
            }
            for (k, factor) in node.op.l2_penalties() {
                let w = &p.params[i][k];
                eval.push(l2_penalty(gpu, &totals, w, factor, &rows)?);
                if training {
                    train_ds.push(l2_penalty(gpu, &totals, w, factor, &rows)?);
                    train_ds.push(l2_gradient(gpu, &p.grads[i][k], w, factor)?);
                }
            }
        }
        let predict_probs = head.softmax;
        Ok(GpuGraph {
            input,
            output,
            batch_rows: batch,
            labels,
            targets,
            acts,
            probs,
            totals,
            staging,
            confusion,
            rows,
            dropout,
            batchnorm,
            train: train_ds,
            eval,
            predict,
            predict_probs,
            bytes: (activation_bytes, gradient_bytes),
            byte_input: std::sync::OnceLock::new(),
            from_bytes: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// A graph's inputs as bytes: the packed bytes, the byte → float table, each image's
/// draw, the kernel's parameters and the dispatch that fills the input from them.
struct ByteInput {
    packed: Tensor,
    _table: Tensor,
    draws: Tensor,
    params: Uniform<BytesParams>,
    unpack: Dispatch,
}

/// Where each gradient of a training step lives.
struct GradientPlan {
    /// grads[t]: the gradient of tensor t (None where nothing upstream learns).
    grads: Vec<Option<Tensor>>,
    /// edges[j][k]: where node j's backward writes the gradient of its input k (None
    /// where that input needs none).
    edges: Vec<Vec<Option<Tensor>>>,
    /// sums[t], for a tensor read several times: its readers' contributions, in reader
    /// order, whose sum is grads[t].
    sums: Vec<Vec<Tensor>>,
    /// Bytes of the gradient buffers allocated, and what one buffer per gradient would
    /// have taken.
    bytes: (u64, u64),
}

/// One gradient buffer the backward pass needs: shaped like tensor `t`, written first at
/// backward time `birth` and read last at `death` (node i's backward runs at n − 1 − i).
struct Request {
    t: usize,
    birth: usize,
    death: usize,
}

impl GradientPlan {
    /// Plans from the output back: a tensor read once takes the gradient its reader
    /// writes (the reader's own output gradient where the reader passes it through: a
    /// view, or an activation layer working in place); a tensor read several times gets
    /// one buffer per reading and one for their sum. Then, by liveness, a buffer whose
    /// last reader has run is reused for a later gradient of the same size (`reuse`).
    fn new(gpu: &Gpu, graph: &Graph, acts: &[Tensor], reuse: bool) -> Result<GradientPlan> {
        let nodes = &graph.nodes;
        let n = nodes.len();
        let need = graph.needs_grad();
        let readers = graph.readers();
        let time = |i: usize| n - 1 - i;
        let mut requests: Vec<Request> = Vec::new();
        let mut grad_req: Vec<Option<usize>> = vec![None; n];
        let mut edge_req: Vec<Vec<Option<usize>>> =
            nodes.iter().map(|nd| vec![None; nd.inputs.len()]).collect();
        let mut sum_req: Vec<Vec<usize>> = vec![Vec::new(); n];
        for t in (0..n).rev() {
            if !need[t] {
                continue;
            }
            // The buffer reader j writes t's gradient into (its own output gradient when
            // it passes the gradient through); read last, so far, at t's backward.
            let edge = |j: usize, requests: &mut Vec<Request>| -> Result<usize> {
                let r = if passes_gradient(&nodes[j]) {
                    grad_req[j].context("a reader's gradient is planned before its input's")?
                } else {
                    requests.push(Request {
                        t,
                        birth: time(j),
                        death: time(j),
                    });
                    requests.len() - 1
                };
                requests[r].death = requests[r].death.max(time(t));
                Ok(r)
            };
            match &readers[t][..] {
                [] => {
                    requests.push(Request {
                        t,
                        birth: 0,
                        death: time(t),
                    });
                    grad_req[t] = Some(requests.len() - 1);
                }
                [(j, k)] => {
                    let r = edge(*j, &mut requests)?;
                    grad_req[t] = Some(r);
                    edge_req[*j][*k] = Some(r);
                }
                several => {
                    for &(j, k) in several {
                        let r = edge(j, &mut requests)?;
                        sum_req[t].push(r);
                        edge_req[j][k] = Some(r);
                    }
                    requests.push(Request {
                        t,
                        birth: time(t),
                        death: time(t),
                    });
                    grad_req[t] = Some(requests.len() - 1);
                }
            }
        }
        // A request takes a free buffer of its size (one whose last reader ran before it
        // is first written), else a new one; in birth order.
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&r| (requests[r].birth, r));
        let mut pool: Vec<(usize, Tensor)> = Vec::new(); // (death of its last request, buffer)
        let mut buffer_of = vec![0usize; requests.len()];
        let mut unplanned = 0u64;
        for r in order {
            let req = &requests[r];
            let shape = &acts[req.t].shape;
            unplanned += acts[req.t].len() as u64 * 4;
            let free = pool
                .iter()
                .position(|(death, b)| reuse && *death < req.birth && b.len() == acts[req.t].len());
            buffer_of[r] = match free {
                Some(b) => b,
                None => {
                    let name = format!("{} gradient", nodes[req.t].name);
                    pool.push((0, Tensor::zeros(gpu, shape, &name)?));
                    pool.len() - 1
                }
            };
            pool[buffer_of[r]].0 = req.death;
        }
        let planned = pool.iter().map(|(_, b)| b.len() as u64 * 4).sum();
        let view = |r: usize, t: usize| pool[buffer_of[r]].1.alias(&acts[t].shape);
        let grads = (0..n)
            .map(|t| grad_req[t].map(|r| view(r, t)).transpose())
            .collect::<Result<_>>()?;
        let edges = nodes
            .iter()
            .zip(&edge_req)
            .map(|(nd, reqs)| {
                reqs.iter()
                    .zip(&nd.inputs)
                    .map(|(r, &t)| r.map(|r| view(r, t)).transpose())
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        let sums = (0..n)
            .map(|t| {
                sum_req[t]
                    .iter()
                    .map(|&r| view(r, t))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        Ok(GradientPlan {
            grads,
            edges,
            sums,
            bytes: (planned, unplanned),
        })
    }
}

impl GpuGraph {
    /// Whether this graph was built with the training passes.
    pub fn has_train(&self) -> bool {
        !self.train.is_empty()
    }

    /// Queues one batch: `x` holds `valid` samples (≤ batch), `targets` theirs.
    pub fn load(&self, gpu: &Gpu, x: &[f32], targets: Option<Targets>, valid: usize) -> Result<()> {
        self.acts[self.input].write_at(gpu, 0, x)?;
        self.from_bytes
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.load_targets(gpu, targets, valid)
    }

    /// [`GpuGraph::load`] with the inputs as bytes (8-bit images): a quarter of the
    /// upload; the step's first dispatch turns them into the floats b / 255.
    /// `x` holds images of `shape`; `draws` are each image's (flip, dy, dx, 0) and the
    /// fill, applied in the step.
    pub fn load_bytes(
        &self,
        gpu: &Gpu,
        (x, draws, shape): (&[u8], GpuDraws, [usize; 3]),
        targets: Option<Targets>,
        valid: usize,
    ) -> Result<()> {
        let input = &self.acts[self.input];
        anyhow::ensure!(
            x.len() <= input.len(),
            "{} input bytes overrun the batch's {} values",
            x.len(),
            input.len()
        );
        if self.byte_input.get().is_none() {
            let packed = Tensor::zeros(gpu, &[input.len().div_ceil(4)], "input bytes")?;
            let table = Tensor::from_slice(gpu, &[256], &unit_table(), "byte values")?;
            let draws = Tensor::zeros(gpu, &[self.batch_rows.max(1) * 4], "input draws")?;
            let params = Uniform::new(gpu, &BytesParams::new(input.len(), shape)?, "bytes");
            let unpack = bytes_to_unit(gpu, input, &packed, &table, &draws, &params, input.len())?;
            let _ = self.byte_input.set(ByteInput {
                packed,
                _table: table,
                draws,
                params,
                unpack,
            });
        }
        let b = self.byte_input.get().context("the byte input")?;
        let mut words = Vec::new();
        pack_bytes(x, &mut words);
        b.packed.write_at(gpu, 0, &words)?;
        let fill = draws.map(|(d, fill)| {
            let flat: Vec<i32> = d.iter().flatten().copied().collect();
            (flat, fill)
        });
        if let Some((flat, _)) = &fill {
            b.draws.write_at(gpu, 0, flat)?;
        }
        let params = BytesParams::new(input.len(), shape)?.with_draws(fill.map(|f| f.1));
        b.params.set(gpu, &params);
        self.from_bytes
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.load_targets(gpu, targets, valid)
    }

    /// The step's first dispatch when the batch came as bytes.
    fn unpack(&self) -> Option<&Dispatch> {
        self.from_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| self.byte_input.get().map(|b| &b.unpack))
            .flatten()
    }

    /// Writes a batch's targets and its valid rows.
    fn load_targets(&self, gpu: &Gpu, targets: Option<Targets>, valid: usize) -> Result<()> {
        match (targets, &self.targets) {
            (Some(Targets::Classes(l)), _) => self.labels.write_at(gpu, 0, l)?,
            (Some(Targets::Values(v)), Some(t)) => t.write_at(gpu, 0, v)?,
            (Some(Targets::Values(_)), None) => {
                anyhow::bail!("value targets for a model compiled with a class loss")
            }
            (None, _) => {}
        }
        for b in self.batchnorm.iter().flatten() {
            let rows = valid * b.spatial;
            b.train.set(gpu, &b.params.with_valid(rows));
            b.infer.set(gpu, &b.params.with_valid(rows).inference());
        }
        // The loss rows of the valid samples (a label per position, or one per sample).
        self.rows
            .set_valid(gpu, valid * self.rows.rows / self.batch_rows.max(1))
    }

    /// Records and submits one training step (forward, loss, backward, update) as one
    /// command buffer. `step` is the 1-based optimizer step; `seed` varies dropout masks.
    /// A rank's `shard` of a data-parallel step takes two: forward and backward, whose
    /// gradients are read back, averaged over the ranks and written back; then the update.
    pub fn train_step(
        &self,
        p: &GpuParams,
        opt: &Optimizer,
        step: u64,
        seed: u64,
        shard: Option<&Shard>,
    ) -> Result<()> {
        let gpu = &*p.gpu;
        p.opt_uniform.set(gpu, &opt.params(step));
        let first = shard.map_or(0, |s| s.first);
        for (u, i, layer, rate) in &self.dropout {
            let len = self.acts[*i].len();
            let per_sample = len / self.batch_rows.max(1);
            let params = DropoutParams::new(len, *rate, dropout_seed(seed, step, *layer))?;
            u.set(gpu, &params.with_offset(first * per_sample));
        }
        let first = self.unpack();
        let Some(shard) = shard else {
            let all: Vec<&Dispatch> = first
                .into_iter()
                .chain(&self.train)
                .chain(&p.updates)
                .collect();
            return gpu.run(&all);
        };
        let grads: Vec<&Tensor> = p.grads.iter().flatten().collect();
        let sources: Vec<(&wgpu::Buffer, u64)> = grads
            .iter()
            .map(|t| (&t.buffer, t.len() as u64 * 4))
            .collect();
        let bytes: u64 = sources.iter().map(|s| s.1).sum();
        if bytes == 0 {
            let all: Vec<&Dispatch> = first
                .into_iter()
                .chain(&self.train)
                .chain(&p.updates)
                .collect();
            return gpu.run(&all); // nothing trainable: nothing to average
        }
        let staging = p.exchange.get_or_init(|| gpu.staging_buffer(bytes));
        let all: Vec<&Dispatch> = first.into_iter().chain(&self.train).collect();
        gpu.run_and_copy(&all, &sources, staging)?;
        let mut host: Vec<f32> = bytemuck::pod_collect_to_vec(&gpu.map_read(staging, bytes)?);
        shard.reduce(&mut host)?;
        let mut at = 0;
        for t in grads {
            t.write_at(gpu, 0, &host[at..at + t.len()])?;
            at += t.len();
        }
        gpu.run(&p.updates.iter().collect::<Vec<_>>())
    }

    /// Wall time of every dispatch of a training step (each link of a chained dispatch
    /// on its own), in step order: its first run, which on a CPU adapter includes the
    /// shader compile when its pipeline had not run before, and the median of `reps`
    /// runs after it. Where the time of a step, and of a cold start, goes.
    pub fn profile(&self, p: &GpuParams, reps: usize) -> Result<Vec<DispatchTime>> {
        let gpu = &*p.gpu;
        let mut out = Vec::new();
        for d in self
            .train
            .iter()
            .chain(&p.updates)
            .flat_map(Dispatch::links)
        {
            let time = || -> Result<f64> {
                let t = std::time::Instant::now();
                d.run_alone(gpu)?;
                Ok(t.elapsed().as_secs_f64())
            };
            let first = time()?;
            let mut times: Vec<f64> = (0..reps.max(1)).map(|_| time()).collect::<Result<_>>()?;
            times.sort_by(f64::total_cmp);
            out.push(DispatchTime {
                kernel: d.kernel,
                variant: d.variant,
                first_s: first,
                warm_s: times[times.len() / 2],
            });
        }
        Ok(out)
    }

    /// Forward pass plus loss and metrics (evaluate).
    pub fn eval_step(&self, gpu: &Gpu) -> Result<()> {
        gpu.run(
            &self
                .unpack()
                .into_iter()
                .chain(&self.eval)
                .collect::<Vec<_>>(),
        )
    }

    /// Forward pass (plus softmax) for predict and feature maps.
    pub fn predict_step(&self, gpu: &Gpu) -> Result<()> {
        gpu.run(
            &self
                .unpack()
                .into_iter()
                .chain(&self.predict)
                .collect::<Vec<_>>(),
        )
    }

    /// Resets the GPU-side loss/accuracy totals.
    pub fn reset_totals(&self, gpu: &Gpu) -> Result<()> {
        if let Some((c, _)) = &self.confusion {
            c.write(gpu, &vec![0u32; c.len()])?;
        }
        self.totals.write(gpu, &[0f32, 0.0])
    }

    /// Reads (loss sum, correct count) accumulated since the last reset.
    pub fn read_totals(&self, gpu: &Gpu) -> Result<(f64, f64)> {
        let raw = gpu.read_bytes(&self.totals.buffer, &self.staging, 8)?;
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
        if let Some((c, staging)) = &self.confusion {
            // MeanIoU over the counts so far, scaled by the rows counted so that the
            // caller's division by them gives it back.
            let raw = gpu.read_bytes(&c.buffer, staging, c.len() as u64 * 4)?;
            let counts: Vec<u64> = bytemuck::pod_collect_to_vec::<u8, u32>(&raw)
                .into_iter()
                .map(u64::from)
                .collect();
            let rows: u64 = counts.iter().sum();
            let iou = mean_iou(&counts, self.rows.cols);
            return Ok((f64::from(v[0]), iou * rows as f64));
        }
        Ok((f64::from(v[0]), f64::from(v[1])))
    }
}

/// One dispatch's times from [`Model::profile_step`](super::Model::profile_step).
#[derive(Clone, Copy, Debug)]
pub struct DispatchTime {
    /// The kernel dispatched.
    pub kernel: Kernel,
    /// The kernel family its pipeline was compiled for (Portable for non-GEMM kernels).
    pub variant: Variant,
    /// Seconds of its first run (with the shader compile when cold).
    pub first_s: f64,
    /// Median seconds of the runs after it.
    pub warm_s: f64,
}

/// The dropout mask seed of node `node` at `step` (the CPU path uses the same).
pub(crate) fn dropout_seed(seed: u64, step: u64, node: usize) -> u32 {
    use crate::ops::dropout::pcg;
    pcg(pcg(seed as u32 ^ (seed >> 32) as u32)
        ^ pcg(step as u32)
        ^ (node as u32).wrapping_mul(0x9E37_79B9))
}
