//! Runs the lecture experiments end to end and writes what a student looks at: the model
//! summary, training history, train/test scores, per-class report and confusion matrix
//! (for a classifier) or PSNR and the denoised images (for a denoiser), weights and
//! pictures. The `wgcnn` binary, the examples and the tests all go through here.
//!
//! ```no_run
//! use wgcnn::report::{RunConfig, train_experiment};
//! # fn main() -> anyhow::Result<()> {
//! let mut cfg = RunConfig::new("mnist-conv");
//! cfg.epochs = Some(1);
//! cfg.limit_train = Some(2_000);
//! let run = train_experiment(&cfg)?;
//! println!("test accuracy {:.3}, pictures in {}", run.test.accuracy, run.out_dir.display());
//! # Ok(()) }
//! ```
//!
//! A run directory (`runs/<experiment>/` by default) holds `weights.safetensors`,
//! `report.txt` (everything the run printed), `history.csv`, and the pictures of
//! [`pictures`]: `filters.png`, `feature_maps_<layer>.png`, `input.png`,
//! `confusion_matrix.png` (classifiers) or `denoised.png` (denoisers) and
//! `training_curves.png`.

mod folder;
mod format;
mod input;
pub mod pictures;

pub use folder::{FolderRun, IMAGE_FOLDER, evaluate_folder_model, train_image_folder};
pub use input::{Prediction, TOP_K, load_input_image, predict_images, predict_images_with_model};

use crate::callbacks::{CsvLogger, ModelCheckpoint, Monitor};
use crate::data::augment::RandomTranslation;
use crate::data::{self, Dataset, Split};
use crate::distributed::Ranks;
use crate::experiments::{self, DatasetKind, Experiment, NOISE_SEEDS, Task};
use crate::gpu::Gpu;
use crate::metrics::{self, ConfusionMatrix};
use crate::model::{FitConfig, History, Model, Targets};
use crate::ops::optimizer::Optimizer;
use anyhow::{Context, Result, ensure};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Everything one training run needs. [`RunConfig::new`] gives the defaults; `None` means
/// "the experiment's own recipe" (see [`experiments::experiment`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Experiment name, one of [`experiments::NAMES`] (or a label for a custom model given
    /// to [`train_model`]).
    pub experiment: String,
    /// Epochs; `None` = the experiment's.
    pub epochs: Option<usize>,
    /// Batch size; `None` = the experiment's.
    pub batch_size: Option<usize>,
    /// Learning rate replacing the optimizer's default (only where this module compiles the
    /// model, i.e. [`train_experiment`]).
    pub lr: Option<f32>,
    /// Seed of weight initialisation, shuffling and dropout.
    pub seed: u64,
    /// Random left-right mirroring of training images; `None` = the experiment's.
    pub horizontal_flip: Option<bool>,
    /// Random shifts of training images by up to this fraction of their size (0: none);
    /// `None` = the experiment's.
    pub translation: Option<f32>,
    /// Folder holding `mnist/` and `cifar-10-batches-bin/` (see [`data::data_root`]).
    pub data_root: PathBuf,
    /// Where the run's files go; `None` claims the first free one of `runs/<experiment>`,
    /// `runs/<experiment>-2`, … (see [`claim_run_dir`]). A folder given here must be new,
    /// empty, the folder of the run being resumed, or `overwrite` must be set.
    pub out_dir: Option<PathBuf>,
    /// Write into a non-empty `out_dir` (replacing the files of the same names).
    pub overwrite: bool,
    /// A model file (`model.safetensors` of an earlier run) to continue from: its weights,
    /// optimizer state and epoch count; training runs on to `epochs` in total.
    pub resume: Option<PathBuf>,
    /// Train on the first `n` training images only (quick looks, tests).
    pub limit_train: Option<usize>,
    /// Evaluate on the first `n` test images only.
    pub limit_test: Option<usize>,
    /// Print the report while running and show the progress bar.
    pub verbose: bool,
    /// Download missing dataset files.
    pub download: bool,
    /// The ranks of a data-parallel run under `mpirun` ([`Ranks::single`] otherwise):
    /// every rank trains, rank 0 alone prints and writes the run folder.
    pub ranks: Ranks,
}

impl RunConfig {
    /// Defaults: the experiment's recipe (and seed; 0 for other names), data from [`data::data_root`]`(None)`,
    /// output to `runs/<experiment>`, full datasets, verbose, download allowed.
    pub fn new(experiment: &str) -> RunConfig {
        RunConfig {
            experiment: experiment.to_string(),
            epochs: None,
            batch_size: None,
            lr: None,
            seed: experiments::experiment(experiment).map_or(0, |e| e.seed),
            horizontal_flip: None,
            translation: None,
            data_root: data::data_root(None),
            out_dir: None,
            overwrite: false,
            resume: None,
            limit_train: None,
            limit_test: None,
            verbose: true,
            download: true,
            ranks: Ranks::single(),
        }
    }

