//! Keras' training callbacks, with Keras 3's names, defaults and semantics: they run at the
//! end of every epoch of `fit` (and once at its end), from the epoch's logs, so they add
//! no read-back inside an epoch. A callback is configuration; what it did (the epoch it
//! stopped at, the checkpoints it wrote, the learning rates) is in the [`History`].
//!
//! Your own callbacks implement [`CustomCallback`] (Keras' `Callback` hooks) or are
//! closures ([`Callback::on_epoch_end`]); they can stop training and change the learning
//! rate. A batch hook runs every `batch_frequency` steps, and only those steps read the
//! loss back.
//!
//! [`History`]: crate::model::History

use crate::model::{History, Model};
use anyhow::{Result, bail, ensure};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What a hook sees of training so far: the epoch's mean loss and accuracy (running
/// means inside an epoch, as Keras' batch logs), validation results at an epoch's end, and
/// the learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Logs {
    /// The mean training loss: the epoch's, or its running mean inside an epoch.
    pub loss: f32,
    /// The compiled metric (accuracy for class labels), averaged as `loss` is.
    pub accuracy: f32,
    /// The validation loss, at an epoch's end when `fit` validates (None otherwise).
    pub val_loss: Option<f32>,
    /// The compiled metric on the validation data, when `val_loss` is there.
    pub val_accuracy: Option<f32>,
    /// The rate of the last update (the schedule's value where there is one).
    pub learning_rate: f32,
}

/// What a hook may do: reach the model (its weights, its learning rate), and stop
/// training (Keras' `self.model.stop_training = True`).
pub struct CallbackContext<'a> {
    model: &'a mut Model,
    stop: bool,
}

impl CallbackContext<'_> {
    /// The model being trained.
    pub fn model(&mut self) -> &mut Model {
        self.model
    }
    /// Ends `fit` after this hook (at the end of the current step or epoch).
    pub fn stop_training(&mut self) {
        self.stop = true;
    }
    /// The constant learning rate (None under a schedule).
    pub fn learning_rate(&self) -> Option<f32> {
        self.model.constant_learning_rate()
    }
    /// Sets a constant learning rate from the next step on (as Keras' `LearningRateScheduler`
    /// or `self.model.optimizer.learning_rate = …`).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.model.set_learning_rate(lr)
    }
}

/// Keras' `keras.callbacks.Callback`: override the hooks you need. Each returns an error
/// to abort `fit` with it.
pub trait CustomCallback: Send {
    /// Once, at the start of `fit`, before the first epoch.
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    /// Before each epoch (`epoch` counts from 0).
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    /// After each epoch, with its logs (validation included).
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &Logs,
        _ctx: &mut CallbackContext,
    ) -> Result<()> {
        Ok(())
    }
    /// After every [`CustomCallback::batch_frequency`]-th step of an epoch (`batch` counts
    /// from 0 within the epoch), with the epoch's running logs.
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &Logs,
        _ctx: &mut CallbackContext,
    ) -> Result<()> {
        Ok(())
    }
    /// Once, at the end of `fit` (after EarlyStopping has restored its best weights).
    fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    /// How often `on_train_batch_end` runs, in steps (None: never). Each such step reads
    /// the loss back from the device, which the others do not.
    fn batch_frequency(&self) -> Option<usize> {
        None
    }
}

/// A user callback in a [`Callback`] list (shared, so that the caller can keep a handle
/// and look at what it recorded after `fit`).
#[derive(Clone)]
pub struct Custom(pub Arc<Mutex<dyn CustomCallback>>);

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Custom(..)")
    }
}

impl PartialEq for Custom {
    fn eq(&self, other: &Custom) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Custom {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, dyn CustomCallback + 'static>> {
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("a custom callback panicked in an earlier hook"))
    }
}

/// An epoch-end closure as a callback ([`Callback::on_epoch_end`]).
struct EpochEndFn<F>(F);

impl<F> CustomCallback for EpochEndFn<F>
where
    F: FnMut(usize, &Logs, &mut CallbackContext) -> Result<()> + Send,
{
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        (self.0)(epoch, logs, ctx)
    }
}

