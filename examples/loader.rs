//! The data loader's figures ([`wgcnn::data::Source`] through `Model::fit_source`):
//!
//! ```text
//! # a folder of N generated 64×64 RGB images (random pixels; png or jpg)
//! cargo run --release --example loader -- make /tmp/folder --count 100000 --format png
//! # decode rate of a folder (img/s) by worker count, beside nothing else
//! cargo run --release --example loader -- decode /tmp/folder --workers 1,2
//! # cifar-deep from CIFAR-10's bytes through the loader against the same images in memory
//! cargo run --release --example loader -- cifar --steps 60
//! # peak RSS of training a cifar-deep-sized model from a folder for S steps
//! cargo run --release --example loader -- rss /tmp/folder --steps 200
//! ```
//! Data: $WGCNN_DATA or ../shared/datasets. Progress on stderr, results on stdout.
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use image::{ImageFormat, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;
use wgcnn::data::{FolderOptions, ImageFolder, Source};
use wgcnn::prelude::*;

#[derive(Parser)]
#[command(about = "Figures of wgcnn's data loader")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes DIR/class<k>/<i>.<format>: COUNT 64×64 RGB images in 10 classes.
    Make {
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value = "png")]
        format: String,
    },
    /// Decodes every image of DIR with each worker count; img/s.
    Decode {
        dir: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
    },
    /// cifar-deep on CIFAR-10: in memory against the loader (workers 1 and 2), img/s.
    Cifar {
        #[arg(long, default_value_t = 60)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Trains a cifar-deep-sized model on DIR (64×64) for STEPS steps; peak RSS.
    Rss {
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        steps: usize,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Make { dir, count, format } => make(dir, count, &format),
        Command::Decode { dir, workers } => decode(dir, &workers),
        Command::Cifar { steps, repeats } => cifar(steps, repeats),
        Command::Rss { dir, steps } => rss(dir, steps),
    }
}

fn make(dir: PathBuf, count: usize, format: &str) -> Result<()> {
    let fmt = match format {
        "png" => ImageFormat::Png,
        "jpg" | "jpeg" => ImageFormat::Jpeg,
        other => bail!("format {other}: png or jpg"),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t = Instant::now();
    for i in 0..count {
        let class = dir.join(format!("class{}", i % 10));
        std::fs::create_dir_all(&class)?;
        // Smooth gradients with noise: compresses like a photo more than pure noise does.
        let (a, b): (u8, u8) = (rng.random(), rng.random());
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let n: u8 = rng.random_range(0..32);
            Rgb([a.wrapping_add(x as u8 * 2), b.wrapping_add(y as u8 * 2), n])
        });
        img.save_with_format(class.join(format!("{i:06}.{format}")), fmt)?;
    }
    eprintln!("wrote {count} images in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn decode(dir: PathBuf, workers: &[usize]) -> Result<()> {
    let folder = ImageFolder::open(&dir, &FolderOptions::new(64, 64))?;
    let n = folder.len();
    println!("| workers | images | seconds | img/s |\n|---:|---:|---:|---:|");
    for &w in workers {
        let w = w.max(1);
        let t = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..w)
                .map(|k| {
                    let folder = &folder;
                    s.spawn(move || -> Result<()> {
                        let mut px = vec![0u8; 64 * 64 * 3];
                        for i in (k..n).step_by(w) {
                            folder.load(i, &mut px)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a decoder panicked"))??;
            }
            Ok(())
        })?;
        let s = t.elapsed().as_secs_f64();
        println!("| {w} | {n} | {s:.2} | {:.0} |", n as f64 / s);
    }
    Ok(())
}

fn cifar_deep(input: [usize; 3]) -> Result<Model> {
    let mut m = Sequential::new();
    m.add(Input::new(&input))?;
    m.add(Conv2D::new(64, 3).padding(Same).activation(Relu))?;
    m.add(MaxPooling2D::new(2))?;
    m.add(Conv2D::new(64, 3).padding(Same).activation(Relu))?;
    m.add(MaxPooling2D::new(2))?;
    m.add(Flatten::new())?;
    m.add(Dense::new(128).activation(Relu))?;
    m.add(Dense::new(10).activation(Softmax))?;
    let mut m = m.into_model();
    m.set_seed(1);
    m.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

fn cifar(steps: usize, repeats: usize) -> Result<()> {
    let root = std::env::var_os("WGCNN_DATA")
        .map_or_else(|| PathBuf::from("../shared/datasets"), PathBuf::from);
    let batch = 64;
    let train = wgcnn::data::cifar10(&root, false)?
        .train
        .subset(0..steps * batch)?;
    let bytes = train.to_bytes()?;
    let cfg = |workers| FitConfig {
        epochs: 1,
        batch_size: batch,
        verbose: false,
        horizontal_flip: true,
        workers,
        ..Default::default()
    };
    let mut m = cifar_deep([32, 32, 3])?;
    m.fit(&train.images, &train.labels, &cfg(0))?; // compiles
    println!(
        "| cifar-deep, batch {batch}, {steps} steps, flips | img/s (median of {repeats}) | of in-memory |\n|---|---:|---:|"
    );
    let mut rate = |f: &mut dyn FnMut(&mut Model) -> Result<()>| -> Result<f64> {
        let mut v = Vec::new();
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            f(&mut m)?;
            v.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let memory = rate(&mut |m| m.fit(&train.images, &train.labels, &cfg(0)).map(drop))?;
    println!("| in memory (f32) | {memory:.0} | 100 % |");
    for workers in [0, 1, 2] {
        let r = rate(&mut |m| m.fit_source(&bytes, &cfg(workers)).map(drop))?;
        println!(
            "| loader, {workers} worker(s) | {r:.0} | {:.1} % |",
            100.0 * r / memory
        );
    }
    Ok(())
}

fn rss(dir: PathBuf, steps: usize) -> Result<()> {
    let t = Instant::now();
    let folder = ImageFolder::open(&dir, &FolderOptions::new(64, 64))?;
    let listed = t.elapsed().as_secs_f64();
    let mut m = cifar_deep([64, 64, 3])?;
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 64,
        workers: 2,
        verbose: false,
        callbacks: vec![wgcnn::callbacks::Callback::on_train_batch_end(
            steps,
            |_, _, ctx| {
                ctx.stop_training();
                Ok(())
            },
        )],
        ..Default::default()
    };
    let t = Instant::now();
    m.fit_source(&folder, &cfg)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} images listed in {listed:.1} s; {steps} steps of 64 in {secs:.0} s ({:.0} img/s); \
         peak RSS {:.0} MiB (VmHWM)",
        folder.len(),
        (steps * 64) as f64 / secs,
        wgcnn::testing::proc_status_kib("VmHWM") as f64 / 1024.0
    );
    Ok(())
}