    /// For the examples run from the repository: data from `WGCNN_DATA`, else
    /// `../shared/datasets` (relative to the working directory); output to
    /// `runs/<experiment>`. Reads the program's arguments for quick looks: `--epochs N`,
    /// `--limit N` (training images), `--limit-test N` and `--quiet`; prints usage and exits
    /// on `--help` or a bad argument, as command-line programs do.
    pub fn for_example(experiment: &str) -> RunConfig {
        let args = <ExampleArgs as clap::Parser>::parse();
        let data_root = std::env::var_os("WGCNN_DATA")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("../shared/datasets"), PathBuf::from);
        RunConfig {
            data_root,
            epochs: args.epochs,
            limit_train: args.limit,
            limit_test: args.limit_test,
            verbose: !args.quiet,
            ..RunConfig::new(experiment)
        }
    }
}

/// The arguments [`RunConfig::for_example`] understands.
#[derive(clap::Parser, Debug)]
#[command(
    about = "Trains a lecture experiment and writes runs/<experiment>/ (data: $WGCNN_DATA or ../shared/datasets)"
)]
struct ExampleArgs {
    /// Epochs [default: the experiment's]
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Train on the first N training images only
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Test on the first N test images only
    #[arg(long, value_name = "N")]
    limit_test: Option<usize>,
    /// No progress bar or report on the terminal
    #[arg(long, short)]
    quiet: bool,
}

/// The run folders of `experiment` under `base`: `runs/<experiment>`, then
/// `runs/<experiment>-2`, `runs/<experiment>-3`, …
fn run_dirs(base: &Path, experiment: &str) -> impl Iterator<Item = PathBuf> {
    let runs = base.join("runs");
    std::iter::once(runs.join(experiment))
        .chain((2..).map(move |i| runs.join(format!("{experiment}-{i}"))))
}

/// Creates and returns the first free one of `base/runs/<experiment>`,
/// `base/runs/<experiment>-2`, … Creating a folder fails when it exists, so two runs
/// started at once never share one: each takes the next free name.
pub fn claim_run_dir(base: impl AsRef<Path>, experiment: &str) -> Result<PathBuf> {
    let base = base.as_ref();
    Ok(claim(base, experiment)?.path)
}

/// [`claim_run_dir`], with the folders it created.
fn claim(base: &Path, experiment: &str) -> Result<RunDir> {
    let mut created = crate::io::create_dirs(&base.join("runs"))?;
    for dir in run_dirs(base, experiment) {
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                created.insert(0, dir.clone());
                return Ok(RunDir { path: dir, created });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("creating the run directory {}", dir.display()));
            }
        }
    }
    unreachable!("run_dirs never ends")
}

/// The newest finished run of `experiment` under `base` (one of the [`claim_run_dir`]
/// folders holding `weights.safetensors`, which a run writes last): where `wgcnn eval`
/// and `wgcnn predict` take their weights from by default.
pub fn latest_run_dir(base: impl AsRef<Path>, experiment: &str) -> Option<PathBuf> {
    let base = base.as_ref();
    let mut best: Option<(std::time::SystemTime, usize, PathBuf)> = None;
    let mut misses = 0;
    for (i, dir) in run_dirs(base, experiment).enumerate() {
        if !dir.exists() {
            // Numbers can have gaps (a failed run's folder is removed); stop after a few.
            misses += 1;
            if misses > 16 {
                break;
            }
            continue;
        }
        misses = 0;
        let Ok(modified) = dir
            .join("weights.safetensors")
            .metadata()
            .and_then(|m| m.modified())
        else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(t, j, _)| (modified, i) > (*t, *j))
        {
            best = Some((modified, i, dir));
        }
    }
    best.map(|(_, _, d)| d)
}

/// A run's folder, and the folders the run created for it: those are removed again if
/// the run fails before writing anything into them.
struct RunDir {
    path: PathBuf,
    /// Deepest first.
    created: Vec<PathBuf>,
}

