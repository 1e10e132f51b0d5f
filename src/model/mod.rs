//! Keras-style models trained on the GPU (or on the CPU reference path): [`Sequential`],
//! a linear stack of layers, and the functional [`Model`], any graph of layers built by
//! applying layers to symbolic tensors. Both are one engine: a `Sequential` is the chain
//! case of a [`Graph`].
//!
//! ```no_run
//! use wgcnn::prelude::*;
//! # fn main() -> anyhow::Result<()> {
//! let mut model = Sequential::new();
//! model.add(Conv2D::new(64, 3).activation(Relu).input_shape(&[28, 28, 1]))?;
//! model.add(Flatten::new())?;
//! model.add(Dense::new(10).activation(Softmax))?;
//! model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
//! print!("{}", model.summary());
//! # Ok(()) }
//! ```
//!
//! Where things are: `graph.rs` the graph's representation, `functional.rs` the symbolic
//! tensors and [`Model::new`], `fit.rs` the training and inference loops, `gpu.rs` the GPU
//! step recorder, `cpu.rs` the CPU reference executor, `io.rs` the files, `budget.rs` the
//! size checks.

mod budget;
mod cpu;
mod data_parallel;
mod fit;
mod functional;
mod gpu;
mod graph;
mod io;

pub use budget::host_memory_available;
pub(crate) use functional::apply as apply_layer;
pub use functional::{SymbolicTensor, input};
pub use gpu::DispatchTime;
pub use graph::Graph;
pub use io::{FileKind, file_kind};

use crate::callbacks::Callback;
use crate::data::augment::RandomTranslation;
use crate::distributed::Ranks;
use crate::gpu::Gpu;
use crate::layers::{self, ActivationFn, Layer, Node, Op};
use crate::ops::loss::{ElementLoss, ElementMetric};
use crate::ops::optimizer::LearningRate;
use crate::ops::optimizer::Optimizer;
use anyhow::{Context, Result, bail, ensure};
use cpu::CpuEngine;
use gpu::{GpuGraph, GpuParams};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a model runs.
#[derive(Clone, Debug)]
pub enum Device {
    /// On this GPU (see [`Device::gpu`]).
    Gpu(Arc<Gpu>),
    /// The plain-Rust reference path (slow; for validation and baselines).
    Cpu,
}

impl Device {
    /// The process-wide GPU device.
    pub fn gpu() -> Result<Device> {
        Ok(Device::Gpu(Gpu::shared()?))
    }
}

/// Losses, Keras 3's names, formulas and reduction (the mean over every element and the
/// batch). `SparseCategoricalCrossentropy` takes class indices and a 1-D output (softmax,
/// or a linear last layer whose outputs are taken as logits, `from_logits=True`); the
/// others take value targets of the output's shape, any shape.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Keras' `SparseCategoricalCrossentropy()`, on class-index targets.
    SparseCategoricalCrossentropy,
    /// Keras' `MeanSquaredError()`: `mean((y − t)²)`.
    MeanSquaredError,
    /// Keras' `MeanAbsoluteError()`: `mean(|y − t|)`.
    MeanAbsoluteError,
    /// Keras' `Huber(delta=1.0)`.
    Huber {
        /// Where the loss turns from quadratic to linear (Keras' default 1.0).
        delta: f32,
    },
    /// Keras' `BinaryCrossentropy(from_logits=False, label_smoothing=0.0)`: outputs are
    /// probabilities (a sigmoid last layer), or logits with `from_logits`.
    BinaryCrossentropy {
        /// The outputs are logits, not probabilities (Keras' default false).
        from_logits: bool,
        /// Targets become `t·(1 − s) + s/2` (Keras' default 0).
        label_smoothing: f32,
    },
    /// Keras' `CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)`: targets
    /// are class distributions (one-hot or soft) along the output's last axis; the last
    /// layer is a softmax, or linear with `from_logits`.
    CategoricalCrossentropy {
        /// The outputs are logits, not softmax probabilities (Keras' default false).
        from_logits: bool,
        /// Targets become `t·(1 − s) + s/C` over C classes (Keras' default 0).
        label_smoothing: f32,
    },
}

impl Loss {
    /// Keras' `Huber()`: delta 1.
    pub fn huber() -> Loss {
        Loss::Huber { delta: 1.0 }
    }
    /// Keras' `CategoricalCrossentropy()`: on a softmax output, no label smoothing.
    pub fn categorical_crossentropy() -> Loss {
        Loss::CategoricalCrossentropy {
            from_logits: false,
            label_smoothing: 0.0,
        }
    }
    /// Keras' `BinaryCrossentropy()`: on probabilities, no label smoothing.
    pub fn binary_crossentropy() -> Loss {
        Loss::BinaryCrossentropy {
            from_logits: false,
            label_smoothing: 0.0,
        }
    }
}

