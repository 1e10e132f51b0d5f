//! Prints training and inference images/s of the lecture models on random data.
//! `cargo run --release --example throughput -- [model…] [--batch N] [--steps N] [--cpu]`
use std::time::Instant;
use wgcnn::experiments::{NAMES, experiment};
use wgcnn::prelude::*;
use wgcnn::testing::{random_labels, random_vec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let batch = flag("--batch", 32);
    let steps = flag("--steps", 30);
    let cpu = args.iter().any(|a| a == "--cpu");
    let names: Vec<&str> = NAMES.iter().copied().filter(|n| args.iter().any(|a| a == n)).collect();
    let names = if names.is_empty() { NAMES.to_vec() } else { names };
    if !cpu {
        println!("adapter: {}", wgcnn::Gpu::shared()?.describe());
    }
    println!("{:<12} {:>6} {:>12} {:>12}", "model", "batch", "train img/s", "infer img/s");
    for name in names {
        let exp = experiment(name)?;
        let mut m = exp.model()?;
        m.set_device(if cpu { Device::Cpu } else { Device::gpu()? }).set_seed(1);
        m.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
        let sample: usize = exp.input_shape().iter().product();
        let n = batch * steps;
        let x = random_vec(n * sample, 1).iter().map(|v| v.abs()).collect::<Vec<_>>();
        let y = random_labels(n, 10, 2);
        let cfg = FitConfig { epochs: 1, batch_size: batch, verbose: false, shuffle: false, ..Default::default() };
        m.fit(&x[..batch * 2 * sample], &y[..batch * 2], &cfg)?; // warm-up: shader compiles
        let t = Instant::now();
        m.fit(&x, &y, &cfg)?;
        let train = n as f64 / t.elapsed().as_secs_f64();
        m.predict(&x[..batch * sample], batch)?;
        let t = Instant::now();
        m.predict(&x, batch)?;
        let infer = n as f64 / t.elapsed().as_secs_f64();
        println!("{name:<12} {batch:>6} {train:>12.0} {infer:>12.0}");
        if args.iter().any(|a| a == "--profile") {
            for (k, t) in m.profile_step(batch, 5)? {
                println!("    {k:<24} {:>8.3} ms", t * 1e3);
            }
        }
    }
    Ok(())
}
