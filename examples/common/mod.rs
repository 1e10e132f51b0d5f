//! What the lecture examples share after `fit`, `evaluate` and `predict`: a look at the
//! first test images' predictions and the model file. (`wgcnn train <experiment>` trains
//! the same models and writes the full report and pictures.)
use std::path::PathBuf;
use wgcnn::data::Dataset;
use wgcnn::experiments::Experiment;
use wgcnn::prelude::*;
use wgcnn::report::RunConfig;

/// `fit`'s settings for the experiment `recipe` (src/experiments.rs): its epochs (or
/// `--epochs`), batch size and augmentation, the test set as validation data as the
/// lecture does, a progress bar unless `--quiet`.
pub fn recipe_fit<'a>(cfg: &RunConfig, recipe: &Experiment, test: &'a Dataset) -> FitConfig<'a> {
    FitConfig {
        epochs: cfg.epochs.unwrap_or(recipe.epochs),
        batch_size: recipe.batch_size,
        validation_data: Some((&test.images, &test.labels)),
        horizontal_flip: recipe.horizontal_flip,
        translation: recipe.translation,
        verbose: cfg.verbose,
        ..Default::default()
    }
}

/// Prints the predicted and true class of the first `n` test images.
pub fn show_predictions(probabilities: &[f32], test: &Dataset, n: usize) {
    let classes = test.class_names.len();
    let predicted = wgcnn::metrics::argmax_rows(probabilities, classes);
    for (i, (&p, &l)) in predicted.iter().zip(&test.labels).take(n).enumerate() {
        let name = |c: u32| test.class_names[c as usize].as_str();
        let mark = if p == l { "✓" } else { "✗" };
        let prob = probabilities[i * classes + p as usize];
        println!(
            "test image {i}: predicted {} ({:.0} %), true {} {mark}",
            name(p),
            prob * 100.0,
            name(l)
        );
    }
}

/// Saves the whole model (weights, optimizer state, history) into a new run folder,
/// `runs/<name>/` (then `-2`, `-3`, …), and returns the file.
pub fn save(model: &mut Model, name: &str) -> anyhow::Result<PathBuf> {
    // What `wgcnn eval --model` and `predict --model` read to find the test set.
    let recipe = wgcnn::experiments::experiment(name)?;
    model.set_metadata("experiment", name);
    model.set_metadata("dataset", wgcnn::report::dataset_name(recipe.dataset));
    let file = wgcnn::report::claim_run_dir("", name)?.join("model.safetensors");
    model.save(&file)?;
    println!("saved {} (wgcnn eval --model {0})", file.display());
    Ok(file)
}
