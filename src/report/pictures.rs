//! The pictures of a run, drawn with [`crate::viz`]: what the first layer learned, what
//! each convolution and pooling layer makes of one test image, the confusion matrix (a
//! classifier) or noisy, clean and denoised test images (a denoiser), and the training
//! curves.

use super::{RunFiles, TestReport};
use crate::data::Split;
use crate::layers::{Node, Op};
use crate::model::{History, Model};
use crate::viz::{self, Curves};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

/// `input.png` is upscaled (nearest neighbour) to at least this many pixels a side, so a
/// 28x28 digit becomes 224x224 and a 32x32 CIFAR image 224x224.
pub const INPUT_PX: u32 = 224;

/// Which test image `input.png` and the feature maps show.
pub const SAMPLE_INDEX: usize = 0;

/// Layers whose output is an image worth drawing: convolutions and poolings (not a global
/// pooling, whose output is one value per channel).
pub fn has_feature_maps(node: &Node) -> bool {
    matches!(
        node.op,
        Op::Conv { .. }
            | Op::ConvTranspose { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
    ) && node.out_shape.len() == 3
}

/// The upscale factor of `input.png` for an `h` x `w` image.
pub fn input_scale(h: usize, w: usize) -> u32 {
    viz::upscale(h.max(w), INPUT_PX)
}

/// How many test images `denoised.png` shows (one column each).
pub const DENOISED_SHOWN: usize = 8;

/// What the pictures of a finished run are drawn from.
pub(super) struct RunPictures<'a> {
    pub experiment: &'a str,
    pub data: &'a Split,
    /// What the model was fed for the test images (a denoiser's noisy copies).
    pub test_inputs: &'a [f32],
    pub test: &'a TestReport,
    pub history: &'a History,
    pub out_dir: &'a Path,
}

impl RunPictures<'_> {
    /// Writes every picture into the run directory and records the paths that depend on
    /// the model (filters, feature maps) in `files`.
    pub fn write(&self, model: &mut Model, files: &mut RunFiles) -> Result<()> {
        files.filters = first_layer_filters(model, &self.out_dir.join("filters.png"))?;
        files.feature_maps = sample_pictures(
            model,
            self.data,
            self.test_inputs,
            self.out_dir,
            &files.input,
        )?;
        if let Some(confusion) = &self.test.confusion {
            let title = format!(
                "{}: test set, accuracy {:.3}",
                self.experiment,
                confusion.accuracy()
            );
            let names = &self.data.test.class_names;
            let path = self.out_dir.join("confusion_matrix.png");
            viz::save_confusion_matrix(confusion, names, &title, &path)?;
            files.confusion_matrix = Some(path);
        } else {
            files.denoised = Some(self.denoised()?);
        }
        let curves = Curves {
            loss: &self.history.loss,
            accuracy: &self.history.accuracy,
            val_loss: &self.history.val_loss,
            val_accuracy: &self.history.val_accuracy,
            metric: self.history.metric_name(),
        };
        viz::save_training_curves(&curves, self.experiment, &files.training_curves)
    }
}

impl RunPictures<'_> {
    /// `denoised.png`: the first [`DENOISED_SHOWN`] test images as the model saw them,
    /// clean, and as it gave them back, one row each.
    fn denoised(&self) -> Result<PathBuf> {
        let test = &self.data.test;
        let per = test.height * test.width * test.channels;
        ensure!(
            test.channels == 1 && self.test.outputs.len() == test.images.len(),
            "the denoised picture needs grey images and one output image per test image"
        );
        let shown = DENOISED_SHOWN.min(test.len());
        let mut rows: Vec<&[f32]> = Vec::new();
        for source in [self.test_inputs, &test.images, &self.test.outputs] {
            rows.extend((0..shown).map(|i| &source[i * per..(i + 1) * per]));
        }
        let path = self.out_dir.join("denoised.png");
        let scale = viz::upscale(test.height.max(test.width), 84);
        viz::save_image_grid(&rows, shown, test.height, test.width, scale, &path)?;
        Ok(path)
    }
}

/// Draws the kernel of the first convolution (HWIO) to `path`; `None` when the model has
/// no convolution.
fn first_layer_filters(model: &Model, path: &Path) -> Result<Option<PathBuf>> {
    let Some(conv) = model
        .nodes()
        .iter()
        .find(|n| matches!(n.op, Op::Conv { .. }))
    else {
        return Ok(None);
    };
    let name = format!("{}/kernel", conv.name);
    let weights = model.get_weights()?;
    let kernel = weights
        .iter()
        .find(|w| w.name == name)
        .with_context(|| format!("the model has no weight '{name}'"))?;
    let [kh, kw, cin, cout] = kernel.shape[..] else {
        bail!("'{name}' has shape {:?}, expected 4-D HWIO", kernel.shape);
    };
    viz::save_filters(&kernel.values, kh, kw, cin, cout, path)?;
    Ok(Some(path.to_path_buf()))
}

/// Draws test image [`SAMPLE_INDEX`] to `input_path` and its feature maps after each
/// convolution and pooling layer to `dir/feature_maps_<layer>.png`.
fn sample_pictures(
    model: &mut Model,
    data: &Split,
    test_inputs: &[f32],
    dir: &Path,
    input_path: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    let test = &data.test;
    ensure!(
        !test.is_empty(),
        "the test set is empty; no sample image to draw"
    );
    let (h, w, c) = (test.height, test.width, test.channels);
    let per = h * w * c;
    let image = test_inputs
        .get(SAMPLE_INDEX * per..(SAMPLE_INDEX + 1) * per)
        .context("the sample test image")?;
    viz::save_image(image, h, w, c, input_scale(h, w), input_path)?;

    let drawn: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| has_feature_maps(n))
        .map(|n| n.name.clone())
        .collect();
    let mut written = Vec::new();
    for out in model.layer_outputs(image)? {
        if !drawn.contains(&out.name) {
            continue;
        }
        let [h, w, c] = out.shape[..] else {
            bail!(
                "layer '{}' outputs {:?}, expected [h, w, c]",
                out.name,
                out.shape
            );
        };
        let path = dir.join(format!("feature_maps_{}.png", out.name));
        viz::save_feature_maps(&out.values, h, w, c, &path)?;
        written.push((out.name, path));
    }
    Ok(written)
}
