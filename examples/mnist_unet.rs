//! Beyond the lecture, "mnist-unet": a denoising U-Net autoencoder on MNIST. The input is
//! an image plus Gaussian noise (σ 0.3, clipped to [0, 1]), the target the clean image;
//! 3×3 'same' relu convolutions Conv2D(16) → MaxPooling2D(2) → Conv2D(32) →
//! MaxPooling2D(2) → Conv2D(64) → Conv2DTranspose(32, 2, strides 2) → Concatenate with
//! the Conv2D(32) output → Conv2D(32) → UpSampling2D(2) → Concatenate with the
//! Conv2D(16) output → Conv2D(16) → Conv2D(1, 1, sigmoid): 56,929 parameters (Keras 3's
//! count), binary cross-entropy, Adam 1e-3, batch 32. The run folder gets the test loss
//! and PSNR in its report and `denoised.png` (noisy / clean / reconstructed).
//!
//! `cargo run --release --example mnist_unet [-- --epochs N --limit N --limit-test N]`
//! (the same as `wgcnn train mnist-unet`). Data: $WGCNN_DATA or ../shared/datasets.
//! Writes runs/mnist-unet/ (then -2, -3, …). Keras 3's side: `examples/keras/mnist_unet.py`.
use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("mnist-unet");
    // The clean images; the recipe (src/experiments.rs) adds the noise to the inputs and
    // trains against the clean images.
    let data = report::load_data(&cfg)?;

    // The network, in the functional API: see `denoising_unet` in src/experiments.rs.
    let mut model = wgcnn::experiments::denoising_unet(&[28, 28, 1])?;
    model.set_seed(cfg.seed);
    model.compile(
        Optimizer::adam(),
        Loss::binary_crossentropy(),
        &[Metric::BinaryAccuracy],
    )?;

    // Summary, fit with a progress bar, scores and PSNR, pictures.
    report::train_model(&mut model, &data, &cfg)?;
    Ok(())
}
