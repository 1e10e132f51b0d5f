//! Whole-model benchmarks: images/s of a full training step (forward, loss, backward,
//! optimizer update, through `Model::fit`) and of inference (`Model::predict`) for
//! every lecture model (`wgcnn::experiments`) at batch 32 and 128, the GPU next to the CPU
//! reference path (`Device::Cpu`) in one criterion group.
//!
//! ```text
//! cargo bench --bench train                                 # everything
//! cargo bench --bench train -- --warm-up-time 1 --measurement-time 2 'train/mnist-conv'
//! WGCNN_BENCH_CPU=0 cargo bench --bench train               # GPU only
//! ```
//!
//! Groups: `train/MODEL/bBATCH` and `infer/MODEL/bBATCH`, functions `gpu` and `cpu`. One
//! iteration is one batch, and groups declare `Throughput::Elements(batch)`, so criterion's
//! `elem/s` column reads as **images/s**.
//!
//! How it is timed: each model trains on a fixed random dataset of 8 batches (shuffle and
//! progress bar off); N iterations are `fit` calls covering exactly N steps (whole epochs of
//! the 8 batches, then the remainder). `fit` reads its loss back at the end of every call,
//! so the GPU's work is inside the timed region, and it uploads each batch as training
//! does. Inference is `predict` over N batches (each reads its outputs back). Every model
//! and batch size gets a device of its own, so its first training step and first predict
//! batch are a cold start (every shader compiled; Mesa's disk cache still serves what an
//! earlier run put there unless `MESA_SHADER_CACHE_DISABLE=true`): they run before
//! measuring and are printed to stderr (`[first step] …`).
//!
//! The CPU path runs 10 samples of one iteration each (flat sampling); where one step takes
//! over 5 s (`WGCNN_BENCH_CPU_LIMIT_S`) it is skipped with a `[cpu skipped]` line on stderr
//! (batch 128 is first estimated as 4× batch 32, and skipped without running when that is
//! already over the limit).

mod common;

use common::{
    CpuGate, configure_cpu, cpu_enabled, cpu_gate, cpu_limit_s, listing, ms, report_skip, selected,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wgcnn::experiments::{Experiment, NAMES, Task, experiment};
use wgcnn::prelude::*;
use wgcnn::testing::{random_labels, random_vec};

const BATCHES: [usize; 2] = [32, 128];
/// Seconds one CPU training step may take.
const CPU_LIMIT_S: f64 = 5.0;
/// Batches in the fixed dataset every model trains on.
const DATASET_BATCHES: usize = 8;

/// A fixed random dataset of `DATASET_BATCHES` batches.
struct Data {
    x: Vec<f32>,
    y: Vec<u32>,
    /// Classes or clean images (see [`Task::targets`]).
    task: Task,
    /// Values per sample.
    sample: usize,
    batch: usize,
}

impl Data {
    fn new(exp: &Experiment, batch: usize) -> Data {
        let sample: usize = exp.input_shape().iter().product();
        let n = batch * DATASET_BATCHES;
        Data {
            x: random_vec(n * sample, 1).iter().map(|v| v.abs()).collect(),
            y: random_labels(n, 10, 2),
            task: exp.task,
            sample,
            batch,
        }
    }

    /// The first `batches` batches.
    fn take(&self, batches: usize) -> (&[f32], &[u32]) {
        let n = batches * self.batch;
        (&self.x[..n * self.sample], &self.y[..n])
    }
}

fn compiled(exp: &Experiment, device: Device) -> Model {
    let mut m = exp.model().expect("lecture model");
    m.set_device(device).set_seed(1);
    m.compile(exp.optimizer.clone(), exp.task.loss(), &exp.task.metrics())
        .expect("compile");
    m
}

/// Exactly `steps` training steps of `data.batch` images: whole epochs over the dataset,
/// then the remainder. Each `fit` call ends with a read-back (a device wait).
fn train_steps(m: &mut Model, data: &Data, steps: u64) {
    let full = (steps / DATASET_BATCHES as u64) as usize;
    let rest = (steps % DATASET_BATCHES as u64) as usize;
    let cfg = |epochs| FitConfig {
        epochs,
        batch_size: data.batch,
        validation_data: None,
        shuffle: false,
        horizontal_flip: false,
        verbose: false,
        ..Default::default()
    };
    if full > 0 {
        let (x, y) = data.take(DATASET_BATCHES);
        m.fit(x, data.task.targets(x, y), &cfg(full)).expect("fit");
    }
    if rest > 0 {
        let (x, y) = data.take(rest);
        m.fit(x, data.task.targets(x, y), &cfg(1)).expect("fit");
    }
}

/// `predict` over exactly `steps` batches.
fn infer_steps(m: &mut Model, data: &Data, steps: u64) {
    let mut left = steps as usize;
    while left > 0 {
        let n = left.min(DATASET_BATCHES);
        let (x, _) = data.take(n);
        std::hint::black_box(m.predict(x, data.batch).expect("predict"));
        left -= n;
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Train,
    Infer,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Train => "train",
            Pass::Infer => "infer",
        }
    }
    fn steps(self, m: &mut Model, data: &Data, steps: u64) {
        match self {
            Pass::Train => train_steps(m, data, steps),
            Pass::Infer => infer_steps(m, data, steps),
        }
    }
}

