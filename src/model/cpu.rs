//! The CPU reference execution of a model: the same node walk as the GPU graph, built on
//! the ops' CPU references. It validates the GPU graph end to end (same initial weights,
//! same batches → same weights) and is the baseline in the benchmarks.

use super::plan_head;
use crate::layers::{ActivationFn, Node, Op};
use crate::ops::activation::{activation_backward_cpu, activation_forward_cpu};
use crate::ops::batchnorm::{
    BatchNormParams, BatchNormState, batchnorm_backward_cpu, batchnorm_forward_cpu,
};
use crate::ops::conv2d::{conv2d_backward_cpu, conv2d_forward_cpu};
use crate::ops::dropout::{DropoutParams, dropout_backward_cpu, dropout_forward_cpu};
use crate::ops::matmul::{dense_backward_cpu, dense_forward_cpu};
use crate::ops::optimizer::Optimizer;
use crate::ops::pool2d::{
    avgpool2d_backward_cpu, avgpool2d_forward_cpu, maxpool2d_backward_cpu, maxpool2d_forward_cpu,
};
use crate::ops::softmax_xent::{
    loss_metrics_cpu, softmax_cpu, softmax_xent_backward_cpu, softmax_xent_forward_cpu,
};
use anyhow::Result;

/// Parameters (per node: kernel, bias) and optimizer state on the host.
pub(crate) struct CpuEngine {
    pub params: Vec<Vec<Vec<f32>>>,
    /// Per node, per trainable tensor, the optimizer's slots.
    pub state: Vec<Vec<Vec<Vec<f32>>>>,
}