/// Metrics reported by fit/evaluate (one per model). `Accuracy` is Keras' "accuracy":
/// the class accuracy for class labels, the binary accuracy (threshold 0.5; 0 on
/// logits) with binary cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Metric {
    /// Keras' "accuracy": class accuracy, or binary accuracy with binary cross-entropy.
    Accuracy,
    /// Keras' `BinaryAccuracy()` (threshold 0.5; 0 on logits), with binary cross-entropy.
    BinaryAccuracy,
    /// Keras' `MeanAbsoluteError()` ("mae"), with a loss on values.
    MeanAbsoluteError,
    /// Keras' `MeanSquaredError()` ("mse"), with a loss on values.
    MeanSquaredError,
    /// Keras' `SparseTopKCategoricalAccuracy(k=5)`: the label among the k most probable
    /// classes (with class labels).
    SparseTopKCategoricalAccuracy {
        /// How many of the most probable classes count (at least 1; Keras' default 5).
        k: usize,
    },
    /// Keras' `MeanIoU(num_classes)` with class labels (a segmentation's, per pixel) and the
    /// argmax of the probabilities: TP / (TP + FP + FN) per class over the whole epoch's
    /// confusion matrix, averaged over the classes present. `num_classes` must be the
    /// model's.
    MeanIoU {
        /// The number of classes: the model's.
        num_classes: usize,
    },
}

/// What `fit`, `evaluate` and `train_on_batch` compare the outputs with: class indices
/// (`&[u32]`, one per sample, or one per position of a per-pixel classifier) or values of
/// the output's shape (`&[f32]`, `output size` per sample, row-major). Both convert with
/// `.into()`, so `fit(&x, &y, ..)` takes either.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a> {
    /// Class indices: one per sample, or one per position of a per-pixel classifier.
    Classes(&'a [u32]),
    /// Values of the output's shape: `output size` per sample, row-major.
    Values(&'a [f32]),
}

impl<'a> From<&'a [u32]> for Targets<'a> {
    fn from(y: &'a [u32]) -> Targets<'a> {
        Targets::Classes(y)
    }
}
impl<'a> From<&'a Vec<u32>> for Targets<'a> {
    fn from(y: &'a Vec<u32>) -> Targets<'a> {
        Targets::Classes(y)
    }
}
impl<'a, const N: usize> From<&'a [u32; N]> for Targets<'a> {
    fn from(y: &'a [u32; N]) -> Targets<'a> {
        Targets::Classes(y)
    }
}
impl<'a> From<&'a [f32]> for Targets<'a> {
    fn from(y: &'a [f32]) -> Targets<'a> {
        Targets::Values(y)
    }
}
impl<'a> From<&'a Vec<f32>> for Targets<'a> {
    fn from(y: &'a Vec<f32>) -> Targets<'a> {
        Targets::Values(y)
    }
}

impl<'a> Targets<'a> {
    /// The targets of samples `range` (`per` values per sample for value targets).
    pub(crate) fn slice(&self, range: std::ops::Range<usize>, per: usize) -> Targets<'a> {
        let r = range.start * per..range.end * per;
        match *self {
            Targets::Classes(y) => Targets::Classes(&y[r]),
            Targets::Values(v) => Targets::Values(&v[r]),
        }
    }
}

/// What the compiled loss compares the output with: class indices (sparse categorical
/// cross-entropy and accuracy, the softmax fused in), or values through an element-wise
/// loss and metric.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Objective {
    /// Class indices; a prediction counts as correct when its label is the argmax
    /// (`top_k` 0: accuracy), or when fewer than `top_k` classes are more probable; with
    /// `iou` the metric is instead Keras' MeanIoU over the confusion matrix of the whole
    /// epoch (or evaluation).
    Classes {
        /// 0: the label must be the argmax; k ≥ 1: fewer than k classes may be more
        /// probable than the label.
        top_k: usize,
        #[serde(default)]
        /// Report MeanIoU instead of the (top-k) accuracy.
        iou: bool,
    },
    /// Value targets, through an element-wise loss and metric.
    Values {
        /// The element-wise loss.
        loss: ElementLoss,
        /// The metric computed beside it.
        metric: ElementMetric,
    },
    /// Class distributions (one-hot or soft) per position, through the fused softmax
    /// categorical cross-entropy and categorical accuracy.
    Distributions {
        /// The outputs are logits, not softmax probabilities.
        from_logits: bool,
        /// Targets become `t·(1 − s) + s/C` over C classes.
        label_smoothing: f32,
    },
}

impl Default for Objective {
    fn default() -> Objective {
        Objective::Classes {
            top_k: 0,
            iou: false,
        }
    }
}