fn models(c: &mut Criterion) {
    let cpu_on = cpu_enabled();
    let limit = cpu_limit_s(CPU_LIMIT_S);
    if !listing() {
        let gpu = wgcnn::Gpu::shared().expect("a GPU adapter (lavapipe on CPU-only machines)");
        eprintln!("adapter: {}", gpu.describe());
        eprintln!(
            "units: elem/s = images/s. CPU reference path: {}",
            if cpu_on {
                format!("on, skipped above {limit} s per step")
            } else {
                "off (WGCNN_BENCH_CPU=0)".into()
            }
        );
    }
    // Probe seconds per CPU iteration, by group, for the batch-128 estimates.
    let mut cpu_secs: HashMap<String, f64> = HashMap::new();
    for name in NAMES {
        let exp = experiment(name).expect("experiment");
        for batch in BATCHES {
            let data = Data::new(&exp, batch);
            let mut gpu_model: Option<Model> = None;
            let mut cpu_model: Option<Model> = None;
            for pass in [Pass::Train, Pass::Infer] {
                let group_name = format!("{}/{name}/b{batch}", pass.name());
                let mut group = c.benchmark_group(&group_name);
                group.throughput(Throughput::Elements(batch as u64));
                if listing() {
                    group.bench_function("gpu", |b| b.iter(|| ()));
                    if cpu_on {
                        group.bench_function("cpu", |b| b.iter(|| ()));
                    }
                    group.finish();
                    continue;
                }

                if selected(&format!("{group_name}/gpu")) {
                    // A fresh device: the first step compiles every pipeline it uses (the
                    // inference pass, on the same device, compiles only what training did not).
                    let m = gpu_model.get_or_insert_with(|| {
                        let gpu = std::sync::Arc::new(wgcnn::Gpu::new().expect("GPU device"));
                        compiled(&exp, Device::Gpu(gpu))
                    });
                    let first = timed(|| pass.steps(m, &data, 1));
                    let second = timed(|| pass.steps(m, &data, 1));
                    eprintln!(
                        "[first step] {group_name}/gpu: {:.1} ms (cold start: fresh device), then {:.1} ms",
                        ms(first),
                        ms(second)
                    );
                    group.bench_function("gpu", |b| {
                        b.iter_custom(|iters| timed(|| pass.steps(m, &data, iters)))
                    });
                }

                let id = format!("{group_name}/cpu");
                if cpu_on && selected(&id) {
                    let m = cpu_model.get_or_insert_with(|| compiled(&exp, Device::Cpu));
                    let estimate = (batch != 32)
                        .then(|| {
                            cpu_secs
                                .get(&format!("{}/{name}/b32", pass.name()))
                                .map(|t| t * batch as f64 / 32.0)
                        })
                        .flatten();
                    match cpu_gate(limit, estimate, &mut || pass.steps(m, &data, 1)) {
                        CpuGate::Run(took) => {
                            cpu_secs.insert(group_name.clone(), took.as_secs_f64());
                            configure_cpu(&mut group, took);
                            group.bench_function("cpu", |b| {
                                b.iter_custom(|iters| timed(|| pass.steps(m, &data, iters)))
                            });
                        }
                        CpuGate::Skip(why, took) => {
                            if let Some(took) = took {
                                cpu_secs.insert(group_name.clone(), took.as_secs_f64());
                            }
                            report_skip(&id, &why)
                        }
                    }
                }
                group.finish();
            }
        }
    }
}

fn config() -> Criterion {
    // Short defaults (the command line overrides them): a step takes 1–500 ms on lavapipe.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = models
}
criterion_main!(benches);
