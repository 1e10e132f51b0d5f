//! Keras' training callbacks, with Keras 3's names, defaults and semantics: they run at the
//! end of every epoch of `fit` (and once at its end), from the epoch's logs, so they add
//! no read-back inside an epoch. A callback is configuration; what it did (the epoch it
//! stopped at, the checkpoints it wrote, the learning rates) is in the [`History`].
//!
//! [`History`]: crate::model::History

use crate::model::{History, Model};
use anyhow::{Result, bail, ensure};
use std::path::PathBuf;

/// A value of the epoch logs to watch: Keras' `monitor=` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Monitor {
    Loss,
    Accuracy,
    ValLoss,
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
    pub monitor: Monitor,
    pub min_delta: f32,
    pub patience: usize,
    pub restore_best_weights: bool,
    pub start_from_epoch: usize,
}

impl EarlyStopping {
    pub fn new(monitor: Monitor) -> EarlyStopping {
        EarlyStopping {
            monitor,
            min_delta: 0.0,
            patience: 0,
            restore_best_weights: false,
            start_from_epoch: 0,
        }
    }
    pub fn min_delta(mut self, d: f32) -> Self {
        self.min_delta = d.abs();
        self
    }
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }
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
    pub filepath: PathBuf,
    pub monitor: Monitor,
    pub save_best_only: bool,
    pub save_weights_only: bool,
}

impl ModelCheckpoint {
    pub fn new(filepath: impl Into<PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: Monitor::ValLoss,
            save_best_only: false,
            save_weights_only: false,
        }
    }
    pub fn monitor(mut self, m: Monitor) -> Self {
        self.monitor = m;
        self
    }
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }
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
    pub monitor: Monitor,
    pub factor: f32,
    pub patience: usize,
    pub min_delta: f32,
    pub cooldown: usize,
    pub min_lr: f32,
}

impl ReduceLROnPlateau {
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
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn min_delta(mut self, d: f32) -> Self {
        self.min_delta = d.abs();
        self
    }
    pub fn cooldown(mut self, c: usize) -> Self {
        self.cooldown = c;
        self
    }
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
    pub filename: PathBuf,
}

impl CsvLogger {
    pub fn new(filename: impl Into<PathBuf>) -> CsvLogger {
        CsvLogger {
            filename: filename.into(),
        }
    }
}

/// One of the callbacks, for [`FitConfig::callbacks`](crate::model::FitConfig).
#[derive(Clone, Debug, PartialEq)]
pub enum Callback {
    EarlyStopping(EarlyStopping),
    ModelCheckpoint(ModelCheckpoint),
    ReduceLROnPlateau(ReduceLROnPlateau),
    CsvLogger(CsvLogger),
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
    /// The value it watches (None for one that watches nothing).
    fn monitor(&self) -> Option<Monitor> {
        match self {
            Callback::EarlyStopping(c) => Some(c.monitor),
            Callback::ModelCheckpoint(c) => Some(c.monitor),
            Callback::ReduceLROnPlateau(c) => Some(c.monitor),
            Callback::CsvLogger(_) => None,
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
                    if c.save_weights_only {
                        model.save_weights(&path)?;
                    } else {
                        model.save(&path)?;
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
                (Callback::CsvLogger(c), State::CsvLogger) => {
                    let csv = model.training_history().to_csv();
                    crate::io::write_atomic(&c.filename, csv.as_bytes())?;
                }
                _ => {} // each state is built from its callback
            }
        }
        Ok(stop)
    }

    /// At the end of `fit`: EarlyStopping's best weights go back into the model (Keras 3
    /// restores them whether or not it stopped early).
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
        Ok(())
    }
}
