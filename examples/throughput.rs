//! Training and inference throughput of the lecture models, as one Markdown table.
//!
//! ```text
//! cargo run --release --example throughput                       # all models, batch 32 and 128
//! cargo run --release --example throughput -- mnist-conv cifar-deep --batch 32 --repeats 3
//! cargo run --release --example throughput -- --cpu               # add the CPU reference path
//! cargo run --release --example throughput -- cifar-pool --profile # per-dispatch step profile
//! ```
//!
//! Every figure is the median of `--repeats` measurements. One measurement is `fit` over
//! `--steps` batches of random data (forward, loss, backward, optimizer update; no shuffle,
//! no progress bar; it ends with a read-back, so the GPU's work is inside the time) and
//! `predict` over the same batches. `--steps 0` (the default) picks about one second of
//! training per measurement from the warm-up. Shader compiles happen in a warm-up before:
//! each model and batch size runs on a device of its own, and the table's "first step"
//! column is that device's first training step (a cold start: every pipeline compiled,
//! unless Mesa's disk cache has them; `MESA_SHADER_CACHE_DISABLE=true` for the worst
//! case), "first predict" its first `predict` batch on a second fresh device.
//!
//! GFLOP/s counts the conv and dense passes only: forward = 2·B·OH·OW·CO·KH·KW·CI per
//! conv and 2·B·in·out per dense; a training step is forward + dX + dW = 3× forward for
//! layers that need dX (a layer with parameters before them), 2× for the others (the first).
//! Progress goes to stderr; stdout is the table, ready to paste.
//!
//! Under `mpirun` (built with `--features mpi`) it measures data-parallel training
//! instead: per model and global batch, the compute of a rank's shard alone, the
//! data-parallel step, the all-reduce in it and the communication left exposed, and a
//! projection of the scaling to more GPUs from those figures:
//!
//! ```text
//! mpirun -np 2 --bind-to none target/release/examples/throughput mnist-conv cifar-deep --batch 128
//! ```

use anyhow::{Result, bail};
use clap::Parser;
use std::time::Instant;
use wgcnn::experiments::{Experiment, NAMES, Task, experiment};
use wgcnn::layers::{Node, Op};
use wgcnn::model::Graph;
use wgcnn::prelude::*;
use wgcnn::testing::{random_labels, random_vec};

#[derive(Parser)]
#[command(about = "Training and inference images/s of the lecture models, as a Markdown table")]
struct Args {
    /// Models to measure (default: all of them, in the lecture's order).
    models: Vec<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    batch: Vec<usize>,
    /// Training steps (and predict batches) per measurement; 0 = about one second's worth.
    #[arg(long, default_value_t = 0)]
    steps: usize,
    /// Measurements per figure; the table shows their median.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Add columns for the CPU reference path (`Device::Cpu`).
    #[arg(long)]
    cpu: bool,
    /// Steps (and predict batches) per CPU measurement.
    #[arg(long, default_value_t = 1)]
    cpu_steps: usize,
    /// Measurements per CPU figure.
    #[arg(long, default_value_t = 3)]
    cpu_repeats: usize,
    /// Skip the CPU path where one training step takes longer than this (seconds).
    #[arg(long, default_value_t = 5.0)]
    cpu_limit: f64,
    /// After the table, the time of every dispatch of one GPU training step, each run alone
    /// (`Model::profile_step`, median of 5).
    #[arg(long)]
    profile: bool,
    /// PyTorch beside wgcnn in the same run: the peers script (e.g.
    /// ../shared/bench/gpu_peers.py), run first with `--python` for the same models and
    /// batch sizes; adds its train img/s and wgcnn's ratio to it.
    #[arg(long, value_name = "SCRIPT")]
    peers: Option<std::path::PathBuf>,
    /// The Python that runs `--peers` (one with torch installed).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Where the peers train: cpu or cuda [default: cpu on a CPU adapter, else cuda].
    #[arg(long)]
    peer_device: Option<String>,
    /// The peers' framework (a gpu_peers.py --frameworks entry).
    #[arg(long, default_value = "torch-eager")]
    peer_framework: String,
}