impl Objective {
    /// The objective of `loss` reporting `metrics` (at most one), or why not.
    fn of(loss: Loss, metrics: &[Metric]) -> Result<Objective> {
        ensure!(
            metrics.len() <= 1,
            "one metric per model is supported, got {metrics:?}"
        );
        let element = match loss {
            Loss::SparseCategoricalCrossentropy => {
                let (top_k, iou) = match metrics {
                    [] | [Metric::Accuracy] => (0, false),
                    [Metric::SparseTopKCategoricalAccuracy { k }] => {
                        ensure!(*k >= 1, "top-k accuracy needs k ≥ 1");
                        (*k, false)
                    }
                    [Metric::MeanIoU { .. }] => (0, true),
                    _ => bail!(
                        "sparse categorical cross-entropy reports accuracy, top-k accuracy or MeanIoU, not {metrics:?}"
                    ),
                };
                return Ok(Objective::Classes { top_k, iou });
            }
            Loss::CategoricalCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                ensure!(
                    matches!(metrics, [] | [Metric::Accuracy]),
                    "categorical cross-entropy reports accuracy, not {metrics:?}"
                );
                ensure!(
                    (0.0..=1.0).contains(&label_smoothing),
                    "CategoricalCrossentropy: label_smoothing {label_smoothing} must be in [0, 1]"
                );
                return Ok(Objective::Distributions {
                    from_logits,
                    label_smoothing,
                });
            }
            Loss::MeanSquaredError => ElementLoss::MeanSquaredError,
            Loss::MeanAbsoluteError => ElementLoss::MeanAbsoluteError,
            Loss::Huber { delta } => ElementLoss::Huber { delta },
            Loss::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            } => ElementLoss::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            },
        };
        let binary = matches!(loss, Loss::BinaryCrossentropy { .. });
        let threshold = match loss {
            Loss::BinaryCrossentropy {
                from_logits: true, ..
            } => 0.0,
            _ => 0.5,
        };
        let metric = match metrics.first() {
            Some(Metric::Accuracy | Metric::BinaryAccuracy) if binary => {
                ElementMetric::BinaryAccuracy { threshold }
            }
            Some(Metric::Accuracy | Metric::BinaryAccuracy) => {
                bail!("accuracy needs class labels or binary cross-entropy; use MeanAbsoluteError")
            }
            Some(Metric::SparseTopKCategoricalAccuracy { .. } | Metric::MeanIoU { .. }) => {
                bail!(
                    "top-k accuracy and MeanIoU need class labels (sparse categorical cross-entropy)"
                )
            }
            Some(Metric::MeanSquaredError) => ElementMetric::MeanSquaredError,
            Some(Metric::MeanAbsoluteError) => ElementMetric::MeanAbsoluteError,
            None if binary => ElementMetric::BinaryAccuracy { threshold },
            None => ElementMetric::MeanAbsoluteError,
        };
        Ok(Objective::Values {
            loss: element,
            metric,
        })
    }

    /// Keras' name of the reported metric.
    pub fn metric_name(&self) -> &'static str {
        match self {
            Objective::Classes { iou: true, .. } => "mean_io_u",
            Objective::Classes { top_k: 0, .. } | Objective::Distributions { .. } => "accuracy",
            Objective::Classes { .. } => "sparse_top_k_categorical_accuracy",
            Objective::Values { metric, .. } => match metric {
                ElementMetric::BinaryAccuracy { .. } => "binary_accuracy",
                ElementMetric::MeanAbsoluteError => "mae",
                ElementMetric::MeanSquaredError => "mse",
            },
        }
    }
}

/// Options of [`Model::fit`], Keras names and defaults (batch 32, shuffle on).
#[derive(Clone, Debug)]
pub struct FitConfig<'a> {
    /// Train up to this epoch (counting from 0; with `initial_epoch`, `epochs −
    /// initial_epoch` epochs run, as in Keras).
    pub epochs: usize,
    /// Samples per training step (Keras' `batch_size`, default 32).
    pub batch_size: usize,
    /// Inputs and class labels to evaluate after every epoch.
    pub validation_data: Option<(&'a [f32], &'a [u32])>,
    /// Inputs and value targets to evaluate after every epoch, for a loss on values (in
    /// place of `validation_data`).
    pub validation_values: Option<(&'a [f32], &'a [f32])>,
    /// A data set read sample by sample to evaluate after every epoch (in place of
    /// `validation_data`; see [`Model::fit_source`]).
    pub validation_source: Option<&'a dyn crate::data::Source>,
    /// Hold out the last fraction of (x, y), before shuffling, as validation data (Keras'
    /// `validation_split`); 0 for none. Ignored when `validation_data` is given.
    pub validation_split: f32,
    /// Shuffle the training samples every epoch, from the model's seed (Keras' `shuffle`,
    /// default true).
    pub shuffle: bool,
    /// The epoch to start at (Keras' `initial_epoch`): a resumed run draws the shuffles
    /// and augmentations of these epochs, as the uninterrupted run did.
    pub initial_epoch: usize,
    /// Mirror each training image left-right with probability 1/2, drawn afresh every epoch
    /// from the model's seed (Keras' `RandomFlip("horizontal")` in front of the model, or
    /// `ImageDataGenerator(horizontal_flip=True)`). Needs (height, width, channels) inputs.
    /// Validation data is never augmented. Targets that are images the size of the input
    /// (masks, clean images) are flipped with it.
    pub horizontal_flip: bool,
    /// Move each training image by a random whole number of pixels (Keras'
    /// `RandomTranslation`), drawn from the model's seed; image targets of the input's
    /// size move with it.
    pub translation: Option<RandomTranslation>,
    /// Keras callbacks, run at the end of every epoch.
    pub callbacks: Vec<Callback>,
    /// Show a progress bar.
    pub verbose: bool,
    /// Threads that read and decode a data source's batches while the GPU trains
    /// (PyTorch's `num_workers`; 0 reads in the training thread). Results do not depend on it.
    pub workers: usize,
    /// Batches each worker reads ahead (PyTorch's `prefetch_factor`).
    pub prefetch_factor: usize,
}

impl Default for FitConfig<'_> {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            validation_data: None,
            validation_values: None,
            validation_source: None,
            validation_split: 0.0,
            shuffle: true,
            initial_epoch: 0,
            horizontal_flip: false,
            translation: None,
            callbacks: Vec::new(),
            verbose: true,
            workers: 1,
            prefetch_factor: 2,
        }
    }
}

