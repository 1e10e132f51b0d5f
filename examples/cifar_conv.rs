//! Lecture experiment "cifar-conv": the MNIST recipe on colour images, with a hidden dense
//! layer; without pooling the flattened maps make it 1,845,354 parameters.
//!
//! `cargo run --release --example cifar_conv [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Writes runs/cifar-conv/.
use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("cifar-conv");
    let data = report::load_data(&cfg)?;

    let mut model = Sequential::new();
    model.add(
        Conv2D::new(64, 3)
            .activation(Relu)
            .input_shape(&[32, 32, 3]),
    )?;
    model.add(Flatten::new())?;
    model.add(Dense::new(32).activation(Relu))?;
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
