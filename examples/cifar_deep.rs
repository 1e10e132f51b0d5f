//! Lecture experiment "cifar-deep": two blocks of convolution ("same" padding) and max
//! pooling, 564,426 parameters (the lecture reaches test accuracy 0.70).
//!
//! `cargo run --release --example cifar_deep [-- --epochs N --limit N]`
//! Data: $WGCNN_DATA or ../shared/datasets. Writes runs/cifar-deep/.
use wgcnn::prelude::*;
use wgcnn::report::{self, RunConfig};

fn main() -> anyhow::Result<()> {
    let cfg = RunConfig::for_example("cifar-deep");
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

    // Summary, fit with a progress bar, scores, per-class report, pictures.
    report::train_model(&mut model, &data, &cfg)?;
    Ok(())
}