/// Per-epoch results of [`Model::fit`], and what its callbacks did. A model also
/// keeps the per-epoch columns of every epoch it has trained
/// ([`Model::training_history`]), and its model files carry them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct History {
    /// The epochs that ran (0-based; from `initial_epoch`).
    pub epoch: Vec<usize>,
    /// The mean training loss per epoch.
    pub loss: Vec<f32>,
    /// The compiled metric per epoch (accuracy for class labels; see `metric`).
    pub accuracy: Vec<f32>,
    /// The validation loss per epoch (empty without validation data).
    pub val_loss: Vec<f32>,
    /// The compiled metric on the validation data per epoch (empty without it).
    pub val_accuracy: Vec<f32>,
    /// Keras' name of the metric in `accuracy` (empty: "accuracy").
    pub metric: String,
    /// The learning rate at the end of each epoch (a schedule's, or ReduceLROnPlateau's).
    pub learning_rate: Vec<f32>,
    /// Wall time of each epoch's training (validation excluded).
    pub epoch_seconds: Vec<f64>,
    /// The epoch at which EarlyStopping stopped training.
    pub stopped_epoch: Option<usize>,
    /// EarlyStopping's best epoch (whose weights `restore_best_weights` restores).
    pub best_epoch: Option<usize>,
    /// The files ModelCheckpoint wrote, with their epochs.
    pub checkpoints: Vec<(usize, PathBuf)>,
}

impl History {
    /// Appends the last epoch of `h` (its per-epoch columns).
    fn push_last_of(&mut self, h: &History) {
        fn last<T: Copy>(to: &mut Vec<T>, from: &[T]) {
            to.extend(from.last());
        }
        self.metric.clone_from(&h.metric);
        last(&mut self.epoch, &h.epoch);
        last(&mut self.loss, &h.loss);
        last(&mut self.accuracy, &h.accuracy);
        last(&mut self.val_loss, &h.val_loss);
        last(&mut self.val_accuracy, &h.val_accuracy);
        last(&mut self.learning_rate, &h.learning_rate);
        last(&mut self.epoch_seconds, &h.epoch_seconds);
    }

    /// One CSV row per epoch: `epoch,loss,accuracy,val_loss,val_accuracy,seconds`, epochs
    /// counted from 1 as the epoch lines print them (empty cells where validation did not
    /// run).
    pub fn to_csv(&self) -> String {
        use std::fmt::Write;
        let m = self.metric_name();
        let mut s = format!("epoch,loss,{m},val_loss,val_{m},seconds\n");
        let cell = |v: Option<&f32>| v.map_or(String::new(), |v| v.to_string());
        for e in 0..self.loss.len() {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                self.epoch.get(e).copied().unwrap_or(e) + 1,
                self.loss[e],
                cell(self.accuracy.get(e)),
                cell(self.val_loss.get(e)),
                cell(self.val_accuracy.get(e)),
                self.epoch_seconds
                    .get(e)
                    .map_or(String::new(), |v| format!("{v:.3}"))
            );
        }
        s
    }

    /// Keras' line for entry `e`: "Epoch 3/10 - 41.2s - loss: … - accuracy: …", with
    /// " - val_loss: … - val_accuracy: …" when validation ran.
    pub fn epoch_line(&self, e: usize, epochs: usize) -> String {
        let m = self.metric_name();
        let mut line = format!(
            "Epoch {}/{epochs} - {:.1}s - loss: {:.4} - {m}: {:.4}",
            self.epoch.get(e).copied().unwrap_or(e) + 1,
            self.epoch_seconds.get(e).copied().unwrap_or(f64::NAN),
            self.loss.get(e).copied().unwrap_or(f32::NAN),
            self.accuracy.get(e).copied().unwrap_or(f32::NAN),
        );
        if let (Some(vl), Some(va)) = (self.val_loss.get(e), self.val_accuracy.get(e)) {
            line.push_str(&format!(" - val_loss: {vl:.4} - val_{m}: {va:.4}"));
        }
        line
    }

    /// Keras' name of the reported metric ("accuracy", "binary_accuracy", "mae", "mse").
    pub fn metric_name(&self) -> &str {
        if self.metric.is_empty() {
            "accuracy"
        } else {
            &self.metric
        }
    }
}

/// A named tensor on the host: a layer's weights (`conv2d/kernel`) or outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// The tensor's name: `layer/weight` for a weight, the layer's name for its outputs.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub values: Vec<f32>,
}

pub use crate::data::augment::mirror_horizontal;

/// The GPU memory of a training step at one batch size ([`Model::step_memory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepMemory {
    /// Weights, their gradients and the optimizer state (independent of the batch).
    pub parameters: u64,
    /// Every layer's output, and what the backward pass keeps beside them
    /// (pre-activations, max-pooling argmax, partial results of merges).
    pub activations: u64,
    /// The gradient buffers as planned: reused once their last reader has run.
    pub gradients: u64,
    /// What one gradient buffer per tensor would take.
    pub gradients_one_per_tensor: u64,
}

impl StepMemory {
    /// Everything, as planned.
    pub fn total(&self) -> u64 {
        self.parameters + self.activations + self.gradients
    }
    /// Everything, with one gradient buffer per tensor.
    pub fn total_one_per_tensor(&self) -> u64 {
        self.parameters + self.activations + self.gradients_one_per_tensor
    }
}

/// What the loss sees at the end of the model.
pub(crate) struct LossHead {
    /// The output node.
    pub output: usize,
    /// Classes (class labels) or output elements per sample (value targets).
    pub classes: usize,
    /// Class labels per sample: the output's positions (1 for a 1-D output; H·W for a
    /// per-pixel classifier of shape (H, W, classes)); 1 for value targets.
    pub positions: usize,
    /// The last activation is softmax (fused with the loss); otherwise outputs are logits.
    pub softmax: bool,
    pub objective: Objective,
}

