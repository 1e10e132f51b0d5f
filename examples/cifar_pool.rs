//! Lecture experiment "cifar-pool": max pooling after the convolution quarters the
//! flattened maps, 462,954 parameters (the lecture reaches train 0.78, test 0.65).
//!
//! `cargo run --release --example cifar_pool [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Writes runs/cifar-pool/.
use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("cifar-pool");
    let data = report::load_data(&cfg)?;

    let mut model = Sequential::new();
    model.set_seed(cfg.seed); // the recipe's (src/experiments.rs)
    model.add(
        Conv2D::new(64, 3)
            .activation(Relu)
            .input_shape(&[32, 32, 3]),
    )?;
    model.add(MaxPooling2D::new(2))?;
    model.add(Flatten::new())?;
    model.add(Dense::new(32).activation(Relu))?;
    model.add(Dense::new(10).activation(Softmax))?;
    model.compile(
        Optimizer::adam().with_lr(3e-4), // the recipe's: Keras' Adam at a lower rate
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;

    // The recipe also mirrors training images left-right at random (cfg.horizontal_flip
    // is None: the experiment's, on).
    // Summary, fit with a progress bar, scores, per-class report, pictures.
    report::train_model(&mut model, &data, &cfg)?;
    Ok(())
}
