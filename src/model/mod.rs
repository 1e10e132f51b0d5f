//! `Sequential`: a Keras-style model trained on the GPU (or on the CPU reference path).
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

mod budget;
mod cpu;
mod graph;
mod io;

pub use budget::host_memory_available;

use crate::callbacks::{self, Callback};
use crate::data::augment::{Augment, RandomTranslation};
use crate::gpu::Gpu;
use crate::layers::{self, ActivationFn, Init, Layer, Node};
use crate::ops::optimizer::LearningRate;
use crate::ops::optimizer::Optimizer;
use anyhow::{Context, Result, bail, ensure};
use cpu::CpuEngine;
pub use graph::DispatchTime;
use graph::{GpuParams, Graph};
pub use io::{FileKind, file_kind};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a model runs.
#[derive(Clone, Debug)]
pub enum Device {
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

/// Losses (integer class labels, as Keras' `sparse_categorical_crossentropy`). With a
/// linear last layer the outputs are taken as logits (`from_logits=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    SparseCategoricalCrossentropy,
}

/// Metrics reported by fit/evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
}

/// Options of [`Sequential::fit`], Keras names and defaults (batch 32, shuffle on).
#[derive(Clone, Debug)]
pub struct FitConfig<'a> {
    /// Train up to this epoch (counting from 0; with `initial_epoch`, `epochs −
    /// initial_epoch` epochs run, as in Keras).
    pub epochs: usize,
    pub batch_size: usize,
    pub validation_data: Option<(&'a [f32], &'a [u32])>,
    /// Hold out the last fraction of (x, y), before shuffling, as validation data (Keras'
    /// `validation_split`); 0 for none. Ignored when `validation_data` is given.
    pub validation_split: f32,
    pub shuffle: bool,
    /// The epoch to start at (Keras' `initial_epoch`): a resumed run draws the shuffles
    /// and augmentations of these epochs, as the uninterrupted run did.
    pub initial_epoch: usize,
    /// Mirror each training image left-right with probability 1/2, drawn afresh every epoch
    /// from the model's seed (Keras' `RandomFlip("horizontal")` in front of the model, or
    /// `ImageDataGenerator(horizontal_flip=True)`). Needs (height, width, channels) inputs.
    /// Validation data is never augmented.
    pub horizontal_flip: bool,
    /// Move each training image by a random whole number of pixels (Keras'
    /// `RandomTranslation`), drawn from the model's seed.
    pub translation: Option<RandomTranslation>,
    /// Keras callbacks, run at the end of every epoch.
    pub callbacks: Vec<Callback>,
    /// Show a progress bar.
    pub verbose: bool,
}

impl Default for FitConfig<'_> {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            validation_data: None,
            validation_split: 0.0,
            shuffle: true,
            initial_epoch: 0,
            horizontal_flip: false,
            translation: None,
            callbacks: Vec::new(),
            verbose: true,
        }
    }
}

/// Per-epoch results of [`Sequential::fit`], and what its callbacks did. A model also
/// keeps the per-epoch columns of every epoch it has trained
/// ([`Sequential::training_history`]), and its model files carry them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct History {
    /// The epochs that ran (0-based; from `initial_epoch`).
    pub epoch: Vec<usize>,
    pub loss: Vec<f32>,
    pub accuracy: Vec<f32>,
    pub val_loss: Vec<f32>,
    pub val_accuracy: Vec<f32>,
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
        let mut s = String::from("epoch,loss,accuracy,val_loss,val_accuracy,seconds\n");
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
        let mut line = format!(
            "Epoch {}/{epochs} - {:.1}s - loss: {:.4} - accuracy: {:.4}",
            self.epoch.get(e).copied().unwrap_or(e) + 1,
            self.epoch_seconds.get(e).copied().unwrap_or(f64::NAN),
            self.loss.get(e).copied().unwrap_or(f32::NAN),
            self.accuracy.get(e).copied().unwrap_or(f32::NAN),
        );
        if let (Some(vl), Some(va)) = (self.val_loss.get(e), self.val_accuracy.get(e)) {
            line.push_str(&format!(" - val_loss: {vl:.4} - val_accuracy: {va:.4}"));
        }
        line
    }
}

