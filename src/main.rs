//! `wgcnn`: reproduce the lecture "Redes Neuronales Convolucionales" one experiment at a
//! time. `wgcnn train mnist-conv` trains, evaluates and writes `runs/mnist-conv/`.

use anyhow::{Context, Result, bail, ensure};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wgcnn::experiments::{self, NAMES};
use wgcnn::model::{FileKind, file_kind};
use wgcnn::report::{self, Prediction, RunConfig};

/// Train the CNNs of the lecture "Redes Neuronales Convolucionales" on any GPU wgpu
/// reaches (Vulkan, Metal, DX12, GL; lavapipe without a GPU).
#[derive(Parser, Debug)]
#[command(name = "wgcnn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train an experiment, print its report and write runs/<experiment>/.
    Train(TrainArgs),
    /// Print an experiment's model summary (no GPU needed).
    Summary {
        #[arg(value_parser = experiment_names())]
        experiment: String,
    },
    /// Evaluate a model file, or an experiment's saved weights, on the test set.
    Eval(EvalArgs),
    /// Classify PNG/JPEG images with a model file or saved weights; prints the top 3
    /// classes.
    Predict(PredictArgs),
    /// List the GPU adapters wgpu sees, with the limits that matter for training.
    Devices,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// An experiment, or image-folder: the architecture of --arch on the folder of images
    /// --data DIR (one sub-folder per class), resized to --image-size
    #[arg(value_parser = train_names())]
    experiment: String,
    /// image-folder: the experiment whose architecture and recipe to train
    #[arg(long, value_name = "EXPERIMENT", value_parser = experiment_names())]
    arch: Option<String>,
    /// image-folder: height and width every image is resized to
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    image_size: Option<usize>,
    /// image-folder: fraction of the images held out for validation, picked by --seed
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    validation_split: f32,
    /// image-folder: threads decoding images while the GPU trains
    #[arg(long, value_name = "N", default_value_t = 2)]
    workers: usize,
    /// Epochs [default: the experiment's]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    epochs: Option<usize>,
    /// Batch size [default: the experiment's]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    batch_size: Option<usize>,
    /// Learning rate, replacing the optimizer's default
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Seed of weight initialisation and shuffling [default: the experiment's]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Mirror training images left-right at random [default: the experiment's]
    #[arg(long, value_name = "BOOL")]
    horizontal_flip: Option<bool>,
    /// Shift training images at random by up to this fraction of their size, 0 for none
    /// [default: the experiment's]
    #[arg(long, value_name = "FACTOR", allow_negative_numbers = true)]
    translation: Option<f32>,
    #[command(flatten)]
    data: DataArgs,
    /// Run directory: new, empty, or the one of the run being resumed [default: the
    /// first free one of runs/<experiment>, runs/<experiment>-2, …]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write into a --out folder that already holds files, replacing them
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// Continue from a model file (a run's model.safetensors): its weights, optimizer
    /// state and epoch count; trains on to --epochs in total (the recipe's by default)
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
    /// Train on the first N training images only
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    limit: Option<usize>,
    /// Test on the first N test images only
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    limit_test: Option<usize>,
    /// No progress bar or report on the terminal (report.txt is still written)
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct DataArgs {
    /// Folder holding mnist/ and cifar-10-batches-bin/ [default: $WGCNN_DATA, else the
    /// user cache folder, e.g. ~/.cache/wgcnn]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Fail instead of downloading missing dataset files
    #[arg(long)]
    no_download: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// The experiment whose weights to evaluate (not with --model)
    #[arg(value_parser = experiment_names(), required_unless_present = "model")]
    experiment: Option<String>,
    #[command(flatten)]
    weights: WeightsArg,
    /// A model file written by `wgcnn train` (model.safetensors); it records its
    /// experiment and dataset
    #[arg(long, value_name = "FILE", conflicts_with_all = ["experiment", "weights"])]
    model: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Test on the first N test images only
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    limit_test: Option<usize>,
    /// Batch size [default: the experiment's]
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    batch_size: Option<usize>,
}

#[derive(Args, Debug)]
#[command(
    override_usage = "wgcnn predict [OPTIONS] <EXPERIMENT> <IMAGE>...\n       \
                            wgcnn predict [OPTIONS] --model <FILE> <IMAGE>..."
)]
struct PredictArgs {
    #[command(flatten)]
    weights: WeightsArg,
    /// A model file written by `wgcnn train` (model.safetensors), instead of an
    /// experiment and its weights
    #[arg(long, value_name = "FILE", conflicts_with = "weights")]
    model: Option<PathBuf>,
    /// Invert grey levels (for dark digits on a light background; MNIST is light on dark)
    #[arg(long)]
    invert: bool,
    /// The experiment (not with --model), then PNG or JPEG files, resized to its input
    /// size
    #[arg(value_name = "EXPERIMENT> <IMAGE", required = true)]
    items: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct WeightsArg {
    /// Weights saved by `wgcnn train` [default: those of the newest finished run,
    /// runs/<experiment>[-N]/weights.safetensors]
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
}

impl WeightsArg {
    /// The weights file given, or the newest finished run's.
    fn path(&self, experiment: &str) -> Result<PathBuf> {
        if let Some(w) = &self.weights {
            return Ok(w.clone());
        }
        let dir = report::latest_run_dir(Path::new(""), experiment).with_context(|| {
            format!(
                "no finished run of {experiment} under runs/ (train first with \
                 `wgcnn train {experiment}`, or pass --weights FILE)"
            )
        })?;
        Ok(dir.join("weights.safetensors"))
    }
}

/// A count option (epochs, batch size, limits): a whole number of at least 1. Negative
/// numbers reach this parser (instead of clap's "use -- -1" tip) to get this message.
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be at least 1, got {n}")),
        Err(_) => Err(format!("expected a whole number of at least 1, got '{s}'")),
    }
}