/// Checks an explicit `--out` before any work: a new folder must be creatable, an
/// existing one must be a writable folder, and empty unless it is the folder of the run
/// being resumed or `overwrite` is set. Creates nothing.
fn check_out_dir(out: &Path, overwrite: bool, resume: Option<&Path>) -> Result<()> {
    if !out.exists() {
        // The nearest existing ancestor must take the new folders.
        let ancestor = out
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .map(|a| {
                if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                }
            })
            .unwrap_or(Path::new("."));
        ensure!(
            ancestor.is_dir(),
            "cannot create the run directory {}: {} is not a folder",
            out.display(),
            ancestor.display()
        );
        return check_writable(ancestor)
            .with_context(|| format!("cannot create the run directory {}", out.display()));
    }
    ensure!(
        out.is_dir(),
        "the run directory {} exists and is not a folder",
        out.display()
    );
    let non_empty = std::fs::read_dir(out)
        .with_context(|| format!("reading the run directory {}", out.display()))?
        .next()
        .is_some();
    let resuming_here = resume
        .and_then(|r| r.parent())
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .and_then(|p| p.canonicalize().ok())
        .is_some_and(|p| out.canonicalize().is_ok_and(|o| o == p));
    ensure!(
        !non_empty || overwrite || resuming_here,
        "the run directory {} already holds files (an earlier run?); choose another --out, \
         leave --out out for a new runs/ folder, or pass --overwrite to replace them",
        out.display()
    );
    check_writable(out)
}

/// Fails unless a file can be created in `dir` (a temporary one, removed at once).
fn check_writable(dir: &Path) -> Result<()> {
    crate::io::temp_file(dir, "wgcnn-write-check", ".tmp")
        .map(drop)
        .with_context(|| format!("{} is not writable", dir.display()))
}

/// Creates the run's folder: `cfg.out_dir` (checked by [`check_out_dir`]), or a claimed
/// `runs/` one.
fn make_run_dir(cfg: &RunConfig) -> Result<RunDir> {
    match &cfg.out_dir {
        Some(out) => {
            let created = crate::io::create_dirs(out)?;
            Ok(RunDir {
                path: out.clone(),
                created,
            })
        }
        None => claim(Path::new(""), &cfg.experiment),
    }
}

/// Loss, metric and support (number of samples) on one dataset.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scores {
    /// The mean loss.
    pub loss: f32,
    /// The compiled metric's value: accuracy for the classifiers, binary accuracy for the
    /// denoiser (see [`Scores::metric`]).
    pub accuracy: f32,
    /// The metric's Keras name ("accuracy", "binary_accuracy", …).
    pub metric: &'static str,
    /// Mean PSNR (dB) of a denoiser's outputs against the clean images; `None` for a
    /// classifier and for the training set.
    pub psnr: Option<f32>,
    /// Number of samples scored.
    pub support: usize,
}

/// The files of a run directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFiles {
    /// The trained weights (`weights.safetensors`).
    pub weights: PathBuf,
    /// The report text (`report.txt`).
    pub report: PathBuf,
    /// The per-epoch results as CSV (`history.csv`; see [`History::to_csv`]).
    pub history: PathBuf,
    /// First-layer filters; `None` for a model without convolutions.
    pub filters: Option<PathBuf>,
    /// One picture per convolution and pooling layer: (layer name, path).
    pub feature_maps: Vec<(String, PathBuf)>,
    /// The test image the feature maps show.
    pub input: PathBuf,
    /// A classifier's test-set confusion matrix.
    pub confusion_matrix: Option<PathBuf>,
    /// A denoiser's test images: noisy inputs, clean images and outputs, one row each.
    pub denoised: Option<PathBuf>,
    /// The training-curves picture (`training_curves.png`).
    pub training_curves: PathBuf,
}

impl RunFiles {
    /// Every file, in the order they are listed in the report.
    pub fn all(&self) -> Vec<&Path> {
        let mut out = vec![
            self.weights.as_path(),
            self.report.as_path(),
            self.history.as_path(),
        ];
        out.extend(self.filters.as_deref());
        out.extend(self.feature_maps.iter().map(|(_, p)| p.as_path()));
        out.push(self.input.as_path());
        out.extend(self.confusion_matrix.as_deref());
        out.extend(self.denoised.as_deref());
        out.push(self.training_curves.as_path());
        out
    }

    /// The fixed paths in `out_dir`; `filters`, `feature_maps`, `confusion_matrix` and
    /// `denoised` are filled in as they are drawn, since they depend on the model.
    fn plan(out_dir: &Path) -> RunFiles {
        RunFiles {
            weights: out_dir.join("weights.safetensors"),
            report: out_dir.join("report.txt"),
            history: out_dir.join("history.csv"),
            input: out_dir.join("input.png"),
            training_curves: out_dir.join("training_curves.png"),
            ..RunFiles::default()
        }
    }
}