pub(crate) fn plan_head(graph: &Graph) -> Result<LossHead> {
    graph.validate()?;
    let output = graph.output()?;
    let last = &graph.nodes[output];
    if let Objective::Values { .. } = graph.objective {
        ensure!(
            last.op != Op::Input && last.activation != ActivationFn::Softmax,
            "the last layer '{}': an element-wise loss needs an element-wise output activation, not softmax",
            last.name
        );
        return Ok(LossHead {
            output,
            classes: last.out_shape.iter().product(),
            positions: 1,
            softmax: false,
            objective: graph.objective,
        });
    }
    // Classes along the last axis; any axes before it are positions with a label each
    // (segmentation: a label per pixel).
    let Some((&classes, lead)) = last.out_shape.split_last() else {
        bail!("the last layer '{}' has no output", last.name);
    };
    let positions: usize = lead.iter().product();
    if let Objective::Distributions { from_logits, .. } = graph.objective {
        let softmax = last.activation == ActivationFn::Softmax;
        ensure!(
            last.op != Op::Input
                && last.act == crate::ops::activation::Act::Linear
                && softmax != from_logits
                && matches!(
                    last.activation,
                    ActivationFn::Softmax | ActivationFn::Linear
                ),
            "the last layer '{}' uses {:?}: categorical cross-entropy needs a softmax output, or a linear one with from_logits",
            last.name,
            last.activation
        );
        return Ok(LossHead {
            output,
            classes,
            positions,
            softmax,
            objective: graph.objective,
        });
    }
    ensure!(
        last.op != Op::Input
            && matches!(
                last.activation,
                ActivationFn::Softmax | ActivationFn::Linear
            )
            && last.act == crate::ops::activation::Act::Linear,
        "the last layer '{}' uses {:?}; the cross-entropy loss needs softmax (or linear logits)",
        last.name,
        last.activation
    );
    Ok(LossHead {
        output,
        classes,
        positions,
        softmax: last.activation == ActivationFn::Softmax,
        objective: graph.objective,
    })
}

struct GpuEngine {
    params: GpuParams,
    graphs: HashMap<usize, GpuGraph>,
}

impl GpuEngine {
    /// The recorded step for `batch`, built on first use (with the training passes if
    /// asked).
    fn graph(
        &mut self,
        graph: &Graph,
        batch: usize,
        training: bool,
    ) -> Result<(&GpuGraph, &GpuParams)> {
        let rebuild = match self.graphs.get(&batch) {
            None => true,
            Some(g) => training && !g.has_train(),
        };
        if rebuild {
            let g = GpuGraph::new(&self.params, graph, batch, training).with_context(|| {
                format!(
                    "allocating the activations of batch size {batch} (a smaller batch needs less)"
                )
            })?;
            self.graphs.insert(batch, g);
        }
        Ok((&self.graphs[&batch], &self.params))
    }
}

enum Engine {
    Gpu(Box<GpuEngine>),
    Cpu(CpuEngine),
}

impl Engine {
    /// Every parameter, per node.
    fn weights(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        match self {
            Engine::Gpu(e) => e.params.read(),
            Engine::Cpu(e) => Ok(e.params.clone()),
        }
    }
}

struct Compiled {
    optimizer: Optimizer,
    /// The loss and metrics `compile` was given (model files record them).
    loss: Loss,
    metrics: Vec<Metric>,
    engine: Engine,
    /// Optimizer steps taken (Keras' `optimizer.iterations`).
    step: u64,
    /// Epochs trained (where a resumed `fit` starts).
    epochs_done: usize,
}

impl Compiled {
    fn of(c: &mut Option<Compiled>) -> Result<&mut Compiled> {
        c.as_mut()
            .context("compile the model before training or inference")
    }
}

/// A model: a graph of layers from one input to one output, with its weights once
/// compiled. Built by applying layers to symbolic tensors ([`Model::new`]), or layer by
/// layer as a [`Sequential`]; both train, evaluate, predict, save and load alike.
pub struct Model {
    name: String,
    /// Built with the functional API (its summary has Keras' "Connected to" column).
    functional: bool,
    graph: Graph,
    device: Option<Device>,
    seed: u64,
    compiled: Option<Compiled>,
    /// Weights of the layers a dropped compilation had (per node), which the next
    /// `compile` keeps, as Keras keeps a model's weights; or why they could not be read.
    kept: std::result::Result<Vec<Vec<Vec<f32>>>, String>,
    /// Every epoch this model has trained, across `fit` calls and model files.
    history: History,
    /// Free-form facts saved with the model (the CLI records its experiment and dataset).
    metadata: BTreeMap<String, String>,
    /// The ranks it trains with (data-parallel over MPI), one by default.
    ranks: Ranks,
}

impl Model {
    /// A model over `graph` (already resolved), named `name`.
    pub(crate) fn from_graph(name: &str, functional: bool, graph: Graph) -> Model {
        Model {
            name: name.into(),
            functional,
            graph,
            device: None,
            seed: 0,
            compiled: None,
            kept: Ok(Vec::new()),
            history: History::default(),
            metadata: BTreeMap::new(),
            ranks: Ranks::single(),
        }
    }

    /// Runs on `device` (default: the shared GPU). Call before `compile`.
    pub fn set_device(&mut self, device: Device) -> &mut Self {
        self.device = Some(device);
        self.uncompile();
        self
    }