/// A batch-end closure run every `every` steps ([`Callback::on_train_batch_end`]).
struct BatchEndFn<F> {
    every: usize,
    f: F,
}

impl<F> CustomCallback for BatchEndFn<F>
where
    F: FnMut(usize, &Logs, &mut CallbackContext) -> Result<()> + Send,
{
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut CallbackContext,
    ) -> Result<()> {
        (self.f)(batch, logs, ctx)
    }
    fn batch_frequency(&self) -> Option<usize> {
        Some(self.every)
    }
}

/// A value of the epoch logs to watch: Keras' `monitor=` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Monitor {
    /// The training loss (Keras' `monitor="loss"`).
    Loss,
    /// The training metric (Keras' `monitor="accuracy"`).
    Accuracy,
    /// The validation loss (Keras' `monitor="val_loss"`).
    ValLoss,
    /// The validation metric (Keras' `monitor="val_accuracy"`).
    ValAccuracy,
}

impl Monitor {
    /// Keras' name ("val_loss", …).
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
        }
    }

    /// From Keras' name.
    pub fn parse(name: &str) -> Result<Monitor> {
        Ok(match name {
            "loss" => Monitor::Loss,
            "accuracy" | "acc" => Monitor::Accuracy,
            "val_loss" => Monitor::ValLoss,
            "val_accuracy" | "val_acc" => Monitor::ValAccuracy,
            other => bail!(
                "unknown monitor '{other}': expected loss, accuracy, val_loss or val_accuracy"
            ),
        })
    }

    fn needs_validation(self) -> bool {
        matches!(self, Monitor::ValLoss | Monitor::ValAccuracy)
    }

    /// Keras' mode "auto": accuracies improve upwards, losses downwards.
    fn higher_is_better(self) -> bool {
        matches!(self, Monitor::Accuracy | Monitor::ValAccuracy)
    }

    /// The value in epoch `e` of `h`.
    fn value(self, h: &History, e: usize) -> Option<f32> {
        let v = match self {
            Monitor::Loss => &h.loss,
            Monitor::Accuracy => &h.accuracy,
            Monitor::ValLoss => &h.val_loss,
            Monitor::ValAccuracy => &h.val_accuracy,
        };
        v.get(e).copied()
    }
}

/// Keras' `EarlyStopping(monitor="val_loss", min_delta=0, patience=0,
/// restore_best_weights=False, start_from_epoch=0)`: stops `fit` once the monitored value
/// has not improved by more than `min_delta` for `patience` epochs; with
/// `restore_best_weights`, the model ends with the weights of its best epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The value watched (Keras' default `val_loss`).
    pub monitor: Monitor,
    /// The change that must be exceeded to count as an improvement (Keras' default 0).
    pub min_delta: f32,
    /// Epochs without improvement before training stops (Keras' default 0).
    pub patience: usize,
    /// End with the weights of the best epoch watched (Keras' default false).
    pub restore_best_weights: bool,
    /// The first epoch (0-based) watched; earlier ones are ignored (Keras' default 0).
    pub start_from_epoch: usize,
}

impl EarlyStopping {
    /// Watches `monitor`, with Keras' defaults for the rest.
    pub fn new(monitor: Monitor) -> EarlyStopping {
        EarlyStopping {
            monitor,
            min_delta: 0.0,
            patience: 0,
            restore_best_weights: false,
            start_from_epoch: 0,
        }
    }
    /// Sets `min_delta` (its absolute value).
    pub fn min_delta(mut self, d: f32) -> Self {
        self.min_delta = d.abs();
        self
    }
    /// Sets `patience`.
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    /// Sets `restore_best_weights`.
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }
    /// Sets `start_from_epoch`.
    pub fn start_from_epoch(mut self, e: usize) -> Self {
        self.start_from_epoch = e;
        self
    }
}