/// A named tensor on the host: a layer's weights (`conv2d/kernel`) or outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

pub use crate::data::augment::mirror_horizontal;

/// Keras' `validation_split`: the training samples are the first ⌊n·(1 − split)⌋ (all of
/// them for 0), the rest the validation data; an empty side is an error.
fn validation_split_at(n: usize, split: f32) -> Result<usize> {
    if split == 0.0 {
        return Ok(n);
    }
    ensure!(
        split > 0.0 && split < 1.0,
        "validation_split {split} must be in [0, 1)"
    );
    let at = (n as f64 * (1.0 - f64::from(split))).floor() as usize;
    ensure!(
        at > 0 && at < n,
        "{n} samples are not enough to split into training and validation sets with validation_split={split}"
    );
    Ok(at)
}

/// What the loss sees at the end of the model.
pub(crate) struct LossHead {
    pub classes: usize,
    /// The last activation is softmax (fused with the loss); otherwise outputs are logits.
    pub softmax: bool,
}

pub(crate) fn plan_head(nodes: &[Node]) -> Result<LossHead> {
    let last = nodes.last().context("the model has no layers")?;
    for n in &nodes[..nodes.len() - 1] {
        ensure!(
            n.activation != ActivationFn::Softmax,
            "layer '{}': softmax is supported only as the last activation (it is fused with the loss)",
            n.name
        );
    }
    let [classes] = last.out_shape[..] else {
        bail!(
            "the last layer '{}' outputs {:?}; classification needs a 1-D output (add Flatten and Dense)",
            last.name,
            last.out_shape
        );
    };
    ensure!(
        matches!(
            last.activation,
            ActivationFn::Softmax | ActivationFn::Linear
        ),
        "the last layer '{}' uses {:?}; the cross-entropy loss needs softmax (or linear logits)",
        last.name,
        last.activation
    );
    Ok(LossHead {
        classes,
        softmax: last.activation == ActivationFn::Softmax,
    })
}

struct GpuEngine {
    params: GpuParams,
    graphs: HashMap<usize, Graph>,
}