    /// Trains data-parallel over the ranks of `dist` (see [`crate::distributed`]): `fit`'s
    /// batch size is the global batch, split evenly over the ranks; `evaluate` shards its
    /// data and sums over the ranks; `predict` stays local. One rank changes nothing.
    pub fn set_distributed(&mut self, dist: &crate::distributed::Distributed) -> &mut Self {
        self.ranks = dist.ranks();
        self
    }

    /// Trains data-parallel over `ranks` (what [`Model::set_distributed`] does with a
    /// [`crate::distributed::Distributed`]'s).
    pub fn set_ranks(&mut self, ranks: Ranks) -> &mut Self {
        self.ranks = ranks;
        self
    }

    /// The ranks this model trains with ([`Ranks::single`] unless
    /// [`Model::set_distributed`] was called).
    pub fn ranks(&self) -> Ranks {
        self.ranks
    }

    /// The seed of weight initialisation, shuffling and dropout. Call before `compile`.
    pub fn set_seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// The resolved layers, without the input (Keras' `model.layers` of a Sequential).
    pub fn nodes(&self) -> &[Node] {
        let inputs = self
            .graph
            .nodes
            .iter()
            .take_while(|n| n.op == Op::Input)
            .count();
        &self.graph.nodes[inputs..]
    }