/// Keras' `ModelCheckpoint(filepath, monitor="val_loss", save_best_only=False,
/// save_weights_only=False)`: writes the whole model (a [`Model::save`] file) — or
/// only its weights — after every epoch, or only after epochs that improve the monitored
/// value. `{epoch}` (1-based, as Keras counts) in the path, or `{epoch:02d}`, is replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCheckpoint {
    /// Where to write; `{epoch}`, `{epoch:02d}` or `{epoch:03d}` becomes the 1-based epoch.
    pub filepath: PathBuf,
    /// The value `save_best_only` watches (Keras' default `val_loss`).
    pub monitor: Monitor,
    /// Write only after epochs that improve the monitored value (Keras' default false).
    pub save_best_only: bool,
    /// Write only the weights ([`Model::save_weights`]), not the whole model
    /// (Keras' default false).
    pub save_weights_only: bool,
}

impl ModelCheckpoint {
    /// Writes to `filepath` with Keras' defaults: the whole model, after every epoch.
    pub fn new(filepath: impl Into<PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: Monitor::ValLoss,
            save_best_only: false,
            save_weights_only: false,
        }
    }
    /// Sets `monitor`.
    pub fn monitor(mut self, m: Monitor) -> Self {
        self.monitor = m;
        self
    }
    /// Sets `save_best_only`.
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }
    /// Sets `save_weights_only`.
    pub fn save_weights_only(mut self, on: bool) -> Self {
        self.save_weights_only = on;
        self
    }

    /// The path for epoch `epoch` (0-based).
    fn path_for(&self, epoch: usize) -> PathBuf {
        let s = self.filepath.to_string_lossy();
        let n = epoch + 1;
        PathBuf::from(
            s.replace("{epoch:02d}", &format!("{n:02}"))
                .replace("{epoch:03d}", &format!("{n:03}"))
                .replace("{epoch}", &n.to_string()),
        )
    }
}

/// Keras' `ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
/// cooldown=0, min_lr=0)`: multiplies a constant learning rate by `factor` (never below
/// `min_lr`) after `patience` epochs without an improvement of more than `min_delta`,
/// then waits `cooldown` epochs before counting again.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLROnPlateau {
    /// The value watched (Keras' default `val_loss`).
    pub monitor: Monitor,
    /// What the learning rate is multiplied by, in (0, 1) (Keras' default 0.1).
    pub factor: f32,
    /// Epochs without improvement before a reduction (Keras' default 10).
    pub patience: usize,
    /// The change that must be exceeded to count as an improvement (Keras' default 1e-4).
    pub min_delta: f32,
    /// Epochs after a reduction before counting starts again (Keras' default 0).
    pub cooldown: usize,
    /// The lowest learning rate a reduction goes to (Keras' default 0).
    pub min_lr: f32,
}