/// What a training run measured and wrote.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The experiment's name (or the custom model's label).
    pub experiment: String,
    /// Number of epochs in `history`.
    pub epochs: usize,
    /// The batch size it trained with.
    pub batch_size: usize,
    /// Scores of the trained model on the (possibly limited) training set.
    pub train: Scores,
    /// Scores on the (possibly limited) test set.
    pub test: Scores,
    /// Per-epoch loss/accuracy and wall time, as `fit` returned them.
    pub history: History,
    /// Training images per second over all epochs (validation excluded).
    pub images_per_second: f64,
    /// Test-set confusion matrix (rows = true class); `None` for a denoiser.
    pub confusion: Option<ConfusionMatrix>,
    /// The dataset's class names.
    pub class_names: Vec<String>,
    /// The run's folder (empty on the ranks other than 0 of a data-parallel run).
    pub out_dir: PathBuf,
    /// The files written in `out_dir`.
    pub files: RunFiles,
    /// Everything the run printed (also in `report.txt`).
    pub text: String,
}

impl RunReport {
    /// Wall seconds of each epoch's training.
    pub fn seconds_per_epoch(&self) -> &[f64] {
        &self.history.epoch_seconds
    }
}

/// Test-set results of a trained model: scores, confusion matrix and the text report.
#[derive(Clone, Debug)]
pub struct TestReport {
    /// Loss, metric and support on the test set.
    pub scores: Scores,
    /// A classifier's confusion matrix (rows = true class); `None` for a denoiser.
    pub confusion: Option<ConfusionMatrix>,
    /// The test set's class names.
    pub class_names: Vec<String>,
    /// Per-class precision/recall/F1 and the confusion matrix as text, or a denoiser's
    /// PSNR against that of its noisy inputs.
    pub text: String,
    /// The model's outputs for `inputs` (class probabilities or images).
    pub outputs: Vec<f32>,
}

/// Collects the report text, echoing it to stdout when verbose.
struct Transcript {
    text: String,
    echo: bool,
}

impl Transcript {
    fn new(echo: bool) -> Transcript {
        Transcript {
            text: String::new(),
            echo,
        }
    }

    fn print(&mut self, s: &str) {
        if self.echo {
            print!("{s}");
            // Flushed so that the text appears before the progress bar starts drawing.
            let _ = std::io::stdout().flush();
        }
        self.text.push_str(s);
    }
}

/// The experiment's dataset, cut to `limit_train` / `limit_test` images.
pub fn load_data(cfg: &RunConfig) -> Result<Split> {
    let exp = experiments::experiment(&cfg.experiment)?;
    let split = match exp.dataset {
        DatasetKind::Mnist => data::mnist(&cfg.data_root, cfg.download),
        DatasetKind::Cifar10 => data::cifar10(&cfg.data_root, cfg.download),
    }
    .with_context(|| format!("loading the data of '{}'", exp.name))?;
    Ok(Split {
        train: first(split.train, cfg.limit_train)?,
        test: first(split.test, cfg.limit_test)?,
    })
}

/// The experiment's test set only, cut to `limit_test` images (what evaluation needs:
/// the training set is neither read nor downloaded).
pub fn load_test_data(cfg: &RunConfig) -> Result<Dataset> {
    let exp = experiments::experiment(&cfg.experiment)?;
    let test = match exp.dataset {
        DatasetKind::Mnist => data::mnist_test(&cfg.data_root, cfg.download),
        DatasetKind::Cifar10 => data::cifar10_test(&cfg.data_root, cfg.download),
    }
    .with_context(|| format!("loading the test data of '{}'", exp.name))?;
    first(test, cfg.limit_test)
}

/// The first `limit` images of `ds` (all of them when `limit` is `None` or larger).
fn first(ds: Dataset, limit: Option<usize>) -> Result<Dataset> {
    match limit {
        Some(n) if n < ds.len() => {
            ensure!(
                n > 0,
                "a limit of 0 images leaves nothing to train or test on"
            );
            ds.subset(0..n)
        }
        _ => Ok(ds),
    }
}

/// "MNIST" or "CIFAR-10".
pub fn dataset_name(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Mnist => "MNIST",
        DatasetKind::Cifar10 => "CIFAR-10",
    }
}

/// "Adam, lr 0.001": the optimizer as the report prints it.
pub fn describe_optimizer(opt: &Optimizer) -> String {
    format::optimizer(opt)
}