    /// The whole layer graph, inputs included.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.graph.input_shape()
    }

    /// The compiled metric's Keras name ("accuracy", "binary_accuracy", "mae", …), as the
    /// epoch lines and [`History::metric`] show it.
    pub fn metric_name(&self) -> &'static str {
        self.graph.objective.metric_name()
    }

    /// Per-sample output shape (`[classes]` for a classifier, `[h, w, c]` for an image or
    /// a mask).
    pub fn output_shape(&self) -> Result<&[usize]> {
        Ok(&self.graph.nodes[self.graph.output()?].out_shape)
    }

    /// Number of output classes.
    pub fn classes(&self) -> Result<usize> {
        Ok(plan_head(&self.graph)?.classes)
    }

    /// Targets per sample: class labels (one per output position: 1, or H·W for a
    /// per-pixel classifier) or values (the output's size).
    pub(crate) fn targets_per_sample(&self) -> Result<usize> {
        let head = plan_head(&self.graph)?;
        Ok(match head.objective {
            Objective::Classes { .. } => head.positions,
            Objective::Values { .. } => head.classes,
            Objective::Distributions { .. } => head.positions * head.classes,
        })
    }

    /// The targets of one sample as an image (height, width, values or labels per pixel)
    /// when the output is an image the size of the input: flips and shifts then move them
    /// with the input (a segmentation's mask, a denoiser's clean image).
    pub(crate) fn target_image(&self) -> Result<Option<[usize; 3]>> {
        let input = self.input_shape().context("no input shape")?;
        let (output, per) = (self.output_shape()?, self.targets_per_sample()?);
        Ok(match (input, output) {
            ([h, w, _], [oh, ow, _]) if (h, w) == (oh, ow) && per % (h * w).max(1) == 0 => {
                Some([*h, *w, per / (h * w).max(1)])
            }
            _ => None,
        })
    }

    /// Rows of the loss totals per sample: the loss and metric sums count one per class
    /// label (per position), or one per sample for value targets (their means).
    pub(crate) fn loss_rows_per_sample(&self) -> Result<usize> {
        let head = plan_head(&self.graph)?;
        Ok(match head.objective {
            Objective::Classes { .. } | Objective::Distributions { .. } => head.positions,
            Objective::Values { .. } => 1,
        })
    }

    /// Output values per sample (what `predict` returns for each).
    pub(crate) fn output_size(&self) -> Result<usize> {
        let head = plan_head(&self.graph)?;
        Ok(head.classes * head.positions)
    }

    /// Every parameter, trainable or not (Keras' `count_params()`).
    pub fn count_params(&self) -> usize {
        self.graph.nodes.iter().map(Node::param_count).sum()
    }

    /// Trainable parameters only.
    pub fn count_trainable_params(&self) -> usize {
        self.graph.nodes.iter().map(Node::trainable_count).sum()
    }

    /// Keras' `model.summary()` table.
    pub fn summary(&self) -> String {
        if self.functional {
            layers::functional_summary(&self.name, &self.graph.nodes)
        } else {
            layers::summary(&self.name, self.nodes())
        }
    }

    /// Initialises the weights (Glorot-uniform kernels from the seed, zero biases and
    /// betas, unit gammas; moving means 0 and variances 1) and allocates everything on
    /// the device. Every tensor is checked against the device's limits and the host's
    /// memory first, so an oversized layer is an error naming it, not an abort.
    ///
    /// Compiling again keeps the weights, as in Keras (the fine-tuning pattern: train,
    /// then `compile` with a lower learning rate and train on); the new optimizer starts
    /// afresh (zero state, step 0), as a new Keras optimizer does. Layers added since the
    /// last compile get initial weights.
    pub fn compile(
        &mut self,
        optimizer: Optimizer,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<&mut Self> {
        let objective = Objective::of(loss, metrics)?;
        let before = self.graph.objective;
        self.graph.objective = objective;
        let head = plan_head(&self.graph).and_then(|head| {
            for m in metrics {
                if let Metric::MeanIoU { num_classes } = m {
                    ensure!(
                        *num_classes == head.classes,
                        "MeanIoU(num_classes={num_classes}) for a model of {} classes",
                        head.classes
                    );
                }
            }
            Ok(head)
        });
        if let Err(e) = head {
            self.graph.objective = before;
            return Err(e);
        }
        optimizer.validate()?;
        let device = match &self.device {
            Some(d) => d.clone(),
            None => Device::gpu()?,
        };
        budget::check_params(&self.graph.nodes, &device, optimizer.slots())?;
        let epochs_done = self.compiled.as_ref().map_or(0, |c| c.epochs_done);
        self.uncompile();
        let kept = std::mem::replace(&mut self.kept, Ok(Vec::new()))
            .map_err(|e| anyhow::anyhow!("reading the weights back to keep them: {e}"))?;
        // Every node draws its initial values, kept or not, so that a layer's initial
        // weights depend only on the seed and the layers before it.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut kept = kept.into_iter();
        let values: Vec<Vec<Vec<f32>>> = self
            .graph
            .nodes
            .iter()
            .map(|n| {
                let fresh: Vec<Vec<f32>> = n
                    .params()
                    .iter()
                    .map(|p| p.init.draw(p.shape.iter().product(), p.fans(), &mut rng))
                    .collect();
                kept.next().unwrap_or(fresh)
            })
            .collect();
        let engine = match device {
            Device::Gpu(gpu) => Engine::Gpu(Box::new(GpuEngine {
                params: GpuParams::new(gpu, &self.graph.nodes, &values, &optimizer)?,
                graphs: HashMap::new(),
            })),
            Device::Cpu => Engine::Cpu(CpuEngine::new(&self.graph.nodes, values, &optimizer)),
        };
        self.compiled = Some(Compiled {
            optimizer,
            loss,
            metrics: metrics.to_vec(),
            engine,
            step: 0,
            epochs_done,
        });
        Ok(self)
    }

    fn compiled(&mut self) -> Result<&mut Compiled> {
        Compiled::of(&mut self.compiled)
    }

    /// Checks x/y against the model: sizes, label range, finite values; returns the sample
    /// count.
    fn check_data(&self, x: &[f32], y: Option<Targets>, what: &str) -> Result<usize> {
        let input = self
            .graph
            .input_shape()
            .context("the model has no input shape")?;
        let sample: usize = input.iter().product();
        ensure!(!x.is_empty(), "{what}: the dataset is empty");
        ensure!(
            x.len().is_multiple_of(sample),
            "{what}: {} input values are not a whole number of samples of shape {input:?} ({sample} values each)",
            x.len()
        );
        let n = x.len() / sample;
        let (classes, per) = match y {
            Some(_) => (self.classes()?, self.targets_per_sample()?),
            None => (0, 0),
        };
        match (y, self.graph.objective) {
            (None, _) => {}
            (Some(Targets::Classes(y)), Objective::Classes { .. }) => {
                if per == 1 {
                    ensure!(y.len() == n, "{what}: {n} samples but {} labels", y.len());
                }
                ensure!(
                    y.len() == n * per,
                    "{what}: {n} samples need {} labels ({per} each, one per output position), got {}",
                    n * per,
                    y.len()
                );
                if let Some((i, &l)) = y.iter().enumerate().find(|(_, l)| **l as usize >= classes) {
                    bail!("{what}: label {l} at index {i} is out of range for {classes} classes");
                }
            }
            (
                Some(Targets::Values(y)),
                Objective::Values { .. } | Objective::Distributions { .. },
            ) => {
                ensure!(
                    y.len() == n * per,
                    "{what}: {n} samples need {} target values ({per} each, the output's size), got {}",
                    n * per,
                    y.len()
                );
                if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                    bail!("{what}: target value {i} is {}", y[i]);
                }
            }
            (Some(Targets::Classes(_)), _) => bail!(
                "{what}: class labels given, but the model was compiled with a loss on values"
            ),
            (Some(Targets::Values(_)), _) => bail!(
                "{what}: value targets given, but the model was compiled with sparse categorical cross-entropy (class labels)"
            ),
        }
        Ok(n)
    }

    /// Freezes (`false`) or unfreezes a layer by name: Keras' `layer.trainable`. A frozen
    /// layer's parameters count as non-trainable, training leaves them unchanged (and
    /// adds no regularizer penalty for them), and a frozen BatchNormalization
    /// normalises with its moving statistics, which it no longer updates, in training
    /// too. As in Keras, the change takes effect at the next `compile` (the weights are
    /// kept): a compiled model is left uncompiled.
    pub fn set_trainable(&mut self, layer: &str, trainable: bool) -> Result<&mut Self> {
        let i = self
            .graph
            .nodes
            .iter()
            .position(|n| n.name == layer)
            .with_context(|| format!("the model has no layer '{layer}'"))?;
        ensure!(
            self.graph.nodes[i].op != Op::Input,
            "'{layer}' is an input: it has nothing to train"
        );
        if self.graph.nodes[i].trainable != trainable && self.compiled.is_some() {
            self.uncompile();
        }
        self.graph.nodes[i].trainable = trainable;
        Ok(self)
    }

    /// The learning rate when it is a constant (not a schedule).
    pub fn constant_learning_rate(&self) -> Option<f32> {
        match &self.compiled.as_ref()?.optimizer.learning_rate {
            LearningRate::Constant(lr) => Some(*lr),
            _ => None,
        }
    }

    /// Replaces the learning rate with a constant (what ReduceLROnPlateau does); the
    /// optimizer state is kept.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        let c = self.compiled()?;
        c.optimizer.learning_rate = LearningRate::Constant(lr);
        c.optimizer.validate()
    }

    /// Every epoch this model has trained, in order, across `fit` calls and the model
    /// files it was saved to and loaded from (their per-epoch columns; what a run's
    /// `history.csv` and training curves show).
    pub fn training_history(&self) -> &History {
        &self.history
    }

    /// Allocates the buffers of a training step at `batch_size` now rather than at the
    /// first step of `fit`, so that a model too large for the device fails before any
    /// work starts (the CLI calls it before it creates a run folder).
    pub fn plan(&mut self, batch_size: usize) -> Result<()> {
        ensure!(batch_size > 0, "batch_size must be positive");
        // Data-parallel, a rank's graph holds its shard of the global batch.
        let local = batch_size.div_ceil(self.ranks.size());
        let graph = &self.graph;
        if let Engine::Gpu(e) = &mut Compiled::of(&mut self.compiled)?.engine {
            e.graph(graph, local, true)?;
        }
        Ok(())
    }

    /// The GPU memory of a training step at `batch_size` (its buffers are allocated, as
    /// [`Model::plan`] does). None on the CPU path.
    pub fn step_memory(&mut self, batch_size: usize) -> Result<Option<StepMemory>> {
        self.plan(batch_size)?;
        let graph = &self.graph;
        Ok(match &mut Compiled::of(&mut self.compiled)?.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(graph, batch_size, true)?;
                let (activations, (gradients, gradients_one_per_tensor)) = g.bytes;
                Some(StepMemory {
                    parameters: p.bytes(),
                    activations,
                    gradients,
                    gradients_one_per_tensor,
                })
            }
            Engine::Cpu(_) => None,
        })
    }

    /// Whether a GPU step reuses gradient buffers by liveness (on by default; off only
    /// to measure the plan or check that it changes nothing). Recorded steps are rebuilt.
    pub fn set_gradient_reuse(&mut self, on: bool) -> Result<()> {
        if let Engine::Gpu(e) = &mut Compiled::of(&mut self.compiled)?.engine {
            e.params.reuse_gradients = on;
            e.graphs.clear();
        }
        Ok(())
    }

    /// The seed of weight initialisation, shuffling, augmentation and dropout.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The compiled optimizer (with any learning-rate change ReduceLROnPlateau made).
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    /// Epochs trained so far (where a resumed `fit` continues: its `initial_epoch`).
    pub fn epochs_trained(&self) -> usize {
        self.compiled.as_ref().map_or(0, |c| c.epochs_done)
    }

    /// A fact to save with the model (its dataset, say).
    pub fn set_metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// The facts saved with the model.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Optimizer steps taken since compile.
    pub fn steps_taken(&self) -> u64 {
        self.compiled.as_ref().map_or(0, |c| c.step)
    }

    /// Drops the compilation (the device, or the layers, change), keeping its weights for
    /// the next `compile`.
    fn uncompile(&mut self) {
        if let Some(c) = self.compiled.take() {
            self.kept = c.engine.weights().map_err(|e| format!("{e:#}"));
        }
    }
}