impl ReduceLROnPlateau {
    /// Watches `monitor`, with Keras' defaults for the rest.
    pub fn new(monitor: Monitor) -> ReduceLROnPlateau {
        ReduceLROnPlateau {
            monitor,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
    /// Sets `factor`.
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }
    /// Sets `patience`.
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    /// Sets `min_delta` (its absolute value).
    pub fn min_delta(mut self, d: f32) -> Self {
        self.min_delta = d.abs();
        self
    }
    /// Sets `cooldown`.
    pub fn cooldown(mut self, c: usize) -> Self {
        self.cooldown = c;
        self
    }
    /// Sets `min_lr`.
    pub fn min_lr(mut self, lr: f32) -> Self {
        self.min_lr = lr;
        self
    }
}

/// Keras' `CSVLogger(filename)`: writes the epoch results to a CSV file after every
/// epoch ([`History::to_csv`]), atomically. The file holds the model's whole training
/// history ([`Model::training_history`]): every epoch it trained, numbered as the
/// model counts them, those before a resume included (model files carry them). So a
/// killed run loses at most its current epoch, and a resumed one continues its rows
/// (Keras' `append=True`, meant for continuing training).
#[derive(Clone, Debug, PartialEq)]
pub struct CsvLogger {
    /// The CSV file written.
    pub filename: PathBuf,
}

impl CsvLogger {
    /// Writes to `filename`.
    pub fn new(filename: impl Into<PathBuf>) -> CsvLogger {
        CsvLogger {
            filename: filename.into(),
        }
    }
}

/// One of the callbacks, for [`FitConfig::callbacks`](crate::model::FitConfig).
///
/// ```
/// use wgcnn::callbacks::{Callback, EarlyStopping, Monitor};
/// use wgcnn::prelude::*;
/// # fn main() -> anyhow::Result<()> {
/// let (x, y) = wgcnn::testing::brightest_third(48, 2);
/// let mut model = Sequential::new();
/// model.add(Flatten::new().input_shape(&[8, 8, 1]))?;
/// model.add(Dense::new(3).activation(Softmax))?;
/// model.set_device(Device::Cpu);
/// model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
/// let cfg = FitConfig {
///     epochs: 20,
///     batch_size: 16,
///     validation_split: 0.25,
///     verbose: false,
///     callbacks: vec![
///         EarlyStopping::new(Monitor::ValLoss).patience(2).into(),
///         // A closure that stops training once the training accuracy reaches 0.9.
///         Callback::on_epoch_end(|_, logs, ctx| {
///             if logs.accuracy >= 0.9 {
///                 ctx.stop_training();
///             }
///             Ok(())
///         }),
///     ],
///     ..Default::default()
/// };
/// let history = model.fit(&x, &y, &cfg)?;
/// assert!(history.loss.len() <= 20);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Callback {
    /// Keras' `EarlyStopping`.
    EarlyStopping(EarlyStopping),
    /// Keras' `ModelCheckpoint`.
    ModelCheckpoint(ModelCheckpoint),
    /// Keras' `ReduceLROnPlateau`.
    ReduceLROnPlateau(ReduceLROnPlateau),
    /// Keras' `CSVLogger`.
    CsvLogger(CsvLogger),
    /// Your own callback ([`Callback::custom`], or a closure).
    Custom(Custom),
}

impl From<CsvLogger> for Callback {
    fn from(c: CsvLogger) -> Callback {
        Callback::CsvLogger(c)
    }
}

impl From<EarlyStopping> for Callback {
    fn from(c: EarlyStopping) -> Callback {
        Callback::EarlyStopping(c)
    }
}
impl From<ModelCheckpoint> for Callback {
    fn from(c: ModelCheckpoint) -> Callback {
        Callback::ModelCheckpoint(c)
    }
}
impl From<ReduceLROnPlateau> for Callback {
    fn from(c: ReduceLROnPlateau) -> Callback {
        Callback::ReduceLROnPlateau(c)
    }
}

impl Callback {
    /// Your own callback.
    pub fn custom(c: impl CustomCallback + 'static) -> Callback {
        Callback::Custom(Custom(Arc::new(Mutex::new(c))))
    }
    /// A closure run after every epoch: `|epoch, logs, ctx| { …; Ok(()) }`.
    pub fn on_epoch_end(
        f: impl FnMut(usize, &Logs, &mut CallbackContext) -> Result<()> + Send + 'static,
    ) -> Callback {
        Callback::custom(EpochEndFn(f))
    }
    /// A closure run after every `every`-th step of an epoch (each such step reads the loss
    /// back): `|batch, logs, ctx| { …; Ok(()) }`.
    pub fn on_train_batch_end(
        every: usize,
        f: impl FnMut(usize, &Logs, &mut CallbackContext) -> Result<()> + Send + 'static,
    ) -> Callback {
        Callback::custom(BatchEndFn { every, f })
    }

    /// The value it watches (None for one that watches nothing).
    fn monitor(&self) -> Option<Monitor> {
        match self {
            Callback::EarlyStopping(c) => Some(c.monitor),
            Callback::ModelCheckpoint(c) => Some(c.monitor),
            Callback::ReduceLROnPlateau(c) => Some(c.monitor),
            Callback::CsvLogger(_) | Callback::Custom(_) => None,
        }
    }
}

/// Whether `current` beats `best` by more than `delta` in the monitor's direction.
fn improves(monitor: Monitor, current: f32, best: f32, delta: f32) -> bool {
    if monitor.higher_is_better() {
        current - delta > best
    } else {
        current + delta < best
    }
}

fn worst(monitor: Monitor) -> f32 {
    if monitor.higher_is_better() {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    }
}