/// Forward FLOPs of one sample through `node` (convolutions and dense; 0 for the rest).
fn forward_flops(node: &Node) -> f64 {
    match node.op {
        Op::Conv { in_hwc, kernel, .. } => {
            let out: f64 = node.out_shape.iter().map(|&d| d as f64).product();
            2.0 * out * (kernel.0 * kernel.1 * in_hwc[2]) as f64
        }
        Op::DepthwiseConv { kernel, .. } => {
            let out: f64 = node.out_shape.iter().map(|&d| d as f64).product();
            2.0 * out * (kernel.0 * kernel.1) as f64
        }
        Op::SeparableConv { .. } => {
            let d = node.op.depthwise_shape(1).expect("separable op");
            let p = node.op.pointwise_shape(1).expect("separable op");
            d.flops() + p.flops()
        }
        Op::Dense { n_in, units, .. } => 2.0 * (n_in * units) as f64,
        _ => 0.0,
    }
}

/// (training step, inference) FLOPs per sample: a layer's backward costs twice its
/// forward when its input needs a gradient, once otherwise.
fn model_flops(graph: &Graph) -> (f64, f64) {
    let need = graph.needs_grad();
    let mut train = 0.0;
    let mut infer = 0.0;
    for node in &graph.nodes {
        let f = forward_flops(node);
        let needs_dx = node.inputs.iter().any(|&t| need[t]);
        train += f * if needs_dx { 3.0 } else { 2.0 };
        infer += f;
    }
    (train, infer)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `batches` batches of random images in [0, 1) and labels.
struct Data {
    x: Vec<f32>,
    y: Vec<u32>,
    task: Task,
    sample: usize,
    batch: usize,
}

impl Data {
    fn new(exp: &Experiment, batch: usize, batches: usize, seed: u64) -> Data {
        let sample: usize = exp.input_shape().iter().product();
        let n = batch * batches;
        Data {
            x: random_vec(n * sample, seed)
                .iter()
                .map(|v| v.abs())
                .collect(),
            y: random_labels(n, 10, seed + 1),
            task: exp.task,
            sample,
            batch,
        }
    }
    fn batches(&self) -> usize {
        self.y.len() / self.batch
    }
    /// Seconds for one `fit` over all batches.
    fn train(&self, m: &mut Model) -> Result<f64> {
        let cfg = FitConfig {
            epochs: 1,
            batch_size: self.batch,
            validation_data: None,
            shuffle: false,
            horizontal_flip: false,
            verbose: false,
            ..Default::default()
        };
        let t = Instant::now();
        m.fit(&self.x, self.task.targets(&self.x, &self.y), &cfg)?;
        Ok(t.elapsed().as_secs_f64())
    }
    /// Seconds for one `predict` over all batches.
    fn infer(&self, m: &mut Model) -> Result<f64> {
        let t = Instant::now();
        std::hint::black_box(m.predict(&self.x, self.batch)?);
        Ok(t.elapsed().as_secs_f64())
    }
    /// The first `n` batches as a dataset of their own.
    fn head(&self, n: usize) -> Data {
        let n = n.min(self.batches()) * self.batch;
        Data {
            x: self.x[..n * self.sample].to_vec(),
            y: self.y[..n].to_vec(),
            task: self.task,
            sample: self.sample,
            batch: self.batch,
        }
    }
}

fn compiled(exp: &Experiment, device: Device) -> Result<Model> {
    let mut m = exp.model()?;
    m.set_device(device).set_seed(1);
    m.compile(exp.optimizer.clone(), exp.task.loss(), &exp.task.metrics())?;
    Ok(m)
}

/// Median (train img/s, infer img/s) over `repeats` measurements on `data`.
fn measure(m: &mut Model, data: &Data, repeats: usize) -> Result<(f64, f64)> {
    let images = (data.batches() * data.batch) as f64;
    let mut train = Vec::new();
    let mut infer = Vec::new();
    for _ in 0..repeats.max(1) {
        train.push(images / data.train(m)?);
        infer.push(images / data.infer(m)?);
    }
    Ok((median(train), median(infer)))
}

/// Seconds per training step of `m` on `data`: the median of `repeats` `fit`s.
fn step_seconds(m: &mut Model, data: &Data, repeats: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        times.push(data.train(m)? / data.batches() as f64);
    }
    Ok(median(times))
}

