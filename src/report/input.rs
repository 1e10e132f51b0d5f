//! `wgcnn predict`: PNG/JPEG files in, the experiment's top classes out (or, for a
//! denoiser, its output image written beside each input).

use super::{class_names, compiled_model};
use crate::experiments::{self, Experiment, Task};
use crate::model::Model;
use anyhow::{Context, Result, bail, ensure};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// How many classes [`predict_images`] reports per image.
pub const TOP_K: usize = 3;

/// The best classes for one image, most probable first, or where a denoiser's output went.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The input image.
    pub path: PathBuf,
    /// (class name, probability), [`TOP_K`] entries; empty for a denoiser.
    pub top: Vec<(String, f32)>,
    /// A denoiser's output image: `<image stem>.<experiment>.png` beside the input (never
    /// over an existing file).
    pub output: Option<PathBuf>,
}

/// Loads `path` as the model input of `shape` `[h, w, c]`: grey for `c == 1`, RGB for
/// `c == 3`, resized to `h` x `w` if needed, values in `[0, 1]` (HWC). `invert` turns dark
/// ink on a light page into MNIST's light digit on a dark background.
pub fn load_input_image(
    path: impl AsRef<Path>,
    shape: [usize; 3],
    invert: bool,
) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let [h, w, c] = shape;
    ensure!(path.exists(), "image file not found: {}", path.display());
    ensure!(path.is_file(), "{} is not a file", path.display());
    let img = image::open(path)
        .with_context(|| format!("{} is not a readable PNG or JPEG image", path.display()))?;
    let (h32, w32) = (u32::try_from(h)?, u32::try_from(w)?);
    let img = if (img.height(), img.width()) == (h32, w32) {
        img
    } else {
        // Exact size, not aspect-preserving: the model needs exactly h x w.
        img.resize_exact(w32, h32, FilterType::Triangle)
    };
    let bytes = match c {
        1 => img.to_luma8().into_raw(),
        3 => img.to_rgb8().into_raw(),
        _ => bail!("the model expects {c} channels; only grey (1) and RGB (3) images load"),
    };
    let values: Vec<f32> = bytes
        .iter()
        .map(|&b| {
            let v = f32::from(b) / 255.0;
            if invert { 1.0 - v } else { v }
        })
        .collect();
    ensure!(
        values.len() == h * w * c,
        "converted image has the wrong size"
    );
    Ok(values)
}

/// Loads `weights` into the experiment's model and returns, per image in order, its
/// [`TOP_K`] classes or why it could not be read: one bad file costs only its own
/// result. Every image is read before the GPU is set up; the error is for the model.
pub fn predict_images(
    experiment: &str,
    weights: &Path,
    images: &[PathBuf],
    invert: bool,
) -> Result<Vec<Result<Prediction>>> {
    let exp = experiments::experiment(experiment)?;
    ensure!(!images.is_empty(), "no image files given");
    let inputs = load_inputs(images, exp.input_shape(), invert);
    if inputs.iter().all(|i| i.is_err()) {
        // Nothing to classify: the images' errors, without touching weights or GPU.
        return Ok(inputs
            .into_iter()
            .filter_map(Result::err)
            .map(Err)
            .collect());
    }
    if !weights.is_file() {
        bail!(
            "weights file not found: {} (train first with `wgcnn train`, or pass --weights FILE)",
            weights.display()
        );
    }
    let (mut model, _) = compiled_model(&exp, 0, None)?;
    model.load_weights(weights)?;
    top_predictions(&mut model, inputs, images, &exp)
}

