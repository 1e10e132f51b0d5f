//! `wgcnn train image-folder`: an experiment's architecture trained on a user's folder of
//! images (one sub-folder per class), read as batches need it ([`ImageFolder`]), with the
//! run folder, report and pictures of the experiments; and the `eval` / `predict` of the
//! model files it writes.

use super::{
    Finished, RunConfig, RunFiles, RunReport, Scores, TestReport, Transcript, check_options,
    describe_optimizer, format, make_run_dir,
};
use crate::callbacks::{CsvLogger, ModelCheckpoint, Monitor};
use crate::data::augment::RandomTranslation;
use crate::data::{Dataset, FolderOptions, ImageFolder, Source, Split, Subset};
use crate::experiments::{self, Task};
use crate::metrics::{self, ConfusionMatrix};
use crate::model::{FitConfig, Model};
use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};

/// The experiment name `wgcnn train image-folder` runs and model files record.
pub const IMAGE_FOLDER: &str = "image-folder";

/// What `wgcnn train image-folder` adds to a [`RunConfig`] (whose `data_root` is the
/// folder of images).
#[derive(Clone, Debug, PartialEq)]
pub struct FolderRun {
    /// The experiment whose architecture (and recipe: optimizer, epochs, batch size,
    /// augmentation) is trained: its input becomes `image_size`² with the experiment's
    /// channels, its last Dense the folder's classes.
    pub arch: String,
    /// Height and width every image is resized to.
    pub image_size: u32,
    /// Fraction of the images held out for validation (picked by the run's seed).
    pub validation_split: f32,
    /// Threads decoding images while the GPU trains.
    pub workers: usize,
}

/// The folder's two sides, as a model file records them.
fn open_split(
    root: &Path,
    size: u32,
    channels: usize,
    split: f32,
    seed: u64,
) -> Result<(ImageFolder, ImageFolder)> {
    ensure!(
        split > 0.0 && split < 1.0,
        "--validation-split must be in (0, 1), got {split}"
    );
    let opts = FolderOptions {
        image_size: (size, size),
        channels,
        validation_split: Some((split, seed)),
        subset: Subset::Training,
    };
    let train = ImageFolder::open(root, &opts)?;
    let val = ImageFolder::open(root, &opts.subset(Subset::Validation))?;
    Ok((train, val))
}

