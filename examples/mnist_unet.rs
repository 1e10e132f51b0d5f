//! Beyond the lecture, "mnist-unet": a denoising U-Net autoencoder on MNIST. The input is
//! an image plus Gaussian noise (σ 0.3, clipped to [0, 1]), the target the clean image;
//! 3×3 'same' relu convolutions Conv2D(16) → MaxPooling2D(2) → Conv2D(32) →
//! MaxPooling2D(2) → Conv2D(64) → Conv2DTranspose(32, 2, strides 2) → Concatenate with
//! the Conv2D(32) output → Conv2D(32) → UpSampling2D(2) → Concatenate with the
//! Conv2D(16) output → Conv2D(16) → Conv2D(1, 1, sigmoid): 56,929 parameters (Keras 3's
//! count), binary cross-entropy, Adam 1e-3, batch 32. Reports the test loss and PSNR and
//! writes a picture grid (noisy / clean / reconstructed) into the run folder.
//!
//! `cargo run --release --example mnist_unet [-- --epochs N --limit N --limit-test N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Writes runs/mnist-unet/ (then -2, -3, …).
//! Keras 3's side: `examples/keras/mnist_unet.py`.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgcnn::prelude::*;
use wgcnn::report::{RunConfig, claim_run_dir};

/// The images plus N(0, σ²) noise drawn from `seed`, clipped to [0, 1].
fn noisy(images: &[f32], sigma: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    images
        .iter()
        .map(|&v| {
            // Box–Muller.
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random_range(0.0..1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            (v + sigma * z).clamp(0.0, 1.0)
        })
        .collect()
}

/// Mean over images of 10·log10(1 / MSE) (peak 1).
fn psnr(pred: &[f32], clean: &[f32], per: usize) -> f64 {
    let (sum, n) = pred
        .chunks(per)
        .zip(clean.chunks(per))
        .map(|(p, c)| {
            let mse = p
                .iter()
                .zip(c)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                / per as f64;
            10.0 * (1.0 / mse.max(1e-12)).log10()
        })
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("mnist-unet");
    let split = wgcnn::data::mnist(&cfg.data_root, false)?;
    let cut = |d: wgcnn::data::Dataset, limit: Option<usize>| match limit {
        Some(n) => d.subset(0..n.min(d.len())),
        None => Ok(d),
    };
    let (train, test) = (
        cut(split.train, cfg.limit_train)?,
        cut(split.test, cfg.limit_test)?,
    );
    let epochs = cfg.epochs.unwrap_or(1);
    let (x, xt) = (noisy(&train.images, 0.3, 1), noisy(&test.images, 0.3, 2));

    let mut model = wgcnn::experiments::denoising_unet(&[28, 28, 1])?;
    model.set_seed(0);
    println!("{}", model.summary());
    model.compile(Optimizer::adam(), Loss::binary_crossentropy(), &[])?;
    let fit = FitConfig {
        epochs,
        batch_size: 32,
        verbose: cfg.verbose,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let history = model.fit(&x, &train.images, &fit)?;
    let seconds = start.elapsed().as_secs_f64();
    let (loss, acc) = model.evaluate(&xt, &test.images)?;
    let pred = model.predict(&xt, 32)?;
    let per = 28 * 28;
    let (db, noisy_db) = (psnr(&pred, &test.images, per), psnr(&xt, &test.images, per));

    let dir = claim_run_dir(std::path::Path::new("."), "mnist-unet")?;
    let shown = 8.min(test.len());
    let mut rows: Vec<&[f32]> = Vec::new();
    for source in [&xt, &test.images, &pred] {
        rows.extend((0..shown).map(|i| &source[i * per..(i + 1) * per]));
    }
    wgcnn::viz::save_image_grid(&rows, shown, 28, 28, 3, &dir.join("denoised.png"))?;
    let summary = format!(
        "mnist-unet: {} parameters, {epochs} epoch(s) × batch 32 on {} images, {:.0} s\n\
         train loss per epoch {:?}\n\
         test ({} images): loss {loss:.4}, binary accuracy {acc:.4}, PSNR {db:.2} dB \
         (noisy input: {noisy_db:.2} dB)\n",
        model.count_params(),
        train.len(),
        seconds,
        history.loss,
        test.len(),
    );
    print!("{summary}");
    wgcnn::io::write_atomic(dir.join("results.txt"), summary.as_bytes())?;
    model.save(dir.join("model.safetensors"))?;
    println!("wrote {}", dir.display());
    Ok(())
}