impl GpuEngine {
    /// The graph for `batch`, built on first use (with the training passes if asked).
    fn graph(
        &mut self,
        nodes: &[Node],
        input: &[usize],
        batch: usize,
        training: bool,
    ) -> Result<(&Graph, &GpuParams)> {
        let rebuild = match self.graphs.get(&batch) {
            None => true,
            Some(_) if training => !self.graphs.get(&batch).is_some_and(|g| g.has_train()),
            Some(_) => false,
        };
        if rebuild {
            let g = Graph::new(&self.params, nodes, input, batch, training).with_context(|| {
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

/// A linear stack of layers, as Keras' `Sequential`.
pub struct Sequential {
    name: String,
    input_shape: Option<Vec<usize>>,
    /// The layers as added (what a model file records).
    layers: Vec<Layer>,
    nodes: Vec<Node>,
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
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential {
            name: "sequential".into(),
            input_shape: None,
            layers: Vec::new(),
            nodes: Vec::new(),
            device: None,
            seed: 0,
            compiled: None,
            kept: Ok(Vec::new()),
            history: History::default(),
            metadata: BTreeMap::new(),
        }
    }

    /// Drops the compilation (the device, or the layers, change), keeping its weights for
    /// the next `compile`.
    fn uncompile(&mut self) {
        if let Some(c) = self.compiled.take() {
            self.kept = c.engine.weights().map_err(|e| format!("{e:#}"));
        }
    }

    /// Runs on `device` (default: the shared GPU). Call before `compile`.
    pub fn set_device(&mut self, device: Device) -> &mut Self {
        self.device = Some(device);
        self.uncompile();
        self
    }

    /// The seed of weight initialisation, shuffling and dropout. Call before `compile`.
    pub fn set_seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Adds a layer, inferring its output shape; a layer that does not fit its input is an
    /// error naming the layer and both shapes.
    pub fn add(&mut self, layer: impl Into<Layer>) -> Result<&mut Self> {
        let layer = layer.into();
        if let Layer::Input(i) = &layer {
            ensure!(
                self.nodes.is_empty() && self.input_shape.is_none(),
                "Input declares the model's input shape: add it first, once"
            );
            ensure!(
                !i.shape.is_empty() && i.shape.iter().all(|&d| d > 0),
                "Input shape {:?} must be non-empty with positive sizes",
                i.shape
            );
            self.input_shape = Some(i.shape.clone());
            self.layers.push(layer);
            return Ok(self);
        }
        let input = match (&self.input_shape, layer.input_shape(), self.nodes.last()) {
            (None, Some(s), None) => {
                self.input_shape = Some(s.to_vec());
                s.to_vec()
            }
            (Some(_), Some(_), None) => {
                bail!("the input shape is already declared (Input); drop input_shape here")
            }
            (_, Some(_), Some(_)) => bail!("input_shape may only be given on the first layer"),
            (_, None, Some(last)) => last.out_shape.clone(),
            (Some(s), None, None) => s.clone(),
            (None, None, None) => bail!(
                "the first layer needs an input shape: add Input::new(&[28, 28, 1]) first, or \
                 give it as Conv2D::new(..).input_shape(&[28, 28, 1])"
            ),
        };
        let name = layers::auto_name(&layer, &self.nodes);
        let node = layers::resolve(&layer, &input, name)?;
        self.uncompile();
        self.nodes.push(node);
        self.layers.push(layer);
        Ok(self)
    }

    /// The resolved layers.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }

    /// Number of output classes.
    pub fn classes(&self) -> Result<usize> {
        Ok(plan_head(&self.nodes)?.classes)
    }

    /// Every parameter, trainable or not (Keras' `count_params()`).
    pub fn count_params(&self) -> usize {
        self.nodes.iter().map(Node::param_count).sum()
    }

    /// Trainable parameters only.
    pub fn count_trainable_params(&self) -> usize {
        self.nodes.iter().map(Node::trainable_count).sum()
    }

    /// Keras' `model.summary()` table.
    pub fn summary(&self) -> String {
        layers::summary(&self.name, &self.nodes)
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
        let _ = (loss, metrics); // one loss and one metric exist; the arguments mirror Keras
        plan_head(&self.nodes)?;
        optimizer.validate()?;
        let device = match &self.device {
            Some(d) => d.clone(),
            None => Device::gpu()?,
        };
        budget::check_params(&self.nodes, &device, optimizer.slots())?;
        let epochs_done = self.compiled.as_ref().map_or(0, |c| c.epochs_done);
        self.uncompile();
        let kept = std::mem::replace(&mut self.kept, Ok(Vec::new()))
            .map_err(|e| anyhow::anyhow!("reading the weights back to keep them: {e}"))?;
        // Every node draws its initial values, kept or not, so that a layer's initial
        // weights depend only on the seed and the layers before it.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut kept = kept.into_iter();
        let values: Vec<Vec<Vec<f32>>> = self
            .nodes
            .iter()
            .map(|n| {
                let (fan_in, fan_out) = n.fans();
                let fresh: Vec<Vec<f32>> = n
                    .params()
                    .iter()
                    .map(|p| {
                        let len: usize = p.shape.iter().product();
                        match p.init {
                            Init::GlorotUniform => {
                                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                                (0..len).map(|_| rng.random_range(-limit..limit)).collect()
                            }
                            Init::Zeros => vec![0.0; len],
                            Init::Ones => vec![1.0; len],
                        }
                    })
                    .collect();
                kept.next().unwrap_or(fresh)
            })
            .collect();
        let engine = match device {
            Device::Gpu(gpu) => Engine::Gpu(Box::new(GpuEngine {
                params: GpuParams::new(gpu, &self.nodes, &values, &optimizer)?,
                graphs: HashMap::new(),
            })),
            Device::Cpu => Engine::Cpu(CpuEngine::new(&self.nodes, values, &optimizer)),
        };
        self.compiled = Some(Compiled {
            optimizer,
            engine,
            step: 0,
            epochs_done,
        });
        Ok(self)
    }

    fn compiled(&mut self) -> Result<&mut Compiled> {
        Compiled::of(&mut self.compiled)
    }

    /// Checks x/y against the model: sizes, label range; returns the sample count.
    fn check_data(&self, x: &[f32], y: Option<&[u32]>, what: &str) -> Result<usize> {
        let input = self
            .input_shape
            .as_deref()
            .context("the model has no input shape")?;
        let sample: usize = input.iter().product();
        ensure!(!x.is_empty(), "{what}: the dataset is empty");
        ensure!(
            x.len().is_multiple_of(sample),
            "{what}: {} input values are not a whole number of samples of shape {input:?} ({sample} values each)",
            x.len()
        );
        let n = x.len() / sample;
        if let Some(y) = y {
            ensure!(y.len() == n, "{what}: {n} samples but {} labels", y.len());
            let classes = self.classes()?;
            if let Some((i, &l)) = y.iter().enumerate().find(|(_, l)| **l as usize >= classes) {
                bail!("{what}: label {l} at index {i} is out of range for {classes} classes");
            }
        }
        Ok(n)
    }

    /// Trains the model; see [`FitConfig`]. The epoch/step skeleton: each epoch draws its
    /// order and augmentation from the seed, runs its steps (one submission each, totals
    /// read only when the progress bar is due), validates, and hands its logs to the
    /// callbacks.
    pub fn fit(&mut self, x: &[f32], y: &[u32], cfg: &FitConfig) -> Result<History> {
        ensure!(cfg.batch_size > 0, "batch_size must be positive");
        let n_all = self.check_data(x, Some(y), "fit")?;
        let input = self.input_shape.clone().context("no input shape")?;
        let sample: usize = input.iter().product();
        let (n, validation) = match cfg.validation_data {
            Some((vx, vy)) => {
                self.check_data(vx, Some(vy), "validation_data")?;
                (n_all, Some((vx, vy)))
            }
            None => {
                let n = validation_split_at(n_all, cfg.validation_split)?;
                let held = (n < n_all).then(|| (&x[n * sample..], &y[n..]));
                (n, held)
            }
        };
        let (x, y) = (&x[..n * sample], &y[..n]);
        ensure!(
            cfg.initial_epoch <= cfg.epochs,
            "initial_epoch {} is past epochs {}",
            cfg.initial_epoch,
            cfg.epochs
        );
        let mut runner = callbacks::Runner::new(&cfg.callbacks, validation.is_some(), self)?;
        let batch = cfg.batch_size.min(n);
        let seed = self.seed;
        let mut history = History::default();
        // The order of epoch e is the shuffle of epoch e − 1's: replay the epochs before
        // initial_epoch so that a resumed run continues the same sequence.
        let mut order: Vec<usize> = (0..n).collect();
        let shuffle = |order: &mut Vec<usize>, epoch: usize| {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ))
        };
        if cfg.shuffle {
            (0..cfg.initial_epoch).for_each(|e| shuffle(&mut order, e));
        }
        for epoch in cfg.initial_epoch..cfg.epochs {
            if cfg.shuffle {
                shuffle(&mut order, epoch);
            }
            let augment =
                Augment::for_epoch(seed, epoch, &input, cfg.horizontal_flip, cfg.translation)?;
            let start = Instant::now();
            let bar = progress_bar(cfg.verbose, n.div_ceil(batch), epoch, cfg.epochs);
            let (loss, acc) = self.train_epoch(x, y, &order, augment, batch, epoch, &bar)?;
            history.epoch.push(epoch);
            history.loss.push(loss);
            history.accuracy.push(acc);
            history.epoch_seconds.push(start.elapsed().as_secs_f64());
            if let Some((vx, vy)) = validation {
                let (vl, va) = self.evaluate_batched(vx, vy, batch)?;
                history.val_loss.push(vl);
                history.val_accuracy.push(va);
                bar.set_message(format!(
                    "loss: {loss:.4} - accuracy: {acc:.4} - val_loss: {vl:.4} - val_accuracy: {va:.4}"
                ));
            }
            bar.finish();
            let c = self.compiled()?;
            c.epochs_done = epoch + 1;
            history
                .learning_rate
                .push(c.optimizer.learning_rate.at(c.step.saturating_sub(1)));
            if cfg.verbose && !std::io::stderr().is_terminal() {
                // No bar without a terminal (a log file): one line per epoch, like Keras'
                // verbose=2.
                eprintln!("{}", history.epoch_line(history.loss.len() - 1, cfg.epochs));
            }
            self.history.push_last_of(&history);
            if runner.on_epoch_end(self, epoch, &mut history)? {
                break;
            }
        }
        runner.on_train_end(self)?;
        Ok(history)
    }

    /// The steps of one epoch over `order`; returns its mean loss and accuracy.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &mut self,
        x: &[f32],
        y: &[u32],
        order: &[usize],
        mut augment: Option<Augment>,
        batch: usize,
        epoch: usize,
        bar: &indicatif::ProgressBar,
    ) -> Result<(f32, f32)> {
        let input = self.input_shape.clone().context("no input shape")?;
        let sample: usize = input.iter().product();
        let n = order.len();
        let steps = n.div_ceil(batch);
        let (mut xb, mut yb) = (vec![0f32; batch * sample], vec![0u32; batch]);
        let start = Instant::now();
        let verbose = !bar.is_hidden();
        let nodes = self.nodes.clone();
        if let Engine::Gpu(e) = &mut self.compiled()?.engine {
            let (g, p) = e.graph(&nodes, &input, batch, true)?;
            g.reset_totals(&p.gpu)?;
        }
        let mut cpu_totals = (0f64, 0f64);
        let mut last_read = Instant::now();
        let mut result = (f32::NAN, f32::NAN);
        for step in 0..steps {
            let idx = &order[step * batch..((step + 1) * batch).min(n)];
            for (j, &i) in idx.iter().enumerate() {
                let (src, dst) = (
                    &x[i * sample..(i + 1) * sample],
                    &mut xb[j * sample..(j + 1) * sample],
                );
                match augment.as_mut() {
                    Some(a) => a.apply(src, dst),
                    None => dst.copy_from_slice(src),
                }
                yb[j] = y[i];
            }
            let valid = idx.len();
            // Read the totals only when the bar is due (or every 64 steps, to catch a
            // diverging loss early) and at the epoch's end; never otherwise.
            let due = step + 1 == steps
                || step % 64 == 63
                || (verbose && last_read.elapsed() > Duration::from_millis(300));
            let totals = self.step(
                &xb[..valid * sample],
                &yb[..valid],
                batch,
                due,
                &mut cpu_totals,
            )?;
            if let Some((l, h)) = totals {
                last_read = Instant::now();
                let seen = step * batch + valid;
                let (loss, acc) = (l / seen as f64, h / seen as f64);
                if !loss.is_finite() {
                    bail!(
                        "the loss became {loss} in epoch {} at or before step {} of {steps}; lower the learning rate or check the data",
                        epoch + 1,
                        step + 1
                    );
                }
                let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss: {loss:.4} - accuracy: {acc:.4} - {rate:.0} img/s"
                ));
                result = (loss as f32, acc as f32);
            }
            bar.set_position(step as u64 + 1);
        }
        Ok(result)
    }

    /// One training step on `valid` samples in a graph of `batch` rows; returns the totals
    /// (loss sum, correct count) since the epoch's reset when `read` asks for them.
    fn step(
        &mut self,
        xb: &[f32],
        yb: &[u32],
        batch: usize,
        read: bool,
        cpu_totals: &mut (f64, f64),
    ) -> Result<Option<(f64, f64)>> {
        // Borrowed field by field: a step clones nothing.
        let Sequential {
            input_shape,
            nodes,
            seed,
            compiled,
            ..
        } = self;
        let input = input_shape.as_deref().context("no input shape")?;
        let c = Compiled::of(compiled)?;
        let (seed, valid) = (*seed, yb.len());
        c.step += 1;
        let opt = &c.optimizer;
        match &mut c.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(nodes, input, batch, true)?;
                g.load(&p.gpu, xb, Some(yb), valid)?;
                g.train_step(p, opt, c.step, seed)?;
                if read {
                    Ok(Some(g.read_totals(&p.gpu)?))
                } else {
                    Ok(None)
                }
            }
            Engine::Cpu(e) => {
                let (l, h) = e.train_step(nodes, xb, yb, valid, opt, c.step, seed)?;
                *cpu_totals = (cpu_totals.0 + l, cpu_totals.1 + h as f64);
                Ok(Some(*cpu_totals))
            }
        }
    }

    /// Keras' `train_on_batch`: one training step on (x, y) as one batch; returns its
    /// loss and accuracy (one read-back).
    pub fn train_on_batch(&mut self, x: &[f32], y: &[u32]) -> Result<(f32, f32)> {
        let n = self.check_data(x, Some(y), "train_on_batch")?;
        let input = self.input_shape.clone().context("no input shape")?;
        let nodes = self.nodes.clone();
        if let Engine::Gpu(e) = &mut self.compiled()?.engine {
            let (g, p) = e.graph(&nodes, &input, n, true)?;
            g.reset_totals(&p.gpu)?;
        }
        let (l, h) = self
            .step(x, y, n, true, &mut (0.0, 0.0))?
            .context("a step's totals")?;
        Ok(((l / n as f64) as f32, (h / n as f64) as f32))
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
        let input = self.input_shape.clone().context("no input shape")?;
        let nodes = &self.nodes;
        if let Engine::Gpu(e) = &mut Compiled::of(&mut self.compiled)?.engine {
            e.graph(nodes, &input, batch_size, true)?;
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

    /// Mean loss and accuracy on (x, y), batch 32 like Keras.
    pub fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<(f32, f32)> {
        self.evaluate_batched(x, y, 32)
    }

    /// Mean loss and accuracy on (x, y) in batches of `batch_size`.
    pub fn evaluate_batched(
        &mut self,
        x: &[f32],
        y: &[u32],
        batch_size: usize,
    ) -> Result<(f32, f32)> {
        ensure!(batch_size > 0, "batch_size must be positive");
        let n = self.check_data(x, Some(y), "evaluate")?;
        let input = self.input_shape.clone().context("no input shape")?;
        let sample: usize = input.iter().product();
        let nodes = self.nodes.clone();
        let batch = self.reuse_batch(batch_size.min(n));
        let c = self.compiled()?;
        let (sum, hits) = match &mut c.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                let (g, _) = e.graph(&nodes, &input, batch, false)?;
                g.reset_totals(&gpu)?;
                for start in (0..n).step_by(batch) {
                    let valid = batch.min(n - start);
                    g.load(
                        &gpu,
                        &x[start * sample..(start + valid) * sample],
                        Some(&y[start..start + valid]),
                        valid,
                    )?;
                    g.eval_step(&gpu)?;
                }
                g.read_totals(&gpu)?
            }
            Engine::Cpu(e) => {
                let mut t = (0f64, 0f64);
                for start in (0..n).step_by(batch) {
                    let valid = batch.min(n - start);
                    let (l, h) = e.eval_batch(
                        &nodes,
                        &x[start * sample..(start + valid) * sample],
                        &y[start..start + valid],
                        valid,
                    )?;
                    t = (t.0 + l, t.1 + h as f64);
                }
                t
            }
        };
        Ok(((sum / n as f64) as f32, (hits / n as f64) as f32))
    }

    /// A batch size whose graph already exists when `wanted` has none, to avoid
    /// allocating a second set of activations for evaluation.
    fn reuse_batch(&self, wanted: usize) -> usize {
        match &self.compiled {
            Some(Compiled {
                engine: Engine::Gpu(e),
                ..
            }) if !e.graphs.contains_key(&wanted) => {
                e.graphs.keys().copied().max().unwrap_or(wanted)
            }
            _ => wanted,
        }
    }

    /// Model outputs for every sample of `x` (probabilities with a softmax head), row-major
    /// `[n, classes]`.
    pub fn predict(&mut self, x: &[f32], batch_size: usize) -> Result<Vec<f32>> {
        ensure!(batch_size > 0, "batch_size must be positive");
        let n = self.check_data(x, None, "predict")?;
        let input = self.input_shape.clone().context("no input shape")?;
        let sample: usize = input.iter().product();
        let classes = self.classes()?;
        let nodes = self.nodes.clone();
        let batch = self.reuse_batch(batch_size.min(n));
        let c = self.compiled()?;
        let mut out = Vec::with_capacity(n * classes);
        for start in (0..n).step_by(batch) {
            let valid = batch.min(n - start);
            let xs = &x[start * sample..(start + valid) * sample];
            match &mut c.engine {
                Engine::Gpu(e) => {
                    let gpu = e.params.gpu.clone();
                    let (g, _) = e.graph(&nodes, &input, batch, false)?;
                    g.load(&gpu, xs, None, valid)?;
                    g.predict_step(&gpu)?;
                    let src = if g.predict_probs {
                        &g.probs
                    } else {
                        g.acts.last().context("no layers")?
                    };
                    out.extend_from_slice(&src.read::<f32>(&gpu)?[..valid * classes]);
                }
                Engine::Cpu(e) => out.extend(e.predict_batch(&nodes, xs, valid)?),
            }
        }
        Ok(out)
    }

    /// Every layer's output for one sample (layer name, per-sample shape, values).
    pub fn layer_outputs(&mut self, sample_x: &[f32]) -> Result<Vec<NamedTensor>> {
        let n = self.check_data(sample_x, None, "layer_outputs")?;
        ensure!(n == 1, "layer_outputs takes one sample, got {n}");
        let input = self.input_shape.clone().context("no input shape")?;
        let nodes = self.nodes.clone();
        let c = self.compiled()?;
        let outs: Vec<Vec<f32>> = match &mut c.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                let (g, _) = e.graph(&nodes, &input, 1, false)?;
                g.load(&gpu, sample_x, None, 1)?;
                g.predict_step(&gpu)?;
                g.acts[1..]
                    .iter()
                    .map(|t| t.read::<f32>(&gpu))
                    .collect::<Result<_>>()?
            }
            Engine::Cpu(e) => e.layer_outputs(&nodes, sample_x, 1),
        };
        Ok(nodes
            .iter()
            .zip(outs)
            .map(|(n, values)| NamedTensor {
                name: n.name.clone(),
                shape: n.out_shape.clone(),
                values,
            })
            .collect())
    }

    /// The times of every dispatch of one GPU training step at `batch` (each run alone:
    /// its first run and the median of `reps` more), in step order. Empty on the CPU path.
    pub fn profile_step(&mut self, batch: usize, reps: usize) -> Result<Vec<DispatchTime>> {
        let input = self.input_shape.clone().context("no input shape")?;
        let nodes = self.nodes.clone();
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(&nodes, &input, batch, true)?;
                g.profile(p, reps)
            }
            Engine::Cpu(_) => Ok(Vec::new()),
        }
    }

    /// Optimizer steps taken since compile.
    pub fn steps_taken(&self) -> u64 {
        self.compiled.as_ref().map_or(0, |c| c.step)
    }
}

fn progress_bar(
    verbose: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> indicatif::ProgressBar {
    if !verbose {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{epochs} {{pos:>5}}/{{len}} [{{bar:25}}] {{elapsed}}<{{eta}} {{msg}}",
        epoch + 1
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}