/// Trains `f.arch` on the folder `cfg.data_root` and writes the run folder.
pub fn train_image_folder(cfg: &RunConfig, f: &FolderRun) -> Result<RunReport> {
    let exp = experiments::experiment(&f.arch)?;
    ensure!(
        exp.task == Task::Classify,
        "--arch {}: a folder of classes trains a classifier; {} is a denoiser",
        f.arch,
        f.arch
    );
    ensure!(f.image_size > 0, "--image-size must be at least 1");
    let cfg = RunConfig {
        experiment: IMAGE_FOLDER.into(),
        ..cfg.clone()
    };
    check_options(&cfg)?;
    let channels = exp.input_shape()[2];
    let (train, val) = open_split(
        &cfg.data_root,
        f.image_size,
        channels,
        f.validation_split,
        cfg.seed,
    )?;
    let names = train.class_names();
    let (mut model, resumed) = match &cfg.resume {
        Some(path) => {
            let model = Model::load(path)?;
            let e = model
                .metadata()
                .get("experiment")
                .cloned()
                .unwrap_or_default();
            ensure!(
                e == IMAGE_FOLDER,
                "{} holds a {e} model, not an image-folder one",
                path.display()
            );
            let line = format!(
                "resumed from {} after epoch {}\n",
                path.display(),
                model.epochs_trained()
            );
            (model, line)
        }
        None => {
            let size = f.image_size as usize;
            let mut model = exp.model_for([size, size, channels], names.len())?;
            model.set_seed(cfg.seed);
            let optimizer = cfg.lr.map_or(exp.optimizer.clone(), |lr| {
                exp.optimizer.clone().with_lr(lr)
            });
            model
                .compile(optimizer, exp.task.loss(), &exp.task.metrics())
                .context("setting up the model on the GPU")?;
            (model, String::new())
        }
    };
    model.set_ranks(cfg.ranks);
    let epochs = cfg.epochs.unwrap_or(exp.epochs);
    let batch_size = cfg.batch_size.unwrap_or(exp.batch_size);
    ensure!(
        model.epochs_trained() < epochs,
        "the model has trained {} epochs already; ask for more (--epochs N counts them all)",
        model.epochs_trained()
    );
    let horizontal_flip = cfg.horizontal_flip.unwrap_or(exp.horizontal_flip);
    let translation = match cfg.translation {
        Some(t) if t > 0.0 => Some(RandomTranslation::new(t, t)),
        Some(_) => None,
        None => exp.translation,
    };
    model.plan(batch_size.min(train.len()))?;
    let fit = FitConfig {
        epochs,
        batch_size,
        validation_source: Some(&val),
        initial_epoch: model.epochs_trained(),
        horizontal_flip,
        translation,
        workers: f.workers,
        verbose: cfg.verbose,
        ..Default::default()
    };
    if !cfg.ranks.is_root() {
        // The same collectives as rank 0 (see `write_folder_run`), nothing written.
        model.fit_source(&train, &fit)?;
        model.evaluate_source(&train, batch_size, f.workers)?;
        model.evaluate_source(&val, batch_size, f.workers)?;
        return Ok(RunReport {
            experiment: IMAGE_FOLDER.into(),
            epochs,
            batch_size,
            train: Scores::default(),
            test: Scores::default(),
            history: model.training_history().clone(),
            images_per_second: 0.0,
            confusion: None,
            class_names: names,
            out_dir: PathBuf::new(),
            files: RunFiles::default(),
            text: String::new(),
        });
    }
    let dir = make_run_dir(&cfg)?;
    let run = Folders {
        train: &train,
        val: &val,
        f,
    };
    let skipped = match train.skipped() {
        0 => String::new(),
        n => format!("{n} files skipped: not .png, .jpg or .jpeg\n"),
    };
    let header = format!(
        "experiment: {IMAGE_FOLDER} (architecture of {})\ndata: {} training and {} validation \
         images of {}x{}x{channels} from {} ({} classes: {})\n{skipped}epochs: {epochs}, batch \
         size: {batch_size}\noptimizer: {}, seed: {}\n{resumed}",
        f.arch,
        train.len(),
        val.len(),
        f.image_size,
        f.image_size,
        cfg.data_root.display(),
        names.len(),
        names.join(", "),
        describe_optimizer(model.optimizer().context("a compiled model")?),
        model.seed()
    );
    let result = write_folder_run(&mut model, &run, &cfg, fit, &header, &dir.path);
    if result.is_err() {
        crate::io::remove_empty(&dir.created);
    }
    result
}

/// The two sides of the folder and the options.
struct Folders<'a> {
    train: &'a ImageFolder,
    val: &'a ImageFolder,
    f: &'a FolderRun,
}

