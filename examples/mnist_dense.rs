//! Lecture experiment "mnist-dense": no convolution at all, the pixels go straight into a
//! softmax layer (the lecture reaches test accuracy 0.93).
//!
//! `cargo run --release --example mnist_dense [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Shows `fit`, `evaluate` and `predict`, then
//! saves the model to runs/mnist-dense/model.safetensors (`wgcnn train mnist-dense` trains the same
//! model and writes the full report and pictures).
#[path = "common/mod.rs"]
mod common;

use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("mnist-dense");
    let recipe = wgcnn::experiments::experiment("mnist-dense")?;
    let data = report::load_data(&cfg)?;

    let mut model = Sequential::new();
    model.add(Flatten::new().input_shape(&[28, 28, 1]))?;
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
    common::save(&mut model, "mnist-dense")?;
    Ok(())
}
