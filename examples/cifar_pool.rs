//! Lecture experiment "cifar-pool": max pooling after the convolution quarters the
//! flattened maps, 462,954 parameters (the lecture reaches train 0.78, test 0.65).
//!
//! `cargo run --release --example cifar_pool [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Shows `fit`, `evaluate` and `predict`, then
//! saves the model to runs/cifar-pool/model.safetensors (`wgcnn train cifar-pool` trains the same
//! model and writes the full report and pictures).
#[path = "common/mod.rs"]
mod common;

use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("cifar-pool");
    let recipe = wgcnn::experiments::experiment("cifar-pool")?;
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

    print!("{}", model.summary());
    let (train, test) = (&data.train, &data.test);
    let fit = common::recipe_fit(&cfg, &recipe, test);
    let history = model.fit(&train.images, &train.labels, &fit)?;
    println!("training accuracy by epoch: {:?}", history.accuracy);
    let (loss, accuracy) = model.evaluate(&test.images, &test.labels)?;
    println!("test loss {loss:.4}, test accuracy {accuracy:.4}");
    let probabilities = model.predict(&test.images, 64)?;
    common::show_predictions(&probabilities, test, 8);
    common::save(&mut model, "cifar-pool")?;
    Ok(())
}