/// The class names of a dataset without loading it (for `predict`).
pub fn class_names(kind: DatasetKind) -> Vec<String> {
    let names: &[&str] = match kind {
        DatasetKind::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        DatasetKind::Cifar10 => &[
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// The experiment's model, compiled with its optimizer (lr replaced by `lr` if given).
pub fn compiled_model(exp: &Experiment, seed: u64, lr: Option<f32>) -> Result<(Model, Optimizer)> {
    let optimizer = lr.map_or(exp.optimizer.clone(), |lr| {
        exp.optimizer.clone().with_lr(lr)
    });
    let mut model = exp.model()?;
    model.set_seed(seed);
    model
        .compile(optimizer.clone(), exp.task.loss(), &exp.task.metrics())
        .context("setting up the model on the GPU")?;
    Ok((model, optimizer))
}

/// Trains one of the lecture experiments as `cfg` says and writes its run directory.
pub fn train_experiment(cfg: &RunConfig) -> Result<RunReport> {
    let exp = experiments::experiment(&cfg.experiment)?;
    check_options(cfg)?; // bad options fail before the slow steps
    // Data first: a missing dataset should fail before the GPU is set up.
    let data = load_data(cfg)?;
    let (mut model, optimizer, resumed) = match &cfg.resume {
        Some(path) => {
            let model = Model::load(path)?;
            if let Some(e) = model.metadata().get("experiment") {
                ensure!(
                    *e == cfg.experiment,
                    "{} holds a {e} model, not {}",
                    path.display(),
                    cfg.experiment
                );
            }
            let optimizer = model
                .optimizer()
                .context("a loaded model is compiled")?
                .clone();
            let line = format!(
                "resumed from {} after epoch {}\n",
                path.display(),
                model.epochs_trained()
            );
            (model, optimizer, line)
        }
        None => {
            let (model, optimizer) = compiled_model(&exp, cfg.seed, cfg.lr)?;
            (model, optimizer, String::new())
        }
    };
    let optimizer_line = format!(
        "optimizer: {}, seed: {}\n{resumed}",
        describe_optimizer(&optimizer),
        model.seed()
    );
    run(&mut model, &data, cfg, &optimizer_line)
}

/// Trains an already compiled `model` on `data` and writes the run directory, like
/// [`train_experiment`] (which builds the model from [`experiments`]). The examples use
/// this to spell their model out layer by layer. Epochs and batch size default to the
/// experiment named in `cfg` (Keras' 1 epoch, batch 32 for other names).
pub fn train_model(model: &mut Model, data: &Split, cfg: &RunConfig) -> Result<RunReport> {
    run(model, data, cfg, "")
}

/// Checks what can be checked before any work: the options and the run folder.
fn check_options(cfg: &RunConfig) -> Result<()> {
    if let Some(lr) = cfg.lr {
        ensure!(
            lr.is_finite() && lr > 0.0,
            "the learning rate must be a finite positive number, got {lr}"
        );
    }
    if let Some(t) = cfg.translation {
        ensure!(
            t.is_finite() && (0.0..=1.0).contains(&t),
            "the translation factor must be a finite number in [0, 1] (0 for none), got {t}"
        );
    }
    schedule(cfg)?;
    match &cfg.out_dir {
        Some(out) => check_out_dir(out, cfg.overwrite, cfg.resume.as_deref()),
        None => check_writable_or_creatable(Path::new("runs")),
    }
}

/// Fails unless `dir` is writable or could be created.
fn check_writable_or_creatable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        check_writable(dir)
    } else {
        check_out_dir(dir, false, None)
    }
}

fn run(model: &mut Model, data: &Split, cfg: &RunConfig, header_extra: &str) -> Result<RunReport> {
    model.set_ranks(cfg.ranks);
    if !cfg.ranks.is_root() {
        return follow_run(model, data, cfg);
    }
    check_options(cfg)?;
    let (epochs, batch_size) = schedule(cfg)?;
    let initial_epoch = model.epochs_trained();
    ensure!(
        initial_epoch < epochs,
        "the model has trained {initial_epoch} epochs already; ask for more (--epochs N counts them all)"
    );
    ensure!(!data.train.is_empty(), "the training set is empty");
    // Every buffer of a step, before the folder exists: a model too large for the device
    // fails here, leaving nothing behind.
    model.plan(batch_size.min(data.train.len()))?;
    let dir = make_run_dir(cfg)?;
    let result = write_run(model, data, cfg, header_extra, &dir.path);
    if result.is_err() {
        crate::io::remove_empty(&dir.created);
    }
    result
}

fn write_run(
    model: &mut Model,
    data: &Split,
    cfg: &RunConfig,
    header_extra: &str,
    out_dir: &Path,
) -> Result<RunReport> {
    let plan = RunPlan::new(cfg, data)?;
    let (epochs, batch_size, recipe) = (plan.epochs, plan.batch_size, &plan.recipe);
    let (horizontal_flip, translation) = (plan.horizontal_flip, plan.translation);

    let mut out = Transcript::new(cfg.verbose);
    out.print(&format::header(&cfg.experiment, data, epochs, batch_size));
    out.print(header_extra);
    if horizontal_flip {
        out.print("augmentation: random horizontal flip of training images\n");
    }
    if let Some(t) = translation {
        out.print(&format!(
            "augmentation: random translation of training images by up to {} of their height and {} of their width (whole pixels, {:?} fill)\n",
            t.height_factor, t.width_factor, t.fill_mode
        ));
    }
    if let Ok(gpu) = Gpu::shared() {
        out.print(&format!("device: {}\n", gpu.describe()));
    }
    if let Some(r) = &recipe {
        out.print(&format!("lecture: {}\n", r.lecture));
    }
    out.print(&format!("\n{}\n", model.summary()));

    out.print(&format!("run directory: {}\n", out_dir.display()));
    let files = RunFiles::plan(out_dir);
    // After every epoch, atomically: the whole model (a crash loses at most an epoch, and
    // `--resume` continues from the file exactly) and the history so far.
    let model_file = out_dir.join("model.safetensors");
    model.set_metadata("experiment", &cfg.experiment);
    if let Some(r) = &recipe {
        model.set_metadata("dataset", dataset_name(r.dataset));
    }
    let fit = FitConfig {
        // The history first: a kill between the two leaves a model file one epoch behind
        // the CSV, and a resume from it rewrites the CSV from the file's own history.
        callbacks: vec![
            CsvLogger::new(&files.history).into(),
            ModelCheckpoint::new(&model_file)
                .monitor(Monitor::Loss)
                .into(),
        ],
        verbose: cfg.verbose,
        ..plan.fit_config(model)
    };
    let (x_train, y_train) = (&plan.x_train, plan.y_train);
    let fitted = model.fit(x_train, y_train, &fit)?;
    model.save(&model_file)?;
    // The whole run's history (a resumed run's earlier epochs too).
    let history = model.training_history().clone();
    out.print(&format::history_table(&history, epochs));

    let train =
        scores(model, x_train, y_train, batch_size).context("evaluating on the training set")?;
    let test = test_report(model, &data.test, plan.task, batch_size)?;
    let finished = Finished {
        experiment: &cfg.experiment,
        batch_size,
        trained: data.train.len(),
        epoch_seconds: &fitted.epoch_seconds,
        train,
        test,
        data,
        test_inputs: &plan.x_test,
        out_dir,
    };
    finished.write(model, out, files)
}

/// A run after training: what its report, weights, history and pictures are made of.
struct Finished<'a> {
    experiment: &'a str,
    batch_size: usize,
    /// Training samples per epoch.
    trained: usize,
    /// Seconds of each epoch `fit` ran in this run.
    epoch_seconds: &'a [f64],
    train: Scores,
    test: TestReport,
    /// The test images the pictures draw from, and what the model was fed for them.
    data: &'a Split,
    test_inputs: &'a [f32],
    out_dir: &'a Path,
}

