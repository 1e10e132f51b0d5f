//! Lecture experiment "mnist-dense": no convolution at all, the pixels go straight into a
//! softmax layer (the lecture reaches test accuracy 0.93).
//!
//! `cargo run --release --example mnist_dense [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Writes runs/mnist-dense/.
use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("mnist-dense");
    let data = report::load_data(&cfg)?;

    let mut model = Sequential::new();
    model.add(Flatten::new().input_shape(&[28, 28, 1]))?;
    model.add(Dense::new(10).activation(Softmax))?;
    model.compile(
        Optimizer::adam(),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;

    // Summary, fit with a progress bar, scores, per-class report, pictures.
    report::train_model(&mut model, &data, &cfg)?;
    Ok(())
}