/// A linear stack of layers, as Keras' `Sequential`: a [`Model`] (everything a model does
/// works on it through `Deref`) whose graph is a chain, built with [`Sequential::add`].
///
/// ```
/// use wgcnn::prelude::*;
/// # fn main() -> anyhow::Result<()> {
/// let mut model = Sequential::new();
/// model.add(Flatten::new().input_shape(&[4, 4, 1]))?;
/// model.add(Dense::new(8).activation(Relu))?;
/// model.add(Dropout::new(0.2))?;
/// model.add(Dense::new(2).activation(Softmax))?;
/// assert_eq!(model.count_params(), 16 * 8 + 8 + 8 * 2 + 2);
/// assert!(model.summary().contains("Total params: 154"));
/// # Ok(()) }
/// ```
pub struct Sequential {
    model: Model,
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for Sequential {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl std::ops::DerefMut for Sequential {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

impl From<Sequential> for Model {
    fn from(s: Sequential) -> Model {
        s.model
    }
}

impl Sequential {
    /// An empty stack named "sequential" (Keras' `Sequential()`).
    pub fn new() -> Sequential {
        Sequential {
            model: Model::from_graph("sequential", false, Graph::default()),
        }
    }

    /// The model this stack is.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Adds a layer, inferring its output shape; a layer that does not fit its input is an
    /// error naming the layer and both shapes.
    pub fn add(&mut self, layer: impl Into<Layer>) -> Result<&mut Self> {
        let layer = layer.into();
        let mut graph = self.model.graph.clone();
        let has_input = !graph.nodes.is_empty();
        if let Layer::Input(_) = &layer {
            ensure!(
                !has_input,
                "Input declares the model's input shape: add it first, once"
            );
            graph.push(layer, Vec::new(), None)?;
        } else {
            match (layer.input_shape(), has_input) {
                (Some(s), false) => {
                    graph.push(layers::Input::new(s).into(), Vec::new(), None)?;
                }
                (Some(_), true) if graph.nodes.len() == 1 => {
                    bail!("the input shape is already declared (Input); drop input_shape here")
                }
                (Some(_), true) => bail!("input_shape may only be given on the first layer"),
                (None, false) => bail!(
                    "the first layer needs an input shape: add Input::new(&[28, 28, 1]) first, \
                     or give it as Conv2D::new(..).input_shape(&[28, 28, 1])"
                ),
                (None, true) => {}
            }
            let last = graph.nodes.len() - 1;
            let i = graph.push(layer, vec![last], None)?;
            graph.outputs = vec![i];
        }
        // Only a layer that fits changes the model.
        self.model.uncompile();
        self.model.graph = graph;
        Ok(self)
    }
}