impl Finished<'_> {
    /// Prints the scores, timing and test report, writes the weights, history, pictures
    /// and `report.txt`.
    fn write(
        self,
        model: &mut Model,
        mut out: Transcript,
        mut files: RunFiles,
    ) -> Result<RunReport> {
        let history = model.training_history().clone();
        let seconds: f64 = self.epoch_seconds.iter().sum();
        let images_per_second =
            (self.trained * self.epoch_seconds.len()) as f64 / seconds.max(1e-9);
        out.print(&format::scores_table(&self.train, &self.test.scores));
        out.print(&format::timing(self.epoch_seconds, images_per_second));
        out.print(&self.test.text);

        model.save_weights(&files.weights)?;
        crate::io::write_atomic(&files.history, history.to_csv().as_bytes())?;
        let run_pictures = pictures::RunPictures {
            experiment: self.experiment,
            data: self.data,
            test_inputs: self.test_inputs,
            test: &self.test,
            history: &history,
            out_dir: self.out_dir,
        };
        run_pictures.write(model, &mut files)?;

        out.print(&format::files_list(self.out_dir, &files.all()));
        crate::io::write_atomic(&files.report, out.text.as_bytes())?;
        Ok(RunReport {
            experiment: self.experiment.to_string(),
            epochs: history.loss.len(),
            batch_size: self.batch_size,
            train: self.train,
            test: self.test.scores,
            history,
            images_per_second,
            confusion: self.test.confusion,
            class_names: self.test.class_names,
            out_dir: self.out_dir.to_path_buf(),
            files,
            text: out.text,
        })
    }
}

