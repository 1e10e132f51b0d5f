//! What the JPEG-degraded CIFAR-10 test file costs a trained model.
//!
//! `../shared/datasets/README.md`: test images 0..999 are lossless copies, images
//! 1000..9999 were decoded from quality-75, 4:2:0 JPEGs (the training images are all
//! lossless). This evaluates saved weights on
//! (a) test images 0..999 as stored,
//! (b) the same 1000 images after our own quality-75, 4:2:0 JPEG round trip, and
//! (c) test images 1000..9999 as stored.
//! (a) against (b) is a paired measure of the JPEG penalty on identical images; (c) against
//! (a) is the same question on the file itself, with 1000-image sampling noise (±1.5 points).
//!
//! `cargo run --release --example jpeg_penalty -- cifar-pool runs/cifar-pool/weights.safetensors`
//! Data: $WGCNN_DATA or ../shared/datasets.
use anyhow::{Context, Result, bail, ensure};
use std::path::PathBuf;
use wgcnn::data::{self, Dataset};
use wgcnn::experiments::{DatasetKind, experiment};
use wgcnn::report::compiled_model;

const LOSSLESS: usize = 1000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, weights] = args.as_slice() else {
        bail!("usage: jpeg_penalty <cifar experiment> <weights.safetensors>");
    };
    let exp = experiment(name)?;
    ensure!(
        exp.dataset == DatasetKind::Cifar10,
        "{name} does not train on CIFAR-10"
    );
    let root = data::data_root(None);
    let test = data::cifar10(&root, false)?.test;
    let (mut model, _) = compiled_model(&exp, 0, None)?;
    model.load_weights(PathBuf::from(weights))?;

    let lossless = test.subset(0..LOSSLESS)?;
    let (jpeg, err) = jpeg_round_trip(&lossless, 75)?;
    let rest = test.subset(LOSSLESS..test.len())?;
    let mut acc = |d: &Dataset| -> Result<f32> { Ok(model.evaluate(&d.images, &d.labels)?.1) };
    let (a, b, c) = (acc(&lossless)?, acc(&jpeg)?, acc(&rest)?);
    let all = acc(&test)?;
    println!("{name}, weights {weights}");
    println!("test images 0..{LOSSLESS}, lossless:              {a:.4}");
    println!(
        "the same after a q75 4:2:0 JPEG round trip: {b:.4}  (mean abs pixel error {err:.2}/255)"
    );
    println!(
        "test images {LOSSLESS}..{}, JPEG-decoded file:    {c:.4}",
        test.len()
    );
    println!("whole test file:                            {all:.4}");
    println!(
        "JPEG penalty on identical images: {:+.2} points",
        100.0 * (b - a)
    );
    Ok(())
}

/// Every image encoded as a quality-`q` JPEG (4:2:0 chroma, `jpeg-encoder`'s default
/// below 90) and decoded again (`image`); also the mean absolute pixel error, in 1/255.
fn jpeg_round_trip(d: &Dataset, q: u8) -> Result<(Dataset, f64)> {
    ensure!(d.channels == 3, "RGB images expected");
    let (w, h) = (d.width as u16, d.height as u16);
    let mut out = d.clone();
    let mut err = 0f64;
    for (i, px) in out.images.chunks_mut(d.image_len()).enumerate() {
        let rgb: Vec<u8> = px.iter().map(|v| (v * 255.0).round() as u8).collect();
        let mut jpg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpg, q)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .with_context(|| format!("encoding test image {i}"))?;
        let back = image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg)
            .with_context(|| format!("decoding test image {i}"))?
            .to_rgb8();
        for (v, (&b, &o)) in px.iter_mut().zip(back.as_raw().iter().zip(&rgb)) {
            err += (f64::from(b) - f64::from(o)).abs();
            *v = f32::from(b) / 255.0;
        }
    }
    Ok((out, err / d.images.len() as f64))
}