/// The state of one callback during a `fit`.
enum State {
    EarlyStopping {
        best: f32,
        wait: usize,
        best_weights: Option<Vec<crate::model::NamedTensor>>,
    },
    ModelCheckpoint {
        best: f32,
    },
    ReduceLROnPlateau {
        best: f32,
        wait: usize,
        cooldown: usize,
    },
    CsvLogger,
    Custom,
}

/// Runs the callbacks of one `fit` call.
pub(crate) struct Runner<'a> {
    callbacks: &'a [Callback],
    state: Vec<State>,
}

impl<'a> Runner<'a> {
    /// Checks the callbacks against what the fit will log.
    pub fn new(callbacks: &'a [Callback], validating: bool, model: &Model) -> Result<Runner<'a>> {
        let mut state = Vec::new();
        for c in callbacks {
            let m = c.monitor().unwrap_or(Monitor::Loss);
            ensure!(
                validating || !m.needs_validation(),
                "a callback monitors {} but fit has no validation data (give validation_data or validation_split)",
                m.name()
            );
            state.push(match c {
                Callback::EarlyStopping(_) => State::EarlyStopping {
                    best: worst(m),
                    wait: 0,
                    best_weights: None,
                },
                Callback::ModelCheckpoint(_) => State::ModelCheckpoint { best: worst(m) },
                Callback::CsvLogger(_) => State::CsvLogger,
                Callback::Custom(c) => {
                    let every = c.lock()?.batch_frequency();
                    ensure!(
                        every != Some(0),
                        "a custom callback's batch_frequency must be positive"
                    );
                    State::Custom
                }
                Callback::ReduceLROnPlateau(r) => {
                    ensure!(
                        r.factor > 0.0 && r.factor < 1.0,
                        "ReduceLROnPlateau: factor {} must be in (0, 1)",
                        r.factor
                    );
                    ensure!(
                        model.constant_learning_rate().is_some(),
                        "ReduceLROnPlateau needs a constant learning rate; this optimizer follows a schedule"
                    );
                    State::ReduceLROnPlateau {
                        best: worst(m),
                        wait: 0,
                        cooldown: 0,
                    }
                }
            });
        }
        Ok(Runner { callbacks, state })
    }

    /// After epoch `epoch` (its logs are the last entries of `h`): true to stop training.
    pub fn on_epoch_end(
        &mut self,
        model: &mut Model,
        epoch: usize,
        h: &mut History,
    ) -> Result<bool> {
        let e = h.loss.len() - 1;
        let mut stop = false;
        for (c, s) in self.callbacks.iter().zip(&mut self.state) {
            let current = c.monitor().and_then(|m| m.value(h, e)).unwrap_or(f32::NAN);
            match (c, s) {
                (
                    Callback::EarlyStopping(c),
                    State::EarlyStopping {
                        best,
                        wait,
                        best_weights,
                    },
                ) => {
                    if epoch < c.start_from_epoch {
                        continue;
                    }
                    // Keras 3: the first epoch watched is the best so far; the counter
                    // runs before the comparison. One weights snapshot either way.
                    let first = c.restore_best_weights && best_weights.is_none();
                    *wait += 1;
                    let improved = improves(c.monitor, current, *best, c.min_delta);
                    if first || improved {
                        h.best_epoch = Some(epoch);
                        if c.restore_best_weights {
                            *best_weights = Some(model.get_weights()?);
                        }
                    }
                    if improved {
                        *best = current;
                        *wait = 0;
                    } else if *wait >= c.patience && epoch > 0 {
                        h.stopped_epoch = Some(epoch);
                        stop = true;
                    }
                }
                (Callback::ModelCheckpoint(c), State::ModelCheckpoint { best }) => {
                    if c.save_best_only && !improves(c.monitor, current, *best, 0.0) {
                        continue;
                    }
                    *best = if c.save_best_only { current } else { *best };
                    let path = c.path_for(epoch);
                    // Every rank holds the same model: rank 0 alone writes it.
                    match (model.ranks().is_root(), c.save_weights_only) {
                        (false, _) => {}
                        (true, true) => model.save_weights(&path)?,
                        (true, false) => model.save(&path)?,
                    }
                    h.checkpoints.push((epoch, path));
                }
                (
                    Callback::ReduceLROnPlateau(c),
                    State::ReduceLROnPlateau {
                        best,
                        wait,
                        cooldown,
                    },
                ) => {
                    if *cooldown > 0 {
                        *cooldown -= 1;
                        *wait = 0;
                    }
                    if improves(c.monitor, current, *best, c.min_delta) {
                        *best = current;
                        *wait = 0;
                    } else if *cooldown == 0 {
                        *wait += 1;
                        if *wait >= c.patience {
                            let lr = model.constant_learning_rate().unwrap_or(0.0);
                            if lr > c.min_lr {
                                model.set_learning_rate((lr * c.factor).max(c.min_lr))?;
                                *cooldown = c.cooldown;
                                *wait = 0;
                            }
                        }
                    }
                }
                (Callback::CsvLogger(c), State::CsvLogger) if model.ranks().is_root() => {
                    let csv = model.training_history().to_csv();
                    crate::io::write_atomic(&c.filename, csv.as_bytes())?;
                }
                (Callback::Custom(c), State::Custom) => {
                    let logs = Logs {
                        loss: h.loss[e],
                        accuracy: h.accuracy[e],
                        val_loss: h.val_loss.get(e).copied(),
                        val_accuracy: h.val_accuracy.get(e).copied(),
                        learning_rate: h.learning_rate.get(e).copied().unwrap_or(f32::NAN),
                    };
                    let mut ctx = CallbackContext { model, stop: false };
                    c.lock()?.on_epoch_end(epoch, &logs, &mut ctx)?;
                    if ctx.stop {
                        h.stopped_epoch = Some(epoch);
                        stop = true;
                    }
                }
                _ => {} // each state is built from its callback
            }
        }
        Ok(stop)
    }

    /// The user callbacks.
    fn customs(&self) -> impl Iterator<Item = &Custom> {
        self.callbacks.iter().filter_map(|c| match c {
            Callback::Custom(c) => Some(c),
            _ => None,
        })
    }

    /// At the start of `fit`.
    pub fn on_train_begin(&mut self, model: &mut Model) -> Result<()> {
        for c in self.customs() {
            c.lock()?
                .on_train_begin(&mut CallbackContext { model, stop: false })?;
        }
        Ok(())
    }

    /// Before epoch `epoch`: true to stop training.
    pub fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<bool> {
        let mut ctx = CallbackContext { model, stop: false };
        for c in self.customs() {
            c.lock()?.on_epoch_begin(epoch, &mut ctx)?;
        }
        Ok(ctx.stop)
    }

    /// Whether some user callback wants the logs after step `step` (0-based) of an epoch:
    /// the step must read them back.
    pub fn wants_batch(&self, step: usize) -> Result<bool> {
        for c in self.customs() {
            if let Some(every) = c.lock()?.batch_frequency()
                && (step + 1).is_multiple_of(every)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After step `step` of an epoch, with the running logs: true to stop training.
    pub fn on_train_batch_end(
        &mut self,
        model: &mut Model,
        step: usize,
        logs: &Logs,
    ) -> Result<bool> {
        let mut ctx = CallbackContext { model, stop: false };
        for c in self.customs() {
            let mut c = c.lock()?;
            if let Some(every) = c.batch_frequency()
                && (step + 1).is_multiple_of(every)
            {
                c.on_train_batch_end(step, logs, &mut ctx)?;
            }
        }
        Ok(ctx.stop)
    }

    /// At the end of `fit`: EarlyStopping's best weights go back into the model (Keras 3
    /// restores them whether or not it stopped early); then the user callbacks' hook.
    pub fn on_train_end(&mut self, model: &mut Model) -> Result<()> {
        for s in &mut self.state {
            if let State::EarlyStopping {
                best_weights: Some(w),
                ..
            } = s
            {
                model.write_weights(w)?; // the weights only: the optimizer keeps its state
            }
        }
        for c in self.customs() {
            c.lock()?
                .on_train_end(&mut CallbackContext { model, stop: false })?;
        }
        Ok(())
    }
}