/// A BatchNormalization node's training batch: its [mean, 1/√(var + ε)] and the moving
/// mean and variance after it.
type BatchStats = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Activations of one forward pass: acts[i] is node i's input.
struct Trace {
    acts: Vec<Vec<f32>>,
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
        CpuEngine { params, state }
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
        nodes: &[Node],
        x: &[f32],
        batch: usize,
        dropout_seed: Option<(u64, u64)>,
    ) -> Trace {
        let mut acts = vec![x.to_vec()];
        let mut argmax = Vec::new();
        let mut batchnorm = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let a = &acts[i];
            let n_out = batch * node.out_shape.iter().product::<usize>();
            let mut y = vec![0f32; n_out];
            let mut am = Vec::new();
            let mut bn = None;
            match &node.op {
                Op::BatchNorm {
                    channels,
                    momentum,
                    epsilon,
                } => {
                    let training = dropout_seed.is_some();
                    let p = BatchNormParams::new(
                        a.len() / channels,
                        *channels,
                        training,
                        *momentum,
                        *epsilon,
                    )
                    .expect("shapes checked at add");
                    let w = &self.params[i];
                    let (mut mm, mut mv) = (w[2].clone(), w[3].clone());
                    let state = BatchNormState {
                        gamma: &w[0],
                        beta: &w[1],
                        moving_mean: &mut mm,
                        moving_var: &mut mv,
                    };
                    let saved = batchnorm_forward_cpu(&mut y, a, state, &p);
                    bn = training.then_some((saved, mm, mv));
                }
                Op::Conv { .. } => conv2d_forward_cpu(
                    &mut y,
                    a,
                    &self.params[i][0],
                    &self.params[i][1],
                    &node.op.conv_shape(batch).expect("conv op"),
                    false,
                ),
                Op::Dense { n_in, units } => dense_forward_cpu(
                    &mut y,
                    a,
                    &self.params[i][0],
                    &self.params[i][1],
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
                Op::Dropout { rate } => match dropout_seed {
                    Some((seed, step)) => {
                        let p = DropoutParams::new(
                            a.len(),
                            *rate,
                            super::graph::dropout_seed(seed, step, i),
                        )
                        .expect("rate checked at add");
                        dropout_forward_cpu(&mut y, a, &p);
                    }
                    None => y.copy_from_slice(a),
                },
                Op::Flatten | Op::Activation => y.copy_from_slice(a),
            }
            if let Some(act) = node.activation.elementwise() {
                let z = y.clone();
                activation_forward_cpu(&mut y, &z, act);
            }
            acts.push(y);
            argmax.push(am);
            batchnorm.push(bn);
        }
        Trace {
            acts,
            argmax,
            batchnorm,
        }
    }

    /// Loss sum and correct count of a batch, plus the probabilities.
    fn loss(
        nodes: &[Node],
        logits: &[f32],
        labels: &[u32],
        batch: usize,
    ) -> Result<(Vec<f32>, f64, usize)> {
        let classes = plan_head(nodes)?.classes;
        let mut probs = vec![0.0; batch * classes];
        let mut loss = vec![0.0; batch];
        softmax_xent_forward_cpu(&mut probs, &mut loss, logits, labels, classes, batch);
        let (sum, hits) = loss_metrics_cpu(&probs, labels, &loss, classes, batch);
        Ok((probs, sum, hits))
    }

    /// One training step on `batch` samples; returns (loss sum, correct count).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        nodes: &[Node],
        x: &[f32],
        labels: &[u32],
        batch: usize,
        opt: &Optimizer,
        step: u64,
        seed: u64,
    ) -> Result<(f64, usize)> {
        let classes = plan_head(nodes)?.classes;
        let t = self.forward(nodes, x, batch, Some((seed, step)));
        let (probs, sum, hits) = Self::loss(nodes, &t.acts[nodes.len()], labels, batch)?;
        let mut dy = vec![0.0; batch * classes];
        softmax_xent_backward_cpu(&mut dy, &probs, labels, classes, batch);
        let mut grads: Vec<Vec<Vec<f32>>> = self
            .params
            .iter()
            .map(|p| p.iter().map(|t| vec![0.0; t.len()]).collect())
            .collect();
        for (i, node) in nodes.iter().enumerate().rev() {
            if let Some(act) = node
                .activation
                .elementwise()
                .filter(|_| node.activation != ActivationFn::Linear)
            {
                activation_backward_cpu(&mut dy, &t.acts[i + 1], act);
            }
            let a = &t.acts[i];
            let mut da = vec![0.0; a.len()];
            let need_da = i > 0;
            match &node.op {
                Op::BatchNorm { channels, .. } => {
                    let (saved, _, _) = t.batchnorm[i].as_ref().expect("training statistics");
                    let p = BatchNormParams::new(a.len() / channels, *channels, true, 0.0, 1.0)?;
                    let (gg, gb) = grads[i].split_at_mut(1);
                    batchnorm_backward_cpu(
                        &mut da,
                        &mut gg[0],
                        &mut gb[0],
                        &dy,
                        a,
                        &self.params[i][0],
                        saved,
                        &p,
                    );
                }
                Op::Conv { .. } => {
                    let (gw, gb) = grads[i].split_at_mut(1);
                    conv2d_backward_cpu(
                        need_da.then_some(&mut da[..]),
                        &mut gw[0],
                        &mut gb[0],
                        &dy,
                        a,
                        &self.params[i][0],
                        &node.op.conv_shape(batch).expect("conv op"),
                    );
                }
                Op::Dense { n_in, units } => {
                    let (gw, gb) = grads[i].split_at_mut(1);
                    dense_backward_cpu(
                        need_da.then_some(&mut da[..]),
                        &mut gw[0],
                        &mut gb[0],
                        &dy,
                        a,
                        &self.params[i][0],
                        batch,
                        *n_in,
                        *units,
                    );
                }
                Op::MaxPool { .. } => maxpool2d_backward_cpu(
                    &mut da,
                    &dy,
                    &t.argmax[i],
                    &node.op.pool_shape(batch).expect("pool op"),
                ),
                Op::AvgPool { .. } => avgpool2d_backward_cpu(
                    &mut da,
                    &dy,
                    &node.op.pool_shape(batch).expect("pool op"),
                ),
                Op::Dropout { rate } => {
                    let p = DropoutParams::new(
                        a.len(),
                        *rate,
                        super::graph::dropout_seed(seed, step, i),
                    )?;
                    dropout_backward_cpu(&mut da, &dy, &p);
                }
                Op::Flatten | Op::Activation => da.copy_from_slice(&dy),
            }
            dy = da;
        }
        // The optimizer updates the trainable tensors (they come first); a batch
        // normalization's moving statistics take this batch's.
        for (i, node) in nodes.iter().enumerate() {
            let trainable = node.trainable_tensors();
            let (p, g, s) = (&mut self.params[i], &grads[i], &mut self.state[i]);
            for ((p, g), s) in p.iter_mut().zip(g).zip(s).take(trainable) {
                opt.update_cpu(p, g, s, step);
            }
            if let Some((_, mm, mv)) = &t.batchnorm[i] {
                p[2].clone_from(mm);
                p[3].clone_from(mv);
            }
        }
        Ok((sum, hits))
    }

    /// Loss sum and correct count without training.
    pub fn eval_batch(
        &self,
        nodes: &[Node],
        x: &[f32],
        labels: &[u32],
        batch: usize,
    ) -> Result<(f64, usize)> {
        let t = self.forward(nodes, x, batch, None);
        let (_, sum, hits) = Self::loss(nodes, &t.acts[nodes.len()], labels, batch)?;
        Ok((sum, hits))
    }

    /// Model outputs (probabilities with a softmax head) of a batch.
    pub fn predict_batch(&self, nodes: &[Node], x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let head = plan_head(nodes)?;
        let t = self.forward(nodes, x, batch, None);
        let logits = &t.acts[nodes.len()];
        if !head.softmax {
            return Ok(logits.clone());
        }
        let mut probs = vec![0.0; logits.len()];
        softmax_cpu(&mut probs, logits, head.classes);
        Ok(probs)
    }

    /// Every node's output for a batch (feature maps).
    pub fn layer_outputs(&self, nodes: &[Node], x: &[f32], batch: usize) -> Vec<Vec<f32>> {
        self.forward(nodes, x, batch, None).acts.split_off(1)
    }
}
