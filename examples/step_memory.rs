//! The GPU memory of a training step: parameters (with gradients and optimizer state),
//! activations, and the gradient buffers as planned by liveness against one buffer per
//! tensor.
//!
//! ```text
//! cargo run --release --example step_memory -- cifar-resnet20 --batch 128
//! ```

use anyhow::Result;
use clap::Parser;
use wgcnn::experiments::{NAMES, experiment};

#[derive(Parser)]
#[command(about = "GPU memory of one training step, planned and one buffer per tensor")]
struct Args {
    /// Experiments (default: all).
    models: Vec<String>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1048576.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let names: Vec<String> = if args.models.is_empty() {
        NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        args.models
    };
    println!(
        "| model | batch | parameters MiB | activations MiB | gradients MiB, planned | one per tensor | step total MiB, planned | one per tensor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for name in names {
        let e = experiment(&name)?;
        let mut m = e.model()?;
        m.compile(e.optimizer.clone(), e.task.loss(), &e.task.metrics())?;
        let Some(s) = m.step_memory(args.batch)? else {
            continue;
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            args.batch,
            mib(s.parameters),
            mib(s.activations),
            mib(s.gradients),
            mib(s.gradients_one_per_tensor),
            mib(s.total()),
            mib(s.total_one_per_tensor())
        );
    }
    Ok(())
}
