//! Lecture experiment "cifar-deep": two blocks of convolution ("same" padding) and max
//! pooling, 564,426 parameters (the lecture reaches test accuracy 0.70).
//!
//! `cargo run --release --example cifar_deep [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Shows `fit`, `evaluate` and `predict`, then
//! saves the model to runs/cifar-deep/model.safetensors (`wgcnn train cifar-deep` trains the same
//! model and writes the full report and pictures).
#[path = "common/mod.rs"]
mod common;

use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("cifar-deep");
    let recipe = wgcnn::experiments::experiment("cifar-deep")?;
    let data = report::load_data(&cfg)?;

    let mut model = Sequential::new();
    model.add(
        Conv2D::new(64, 3)
            .padding(Same)
            .activation(Relu)
            .input_shape(&[32, 32, 3]),
    )?;
    model.add(MaxPooling2D::new(2))?;
    model.add(Conv2D::new(64, 3).padding(Same).activation(Relu))?;
    model.add(MaxPooling2D::new(2))?;
    model.add(Flatten::new())?;
    model.add(Dense::new(128).activation(Relu))?;
    model.add(Dense::new(10).activation(Softmax))?;
    model.compile(
        Optimizer::adam(),
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
    common::save(&mut model, "cifar-deep")?;
    Ok(())
}