fn experiment_names() -> PossibleValuesParser {
    PossibleValuesParser::new(NAMES)
}

/// What `train` takes: the experiments and image-folder.
fn train_names() -> PossibleValuesParser {
    PossibleValuesParser::new(NAMES.iter().copied().chain([report::IMAGE_FOLDER]))
}

fn main() -> ExitCode {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // Mesa's device-select layer prints "error: XDG_RUNTIME_DIR is invalid or not set"
        // in headless shells; wgcnn picks its adapter itself, so the layer has no job here.
        // SAFETY: the first statement of main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    // Usage errors and --help are clap's (exit 2 and 0); everything after parsing exits 1.
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train(args),
        Command::Summary { experiment } => summary(&experiment),
        Command::Eval(args) => eval(args),
        Command::Predict(args) => predict(args),
        Command::Devices => devices(),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    // Under `mpirun` (with the `mpi` feature) every rank runs this: data-parallel training
    // of one model; otherwise one rank. Kept until the end (dropping it ends MPI).
    let dist = wgcnn::distributed::Distributed::init()?;
    let ranks = dist.ranks();
    let result = train_ranks(args, ranks);
    ranks.or_abort(result)
}

fn train_ranks(args: TrainArgs, ranks: wgcnn::distributed::Ranks) -> Result<()> {
    if let Some(file) = &args.resume {
        ensure_file(file, "model file")?;
        ensure!(
            file_kind(file)? == FileKind::Model,
            "--resume takes a run's model file (model.safetensors: weights, optimizer state \
             and epoch count); {} holds weights only. To evaluate them: `wgcnn eval {} \
             --weights {}`",
            file.display(),
            args.experiment,
            file.display()
        );
    }
    let recipe = RunConfig::new(&args.experiment);
    let cfg = RunConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed.unwrap_or(recipe.seed),
        horizontal_flip: args.horizontal_flip,
        translation: args.translation,
        data_root: wgcnn::data::data_root(args.data.data.as_deref()),
        out_dir: args.out,
        overwrite: args.overwrite,
        resume: args.resume,
        limit_train: args.limit,
        limit_test: args.limit_test,
        verbose: !args.quiet,
        download: !args.data.no_download,
        ranks,
        ..recipe
    };
    let run = if args.experiment == report::IMAGE_FOLDER {
        ensure!(
            args.limit.is_none() && args.limit_test.is_none(),
            "image-folder trains on the whole folder: --limit and --limit-test do not apply"
        );
        let (Some(arch), Some(size), Some(_)) = (args.arch, args.image_size, &args.data.data)
        else {
            bail!(
                "image-folder needs --data DIR (one sub-folder of images per class), --arch \
                 EXPERIMENT and --image-size N"
            );
        };
        let folder = report::FolderRun {
            arch,
            image_size: u32::try_from(size).context("--image-size is too large")?,
            validation_split: args.validation_split,
            workers: args.workers,
        };
        report::train_image_folder(&cfg, &folder)?
    } else {
        ensure!(
            args.arch.is_none() && args.image_size.is_none(),
            "--arch and --image-size are for image-folder"
        );
        report::train_experiment(&cfg)?
    };
    if args.quiet && ranks.is_root() {
        let psnr = run
            .test
            .psnr
            .map_or(String::new(), |db| format!(", test PSNR {db:.2} dB"));
        let m = run.test.metric;
        println!(
            "{}: train {m} {:.4}, test {m} {:.4}{psnr}; wrote {}",
            run.experiment,
            run.train.accuracy,
            run.test.accuracy,
            run.out_dir.display()
        );
    }
    Ok(())
}