/// A rank other than 0 of a data-parallel run: the same training and evaluations as
/// [`write_run`] (every collective in the same order), nothing printed or written.
fn follow_run(model: &mut Model, data: &Split, cfg: &RunConfig) -> Result<RunReport> {
    let plan = RunPlan::new(cfg, data)?;
    model.plan(plan.batch_size.min(data.train.len()))?;
    let fit = FitConfig {
        verbose: false,
        ..plan.fit_config(model)
    };
    let history = model.fit(&plan.x_train, plan.y_train, &fit)?;
    let train = scores(model, &plan.x_train, plan.y_train, plan.batch_size)?;
    let test = scores(model, &plan.x_test, plan.y_test, plan.batch_size)?;
    Ok(RunReport {
        experiment: cfg.experiment.clone(),
        epochs: history.loss.len(),
        batch_size: plan.batch_size,
        train,
        test,
        history,
        images_per_second: 0.0,
        confusion: None,
        class_names: data.test.class_names.clone(),
        out_dir: PathBuf::new(),
        files: RunFiles::default(),
        text: String::new(),
    })
}

/// What a run trains on and how, from its config and the experiment's recipe.
struct RunPlan<'a> {
    recipe: Option<Experiment>,
    task: Task,
    epochs: usize,
    batch_size: usize,
    horizontal_flip: bool,
    translation: Option<RandomTranslation>,
    /// What the model is fed (a denoiser's noisy images) and compared with.
    x_train: Cow<'a, [f32]>,
    y_train: Targets<'a>,
    x_test: Cow<'a, [f32]>,
    y_test: Targets<'a>,
}

impl<'a> RunPlan<'a> {
    fn new(cfg: &RunConfig, data: &'a Split) -> Result<RunPlan<'a>> {
        let (epochs, batch_size) = schedule(cfg)?;
        let recipe = experiments::experiment(&cfg.experiment).ok();
        let task = recipe.as_ref().map_or(Task::Classify, |r| r.task);
        let horizontal_flip = cfg
            .horizontal_flip
            .or(recipe.as_ref().map(|r| r.horizontal_flip))
            .unwrap_or(false);
        let translation = match cfg.translation {
            Some(f) if f > 0.0 => Some(RandomTranslation::new(f, f)),
            Some(_) => None,
            None => recipe.as_ref().and_then(|r| r.translation),
        };
        Ok(RunPlan {
            recipe,
            task,
            epochs,
            batch_size,
            horizontal_flip,
            translation,
            x_train: task.inputs(&data.train.images, NOISE_SEEDS.0),
            y_train: task.targets(&data.train.images, &data.train.labels),
            x_test: task.inputs(&data.test.images, NOISE_SEEDS.1),
            y_test: task.targets(&data.test.images, &data.test.labels),
        })
    }

    /// `fit`'s settings: the schedule, the test set as validation data, shuffling and
    /// augmentation, from the model's epoch on (a resumed run's); no callbacks.
    fn fit_config(&self, model: &Model) -> FitConfig<'_> {
        let (validation_data, validation_values) = match self.y_test {
            Targets::Classes(labels) => (Some((&self.x_test[..], labels)), None),
            Targets::Values(clean) => (None, Some((&self.x_test[..], clean))),
        };
        FitConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            validation_data,
            validation_values,
            shuffle: true,
            initial_epoch: model.epochs_trained(),
            horizontal_flip: self.horizontal_flip,
            translation: self.translation,
            ..Default::default()
        }
    }
}

/// Epochs and batch size: `cfg`'s, else the experiment's, else Keras' 1 and 32.
fn schedule(cfg: &RunConfig) -> Result<(usize, usize)> {
    let recipe = experiments::experiment(&cfg.experiment).ok();
    let epochs = cfg
        .epochs
        .or(recipe.as_ref().map(|r| r.epochs))
        .unwrap_or(1);
    let batch_size = cfg
        .batch_size
        .or(recipe.as_ref().map(|r| r.batch_size))
        .unwrap_or(32);
    ensure!(epochs > 0, "the number of epochs must be at least 1");
    ensure!(batch_size > 0, "the batch size must be at least 1");
    Ok((epochs, batch_size))
}