fn write_folder_run(
    model: &mut Model,
    run: &Folders,
    cfg: &RunConfig,
    fit: FitConfig,
    header: &str,
    out_dir: &Path,
) -> Result<RunReport> {
    let (epochs, batch_size) = (fit.epochs, fit.batch_size);
    let mut out = Transcript::new(cfg.verbose);
    out.print(header);
    if fit.horizontal_flip {
        out.print("augmentation: random horizontal flip of training images\n");
    }
    out.print(&format!("\n{}\n", model.summary()));
    out.print(&format!("run directory: {}\n", out_dir.display()));
    let files = RunFiles::plan(out_dir);
    let model_file = out_dir.join("model.safetensors");
    let root = std::fs::canonicalize(&cfg.data_root).unwrap_or(cfg.data_root.clone());
    for (k, v) in [
        ("experiment", IMAGE_FOLDER.to_string()),
        ("arch", run.f.arch.clone()),
        ("data", root.display().to_string()),
        ("image_size", run.f.image_size.to_string()),
        ("validation_split", run.f.validation_split.to_string()),
        ("split_seed", cfg.seed.to_string()),
        ("classes", run.train.class_names().join("\n")),
    ] {
        model.set_metadata(k, &v);
    }
    let fit = FitConfig {
        callbacks: vec![
            CsvLogger::new(&files.history).into(),
            ModelCheckpoint::new(&model_file)
                .monitor(Monitor::Loss)
                .into(),
        ],
        ..fit
    };
    let fitted = model.fit_source(run.train, &fit)?;
    model.save(&model_file)?;
    let history = model.training_history().clone();
    out.print(&format::history_table(&history, epochs));

    let workers = run.f.workers;
    let scores = |model: &mut Model, src: &ImageFolder| -> Result<Scores> {
        let (loss, accuracy) = model.evaluate_source(src, batch_size, workers)?;
        Ok(Scores {
            loss,
            accuracy,
            metric: model.metric_name(),
            psnr: None,
            support: src.len(),
        })
    };
    let train = scores(model, run.train).context("evaluating on the training images")?;
    let test = folder_report(model, run.val, batch_size, workers)?;
    // The pictures of the first validation image.
    let first = first_image(run.val)?;
    let data = Split {
        train: first.clone(),
        test: first,
    };
    let finished = Finished {
        experiment: IMAGE_FOLDER,
        batch_size,
        trained: run.train.len(),
        epoch_seconds: &fitted.epoch_seconds,
        train,
        test,
        data: &data,
        test_inputs: &data.test.images,
        out_dir,
    };
    finished.write(model, out, files)
}

/// Scores, per-class report and confusion matrix on the validation images.
fn folder_report(
    model: &mut Model,
    val: &ImageFolder,
    batch_size: usize,
    workers: usize,
) -> Result<TestReport> {
    let (loss, accuracy) = model
        .evaluate_source(val, batch_size, workers)
        .context("evaluating on the validation images")?;
    let scores = Scores {
        loss,
        accuracy,
        metric: model.metric_name(),
        psnr: None,
        support: val.len(),
    };
    let outputs = model.predict_source(val, batch_size, workers)?;
    let names = val.class_names();
    let predicted = metrics::argmax_rows(&outputs, model.classes()?);
    let labels: Vec<u32> = val.files().iter().map(|(_, l)| *l).collect();
    let confusion = ConfusionMatrix::from_predictions(&labels, &predicted, names.len())?;
    let text = format::test_text(&confusion, &names);
    Ok(TestReport {
        scores,
        confusion: Some(confusion),
        class_names: names,
        text,
        outputs,
    })
}

/// The first image of `src` as a one-image data set (what the pictures draw).
fn first_image(src: &ImageFolder) -> Result<Dataset> {
    let [h, w, c] = src.shape();
    let mut px = vec![0u8; h * w * c];
    let label = src.load(0, &mut px)?;
    Ok(Dataset {
        images: px.iter().map(|&b| f32::from(b) / 255.0).collect(),
        labels: vec![label],
        height: h,
        width: w,
        channels: c,
        class_names: src.class_names(),
    })
}

/// `wgcnn eval --model FILE` for an image-folder model: its validation images, as the
/// model file records folder, size and split.
pub fn evaluate_folder_model(
    cfg: &RunConfig,
    model: &mut Model,
    path: &Path,
) -> Result<TestReport> {
    let meta = model.metadata().clone();
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .with_context(|| format!("{} does not record its image folder's {k}", path.display()))
    };
    let size: u32 = get("image_size")?.parse()?;
    let split: f32 = get("validation_split")?.parse()?;
    let seed: u64 = get("split_seed")?.parse()?;
    let channels = model.input_shape().context("no input shape")?[2];
    let root = PathBuf::from(get("data")?);
    let (_, val) = open_split(&root, size, channels, split, seed)?;
    let batch = cfg.batch_size.unwrap_or(32);
    let mut report = folder_report(model, &val, batch, 1)?;
    report.text = format!(
        "experiment: {IMAGE_FOLDER} (architecture of {})\ndata: {} validation images from {}\n\
         model: {} ({} epochs trained)\n{}{}",
        get("arch")?,
        val.len(),
        root.display(),
        path.display(),
        model.epochs_trained(),
        format::scores_table_one("validation", &report.scores),
        report.text
    );
    if cfg.verbose {
        print!("{}", report.text);
    }
    Ok(report)
}