fn summary(name: &str) -> Result<()> {
    let exp = experiments::experiment(name)?;
    print!("{}", exp.model()?.summary());
    println!(
        "dataset: {}, epochs: {}, batch size: {}, optimizer: {}, seed: {}{}",
        report::dataset_name(exp.dataset),
        exp.epochs,
        exp.batch_size,
        report::describe_optimizer(&exp.optimizer),
        exp.seed,
        match (exp.horizontal_flip, exp.translation) {
            (true, _) => ", augmentation: horizontal flip".to_string(),
            (false, Some(t)) => format!(
                ", augmentation: random translation up to {}",
                t.height_factor
            ),
            (false, None) => String::new(),
        }
    );
    if let experiments::Task::Denoise { sigma } = exp.task {
        println!(
            "task: denoising (inputs with Gaussian noise σ {sigma}, clipped to [0, 1]; target: \
             the clean image), loss: binary cross-entropy, metric: binary accuracy and PSNR"
        );
    }
    println!("lecture: {}", exp.lecture);
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let experiment = args.experiment.clone().unwrap_or_default();
    let cfg = RunConfig {
        batch_size: args.batch_size,
        data_root: wgcnn::data::data_root(args.data.data.as_deref()),
        limit_test: args.limit_test,
        download: !args.data.no_download,
        ..RunConfig::new(&experiment)
    };
    if let Some(model) = &args.model {
        ensure_model_file(model, "eval")?;
        report::evaluate_model_file(&cfg, model)?;
        return Ok(());
    }
    let weights = args.weights.path(&experiment)?;
    ensure_file(&weights, "weights file")?;
    report::evaluate_weights(&cfg, &weights)?;
    Ok(())
}

fn predict(args: PredictArgs) -> Result<()> {
    // Images are read before the weights: they are what the user just typed.
    let predictions = match &args.model {
        Some(model) => {
            if let Some(first) = args.items.first().and_then(|f| f.to_str())
                && NAMES.contains(&first)
                && !Path::new(first).exists()
            {
                bail!(
                    "'{first}' is an experiment, and a model file records its own: give either \
                     `wgcnn predict --model FILE IMAGE...` or `wgcnn predict {first} [--weights \
                     FILE] IMAGE...`"
                );
            }
            ensure_model_file(model, "predict")?;
            eprintln!("using the model file {}", model.display());
            report::predict_images_with_model(model, &args.items, args.invert)?
        }
        None => {
            let (first, images) = args.items.split_first().context("no image files given")?;
            let experiment = first.to_string_lossy().into_owned();
            ensure!(
                NAMES.contains(&experiment.as_str()),
                "'{experiment}' is not an experiment (choose from {}), or give --model FILE",
                NAMES.join(", ")
            );
            ensure!(
                !images.is_empty(),
                "no image files given after '{experiment}'"
            );
            let weights = args.weights.path(&experiment)?;
            eprintln!("using the weights {}", weights.display());
            report::predict_images(&experiment, &weights, images, args.invert)?
        }
    };
    // Every image gets its line: a result on stdout, or its error on stderr.
    let failed = predictions.iter().filter(|p| p.is_err()).count();
    for p in &predictions {
        match p {
            Ok(Prediction {
                path,
                output: Some(out),
                ..
            }) => println!("{}: wrote {}", path.display(), out.display()),
            Ok(p) => {
                let top: Vec<String> = p
                    .top
                    .iter()
                    .map(|(name, prob)| format!("{name} {:.1}%", prob * 100.0))
                    .collect();
                println!("{}: {}", p.path.display(), top.join(", "));
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    ensure!(
        failed == 0,
        "{failed} of {} images could not be classified",
        predictions.len()
    );
    Ok(())
}

/// A readable error for a file the user named that is not there (before any GPU work).
fn ensure_file(path: &Path, what: &str) -> Result<()> {
    ensure!(
        path.is_file(),
        "{what} not found: {} (train first with `wgcnn train`, or pass --weights FILE)",
        path.display()
    );
    Ok(())
}

/// `--model FILE` of `command`: a model file, not a weights file (whose command line is
/// `wgcnn COMMAND EXPERIMENT --weights FILE`).
fn ensure_model_file(path: &Path, command: &str) -> Result<()> {
    ensure_file(path, "model file")?;
    ensure!(
        file_kind(path)? == FileKind::Model,
        "{} holds weights only, not a whole model; for weights give the experiment: \
         `wgcnn {command} EXPERIMENT --weights {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

fn devices() -> Result<()> {
    let adapters = wgcnn::gpu::enumerate_adapters()?;
    ensure!(
        !adapters.is_empty(),
        "no GPU adapter found; install a GPU driver or a software Vulkan driver \
         (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)"
    );
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let subgroups = if adapter.features().contains(wgpu::Features::SUBGROUP) {
            format!(
                "yes, {}..={} lanes",
                info.subgroup_min_size, info.subgroup_max_size
            )
        } else {
            "no".to_string()
        };
        println!("{i}: {}", info.name);
        println!(
            "   backend: {:?}, type: {:?}, driver: {} {}",
            info.backend, info.device_type, info.driver, info.driver_info
        );
        let storage = limits.max_storage_buffer_binding_size;
        println!(
            "   max_storage_buffer_binding_size: {storage} bytes ({} MiB)",
            storage >> 20
        );
        println!(
            "   max_compute_workgroups_per_dimension: {}",
            limits.max_compute_workgroups_per_dimension
        );
        println!(
            "   max_compute_invocations_per_workgroup: {}",
            limits.max_compute_invocations_per_workgroup
        );
        println!("   subgroups: {subgroups}");
    }
    // Opening the device shows which adapter training would use (WGPU_ADAPTER_NAME picks).
    let gpu = wgcnn::Gpu::shared().context("opening the default adapter")?;
    println!("wgcnn uses: {}", gpu.describe());
    Ok(())
}