/// Loss and metric of `model` on inputs `x` against `y`.
fn scores(model: &mut Model, x: &[f32], y: Targets, batch_size: usize) -> Result<Scores> {
    let (loss, accuracy) = model.evaluate_batched(x, y, batch_size)?;
    let sample: usize = model
        .input_shape()
        .context("no input shape")?
        .iter()
        .product();
    Ok(Scores {
        loss,
        accuracy,
        metric: model.metric_name(),
        psnr: None,
        support: x.len() / sample.max(1),
    })
}

/// The scores of `model` on the test set `test` for `task`, with a classifier's per-class
/// report and confusion matrix or a denoiser's PSNR (on the inputs of
/// [`Task::inputs`] with the test seed of [`NOISE_SEEDS`]).
pub fn test_report(
    model: &mut Model,
    test: &Dataset,
    task: Task,
    batch_size: usize,
) -> Result<TestReport> {
    let inputs = task.inputs(&test.images, NOISE_SEEDS.1);
    let targets = task.targets(&test.images, &test.labels);
    let mut scores =
        scores(model, &inputs, targets, batch_size).context("evaluating on the test set")?;
    let outputs = model.predict(&inputs, batch_size)?;
    let (confusion, text) = match task {
        Task::Classify => {
            let predicted = metrics::argmax_rows(&outputs, model.classes()?);
            let confusion =
                ConfusionMatrix::from_predictions(&test.labels, &predicted, test.num_classes())?;
            let text = format::test_text(&confusion, &test.class_names);
            (Some(confusion), text)
        }
        Task::Denoise { sigma } => {
            let per = test.height * test.width * test.channels;
            let db = metrics::psnr(&outputs, &test.images, per)?;
            let noisy_db = metrics::psnr(&inputs, &test.images, per)?;
            scores.psnr = Some(db as f32);
            (None, format::denoise_text(db, noisy_db, sigma))
        }
    };
    Ok(TestReport {
        scores,
        confusion,
        class_names: test.class_names.clone(),
        text,
        outputs,
    })
}

/// `wgcnn eval --model FILE`: loads a model file (which records its experiment and
/// dataset) and reports on that dataset's test set (`cfg.limit_test`, `data_root`,
/// `download` and `batch_size` apply; `cfg.experiment` is ignored).
pub fn evaluate_model_file(cfg: &RunConfig, path: impl AsRef<Path>) -> Result<TestReport> {
    let path = path.as_ref();
    let mut model = Model::load(path)?;
    let experiment = model_experiment(&model, path)?;
    if experiment == IMAGE_FOLDER {
        return evaluate_folder_model(cfg, &mut model, path);
    }
    let exp = experiments::experiment(&experiment)?;
    let test = load_test_data(&RunConfig {
        experiment: experiment.clone(),
        ..cfg.clone()
    })?;
    let batch_size = cfg.batch_size.unwrap_or(exp.batch_size);
    let mut report = test_report(&mut model, &test, exp.task, batch_size)?;
    report.text = format!(
        "{}model: {} ({} epochs trained)\n{}{}",
        format::eval_header(exp.name, &test),
        path.display(),
        model.epochs_trained(),
        format::scores_table_one("test", &report.scores),
        report.text
    );
    if cfg.verbose {
        print!("{}", report.text);
    }
    Ok(report)
}

/// The experiment a model file was trained on (its metadata).
pub fn model_experiment(model: &Model, path: &Path) -> Result<String> {
    model.metadata().get("experiment").cloned().with_context(|| {
        format!(
            "{} does not say which experiment it was trained on (it was not written by `wgcnn train`)",
            path.display()
        )
    })
}

/// `wgcnn eval`: loads `weights` into the experiment's model and reports on the test set
/// (`cfg.limit_test`, `data_root`, `download` and `batch_size` apply). Prints the report
/// when `cfg.verbose`.
pub fn evaluate_weights(cfg: &RunConfig, weights: impl AsRef<Path>) -> Result<TestReport> {
    let weights = weights.as_ref();
    let exp = experiments::experiment(&cfg.experiment)?;
    let test = load_test_data(cfg)?;
    let (mut model, _) = compiled_model(&exp, cfg.seed, None)?;
    model.load_weights(weights)?;
    let batch_size = cfg.batch_size.unwrap_or(exp.batch_size);
    let mut report = test_report(&mut model, &test, exp.task, batch_size)?;
    report.text = format!(
        "{}weights: {}\n{}{}",
        format::eval_header(exp.name, &test),
        weights.display(),
        format::scores_table_one("test", &report.scores),
        report.text
    );
    if cfg.verbose {
        print!("{}", report.text);
    }
    Ok(report)
}