/// Like [`predict_images`], with a model file written by `wgcnn train` (which records
/// its experiment) instead of an experiment and its weights.
pub fn predict_images_with_model(
    model_file: &Path,
    images: &[PathBuf],
    invert: bool,
) -> Result<Vec<Result<Prediction>>> {
    ensure!(!images.is_empty(), "no image files given");
    let mut model = Model::load(model_file)?;
    let experiment = super::model_experiment(&model, model_file)?;
    if experiment == super::IMAGE_FOLDER {
        // Its own input size and class names, recorded in the file.
        let &[h, w, c] = model.input_shape().context("no input shape")? else {
            bail!("{} is not an image model", model_file.display());
        };
        let names: Vec<String> = model
            .metadata()
            .get("classes")
            .map(|n| n.lines().map(String::from).collect())
            .unwrap_or_default();
        let inputs = load_inputs(images, [h, w, c], invert);
        return predictions(&mut model, inputs, images, &names, None);
    }
    let exp = experiments::experiment(&experiment)?;
    let inputs = load_inputs(images, exp.input_shape(), invert);
    top_predictions(&mut model, inputs, images, &exp)
}

/// Each image as the model's input, or the error that kept it out.
fn load_inputs(images: &[PathBuf], shape: [usize; 3], invert: bool) -> Vec<Result<Vec<f32>>> {
    images
        .iter()
        .map(|p| load_input_image(p, shape, invert))
        .collect()
}

/// The predictions of the images that loaded, in one batch run, and the load errors of
/// the others, in the images' order.
fn top_predictions(
    model: &mut Model,
    inputs: Vec<Result<Vec<f32>>>,
    images: &[PathBuf],
    exp: &Experiment,
) -> Result<Vec<Result<Prediction>>> {
    let names = class_names(exp.dataset);
    let denoiser = match exp.task {
        Task::Classify => None,
        Task::Denoise { .. } => Some((exp.name, exp.input_shape())),
    };
    predictions(model, inputs, images, &names, denoiser)
}

/// The top classes (named by `names`) of the images that loaded, in one batch run, or a
/// `denoiser`'s (experiment, image shape) output images; and the load errors of the
/// others, in the images' order.
fn predictions(
    model: &mut Model,
    inputs: Vec<Result<Vec<f32>>>,
    images: &[PathBuf],
    names: &[String],
    denoiser: Option<(&str, [usize; 3])>,
) -> Result<Vec<Result<Prediction>>> {
    let classes = model.classes()?;
    let x: Vec<f32> = inputs.iter().flatten().flatten().copied().collect();
    let loaded = inputs.iter().filter(|i| i.is_ok()).count();
    let probs = if loaded == 0 {
        Vec::new()
    } else {
        model.predict(&x, loaded.min(32))?
    };
    let mut rows = probs.chunks_exact(classes);
    Ok(images
        .iter()
        .zip(inputs)
        .map(|(path, input)| {
            input?;
            let row = rows.next().context("a prediction for every loaded image")?;
            Ok(match denoiser {
                None => Prediction {
                    path: path.clone(),
                    top: top_k(row, names, TOP_K),
                    output: None,
                },
                Some((name, shape)) => Prediction {
                    path: path.clone(),
                    top: Vec::new(),
                    output: Some(write_output_image(path, name, row, shape)?),
                },
            })
        })
        .collect())
}

/// Writes a denoiser's output `image` (`[h, w, c]`, values in [0, 1]) to
/// `<stem>.<experiment>.png` beside `input`, refusing to replace an existing file.
fn write_output_image(
    input: &Path,
    experiment: &str,
    image: &[f32],
    [h, w, c]: [usize; 3],
) -> Result<PathBuf> {
    let stem = input
        .file_stem()
        .with_context(|| format!("{} has no file name", input.display()))?;
    let mut name = stem.to_os_string();
    name.push(format!(".{experiment}.png"));
    let out = input.with_file_name(name);
    ensure!(
        !out.exists(),
        "{} exists already; move it away to predict {} again",
        out.display(),
        input.display()
    );
    crate::viz::save_image(image, h, w, c, 1, &out)?;
    Ok(out)
}

/// The `k` largest entries of `row` with their class names, largest first.
fn top_k(row: &[f32], names: &[String], k: usize) -> Vec<(String, f32)> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            (
                names.get(i).cloned().unwrap_or_else(|| i.to_string()),
                row[i],
            )
        })
        .collect()
}