/// Under `mpirun`: for each model and global batch, the compute of this rank's shard
/// alone, the data-parallel step, its all-reduce and the exposed communication (rank 0
/// prints; every rank measures, at the same time, as in training).
fn data_parallel(args: &Args, names: &[&str], dist: &Distributed) -> Result<()> {
    let n = dist.size();
    if dist.is_root() {
        println!(
            "**Adapter (rank 0):** {}\n",
            wgcnn::Gpu::shared()?.describe()
        );
        println!(
            "{n} ranks. Compute = one rank's shard (global batch / {n}) trained alone; step = \
             the data-parallel step (gradients read back, all-reduced, written back, then the \
             update); exposed = step − compute (nothing overlaps); medians of {} measurements. \
             Projection: weak scaling at this per-GPU batch, ring all-reduce at the bus \
             bandwidth measured here, nothing overlapped.\n",
            args.repeats.max(1)
        );
        println!(
            "| model | global batch | gradient MiB | compute ms | step ms | all-reduce ms | \
             exposed ms | bus GB/s | efficiency at 8 / 64 / 128 GPUs |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    }
    for name in names {
        let exp = experiment(name)?;
        for &batch in &args.batch {
            if batch % n != 0 {
                bail!("the global batch {batch} must divide over the {n} ranks");
            }
            let steps = if args.steps == 0 { 4 } else { args.steps };
            let device = || -> Result<Device> { Ok(Device::Gpu(wgcnn::Gpu::shared()?)) };
            let mut alone = compiled(&exp, device()?)?;
            let local = Data::new(&exp, batch / n, steps, 1);
            local.head(1).train(&mut alone)?; // compiles
            let compute = step_seconds(&mut alone, &local, args.repeats)?;
            drop(alone);
            let mut m = compiled(&exp, device()?)?;
            m.set_distributed(dist);
            let global = Data::new(&exp, batch, steps, 1);
            global.head(1).train(&mut m)?;
            let before = wgcnn::distributed::comm_stats();
            let step = step_seconds(&mut m, &global, args.repeats)?;
            let comm = wgcnn::distributed::comm_stats() - before;
            let measured_steps = (global.batches() * args.repeats.max(1)) as f64;
            let all_reduce = comm.seconds / measured_steps;
            let grad_bytes = (m.count_trainable_params() * 4) as f64;
            // Ring all-reduce moves 2(N − 1)/N of the buffer through each link.
            let ring = |ranks: usize| 2.0 * (ranks - 1) as f64 / ranks as f64;
            let bus = ring(n) * grad_bytes / all_reduce.max(1e-12);
            let exposed = (step - compute).max(0.0);
            let other = (exposed - all_reduce).max(0.0); // read-back, upload, 2nd submit
            let efficiency = |gpus: usize| {
                compute / (compute + other + ring(gpus) * grad_bytes / bus.max(1e-12))
            };
            if dist.is_root() {
                println!(
                    "| {name} | {batch} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.0} % / {:.0} % / {:.0} % |",
                    grad_bytes / (1 << 20) as f64,
                    compute * 1e3,
                    step * 1e3,
                    all_reduce * 1e3,
                    exposed * 1e3,
                    bus / 1e9,
                    efficiency(8) * 100.0,
                    efficiency(64) * 100.0,
                    efficiency(128) * 100.0
                );
            }
        }
    }
    Ok(())
}

/// The CPU cells of one row: measured, or why not.
enum CpuCells {
    Measured(f64, f64),
    Skipped(f64),
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dist = Distributed::init()?;
    for name in &args.models {
        if !NAMES.contains(&name.as_str()) {
            bail!("unknown model '{name}'; choose from {}", NAMES.join(", "));
        }
    }
    if args.batch.contains(&0) {
        bail!("batch sizes must be positive");
    }
    let names: Vec<&str> = if args.models.is_empty() {
        NAMES.to_vec()
    } else {
        NAMES
            .iter()
            .copied()
            .filter(|n| args.models.iter().any(|m| m == n))
            .collect()
    };
    if dist.size() > 1 {
        let result = data_parallel(&args, &names, &dist);
        return dist.ranks().or_abort(result);
    }
    let gpu = wgcnn::Gpu::shared()?;

    println!("**Adapter:** {}\n", gpu.describe());
    println!(
        "Shader cache: {}.\n",
        match std::env::var("MESA_SHADER_CACHE_DISABLE").as_deref() {
            Ok("true") | Ok("1") => "disabled (MESA_SHADER_CACHE_DISABLE): first steps are cold",
            _ => "Mesa's default (first steps are cold only if no earlier run filled it)",
        }
    );
    println!(
        "Training = `Model::fit` (forward, loss, backward, optimizer update) on random data, \
         inference = `predict`; images/s are medians of {} measurements of {} each{}. GFLOP/s \
         counts conv and dense passes (training step = forward + dX + dW).\n",
        args.repeats.max(1),
        if args.steps == 0 {
            "about 1 s".to_string()
        } else {
            format!("{} steps", args.steps)
        },
        if args.cpu {
            format!(
                "; CPU: medians of {} measurements of {} step(s), skipped over {} s per step",
                args.cpu_repeats.max(1),
                args.cpu_steps.max(1),
                args.cpu_limit
            )
        } else {
            String::new()
        }
    );
    // The peers first, so that both sets of figures come from the same sitting without
    // the two competing for the cores.
    let peers = match &args.peers {
        Some(script) => {
            let device = args.peer_device.clone().unwrap_or_else(|| {
                if gpu.info.device_type == wgpu::DeviceType::Cpu {
                    "cpu".into()
                } else {
                    "cuda".into()
                }
            });
            run_peers(&args, script, &names, &device)?
        }
        None => Default::default(),
    };
    let mut header = String::from(
        "| model | batch | first step s | first predict s | train img/s | infer img/s | train GFLOP/s | infer GFLOP/s |",
    );
    let mut rule = String::from("|---|---:|---:|---:|---:|---:|---:|---:|");
    if args.cpu {
        header.push_str(" CPU train img/s | CPU infer img/s |");
        rule.push_str("---:|---:|");
    }
    if args.peers.is_some() {
        header.push_str(&format!(
            " {} train img/s | wgcnn / it |",
            args.peer_framework
        ));
        rule.push_str("---:|---:|");
    }
    println!("{header}\n{rule}");

    let mut profiles = Vec::new();
    for name in names {
        let exp = experiment(name)?;
        // CPU seconds per step at the batch sizes measured so far (for estimates).
        let mut cpu_step: Vec<(usize, f64)> = Vec::new();
        for &batch in &args.batch {
            eprintln!("{name} batch {batch}: GPU warm-up (shader compiles)…");
            let warm = Data::new(&exp, batch, 2, 7);
            let fresh = || -> Result<Model> {
                compiled(&exp, Device::Gpu(std::sync::Arc::new(wgcnn::Gpu::new()?)))
            };
            let first_predict = warm.head(1).infer(&mut fresh()?)?;
            let mut m = fresh()?;
            let first = warm.head(1).train(&mut m)?;
            let step = warm.train(&mut m)? / 2.0;
            warm.head(1).infer(&mut m)?;
            let steps = match args.steps {
                0 => ((1.0 / step).ceil() as usize).clamp(4, 100),
                n => n,
            };
            eprintln!(
                "{name} batch {batch}: first step {:.0} ms, then {:.1} ms; measuring {} × {steps} steps…",
                first * 1e3,
                step * 1e3,
                args.repeats.max(1)
            );
            let data = Data::new(&exp, batch, steps, 1);
            let (train, infer) = measure(&mut m, &data, args.repeats)?;
            let (train_f, infer_f) = model_flops(m.graph());
            let mut row = format!(
                "| {name} | {batch} | {first:.2} | {first_predict:.2} | {train:.0} | {infer:.0} | {:.2} | {:.2} |",
                train * train_f / 1e9,
                infer * infer_f / 1e9
            );
            if args.profile {
                profiles.push((
                    name,
                    batch,
                    1e3 * batch as f64 / train,
                    m.profile_step(batch, 5)?,
                ));
            }
            drop(m);

            if args.cpu {
                let cells = cpu_cells(&args, &exp, batch, &data, &mut cpu_step)?;
                match cells {
                    CpuCells::Measured(t, i) => row.push_str(&format!(" {t:.0} | {i:.0} |")),
                    CpuCells::Skipped(s) => {
                        row.push_str(&format!(" skipped ({s:.1} s/step) | — |"))
                    }
                }
            }
            if args.peers.is_some() {
                match peers.get(&(name.to_string(), batch)) {
                    Some(p) => row.push_str(&format!(" {p:.0} | {:.2} |", train / p)),
                    None => row.push_str(" — | — |"),
                }
            }
            println!("{row}");
        }
    }

    for (name, batch, step_ms, dispatches) in profiles {
        let total: f64 = dispatches.iter().map(|t| t.warm_s).sum::<f64>() * 1e3;
        println!(
            "\n**{name}, batch {batch}**: one training step, each dispatch run alone \
             (median of 5); sum {total:.2} ms, measured step {step_ms:.2} ms\n"
        );
        println!("| # | kernel | family | ms | share |\n|---:|---|---|---:|---:|");
        for (i, t) in dispatches.iter().enumerate() {
            println!(
                "| {} | {} | {:?} | {:.3} | {:.1}% |",
                i + 1,
                t.kernel.name(),
                t.variant,
                t.warm_s * 1e3,
                100.0 * t.warm_s * 1e3 / total.max(1e-12)
            );
        }
    }
    Ok(())
}

/// Measures the CPU reference path at `batch`, or skips it when one step (estimated from a
/// smaller batch, else timed) exceeds the limit.
fn cpu_cells(
    args: &Args,
    exp: &Experiment,
    batch: usize,
    data: &Data,
    cpu_step: &mut Vec<(usize, f64)>,
) -> Result<CpuCells> {
    if let Some(&(b, s)) = cpu_step
        .iter()
        .filter(|(b, _)| *b < batch)
        .max_by_key(|(b, _)| *b)
    {
        let estimate = s * batch as f64 / b as f64;
        if estimate > args.cpu_limit {
            eprintln!(
                "{} batch {batch}: CPU skipped (≈{estimate:.1} s/step, from batch {b})",
                exp.name
            );
            return Ok(CpuCells::Skipped(estimate));
        }
    }
    eprintln!("{} batch {batch}: CPU reference path…", exp.name);
    let mut m = compiled(exp, Device::Cpu)?;
    let probe = data.head(1).train(&mut m)?;
    cpu_step.push((batch, probe));
    if probe > args.cpu_limit {
        eprintln!(
            "{} batch {batch}: CPU skipped ({probe:.1} s/step)",
            exp.name
        );
        return Ok(CpuCells::Skipped(probe));
    }
    let (t, i) = measure(&mut m, &data.head(args.cpu_steps.max(1)), args.cpu_repeats)?;
    Ok(CpuCells::Measured(t, i))
}

/// Runs the peers script for `names` at the batch sizes of `args`; its train img/s by
/// (model, batch). Models it does not know are left out of its run.
fn run_peers(
    args: &Args,
    script: &std::path::Path,
    names: &[&str],
    device: &str,
) -> Result<std::collections::HashMap<(String, usize), f64>> {
    let known = [
        "mnist-dense",
        "mnist-conv",
        "cifar-conv",
        "cifar-pool",
        "cifar-deep",
    ];
    let models: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| known.contains(n))
        .collect();
    let batches: Vec<String> = args.batch.iter().map(usize::to_string).collect();
    eprintln!("peers: {} on {device} for {models:?}…", args.peer_framework);
    let out = std::process::Command::new(&args.python)
        .arg(script)
        .args(["--device", device, "--frameworks", &args.peer_framework])
        .args(["--batch", &batches.join(","), "--models"])
        .args(&models)
        .output()
        .map_err(|e| anyhow::anyhow!("running {} {}: {e}", args.python, script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the peers script failed:\n{}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("{}", text.lines().next().unwrap_or("").trim());
    println!();
    let mut found = std::collections::HashMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, model, batch, value, ..] = cells[..]
            && let (Ok(b), Ok(v)) = (batch.parse(), value.replace(',', "").parse::<f64>())
        {
            found.insert((model.to_string(), b), v);
        }
    }
    Ok(found)
}
