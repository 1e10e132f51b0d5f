//! Trains lecture experiments on slices of the real MNIST (from `../shared/datasets`, or
//! `WGCNN_DATA`) and checks what a run leaves behind: scores well above chance, the report
//! text, `history.csv`, every picture at its layout's size, and weights that reload to the
//! same test accuracy and predict the sample image.

use std::path::{Path, PathBuf};
use wgcnn::report::{self, RunConfig, RunReport, pictures};
use wgcnn::viz;

mod common;

/// The folder holding `mnist/`; `None` (skip) when it is missing outside CI.
fn data_root() -> Option<PathBuf> {
    common::mnist_root()
}

/// A small, quiet, offline run of `experiment` into a fresh folder.
fn small_run(experiment: &str, root: PathBuf, train: usize, test: usize) -> RunConfig {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("run-{experiment}"));
    let _ = std::fs::remove_dir_all(&out_dir);
    RunConfig {
        epochs: Some(1),
        seed: 1,
        data_root: root,
        out_dir: Some(out_dir),
        limit_train: Some(train),
        limit_test: Some(test),
        verbose: false,
        download: false,
        ..RunConfig::new(experiment)
    }
}

/// Asserts that `path` is a PNG of `size` (width, height) that decodes.
fn assert_png(path: &Path, size: (u32, u32)) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (img.width(), img.height()),
        size,
        "{} has the wrong size",
        path.display()
    );
}

/// What every classifier's run must have written, whatever the model.
fn assert_common_files(run: &RunReport, epochs: usize) {
    assert_run_files(run, epochs, "accuracy");
    let cm = viz::confusion_matrix_layout(10);
    let confusion = run
        .files
        .confusion_matrix
        .as_deref()
        .expect("a confusion matrix");
    assert_png(confusion, (cm.width, cm.height));
    assert_eq!(run.files.denoised, None);
    let text = std::fs::read_to_string(&run.files.report).unwrap();
    for part in ["precision", "f1-score", "true \\ predicted"] {
        assert!(text.contains(part), "report lacks {part:?}:\n{text}");
    }
}

/// What every run must have written, classifier or not: the files, the input picture,
/// the curves, the history with the compiled `metric`, the report.
fn assert_run_files(run: &RunReport, epochs: usize, metric: &str) {
    for f in run.files.all() {
        assert!(f.is_file(), "{} was not written", f.display());
        assert!(
            f.starts_with(&run.out_dir),
            "{} is outside the run dir",
            f.display()
        );
    }
    let input_side = 28 * pictures::input_scale(28, 28);
    assert_png(&run.files.input, (input_side, input_side));
    assert_png(&run.files.training_curves, viz::CURVES_SIZE);

    let csv = std::fs::read_to_string(&run.files.history).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        format!("epoch,loss,{metric},val_loss,val_{metric},seconds")
    );
    assert_eq!(lines.len(), epochs + 1, "one history row per epoch:\n{csv}");
    assert_eq!(lines[1].split(',').count(), 6, "row {:?}", lines[1]);

    let text = std::fs::read_to_string(&run.files.report).unwrap();
    assert_eq!(text, run.text, "report.txt holds everything printed");
    for part in [
        "Total params:",
        "Epoch 1/1",
        "support",
        "weights.safetensors",
    ] {
        assert!(text.contains(part), "report lacks {part:?}:\n{text}");
    }
}

#[test]
fn mnist_conv_learns_and_writes_its_run_directory() {
    let Some(root) = data_root() else { return };
    let cfg = small_run("mnist-conv", root, 2_000, 500);
    let run = report::train_experiment(&cfg).expect("training mnist-conv");
    eprintln!(
        "mnist-conv on 2,000 images: train {:.3}, test {:.3}, {:.1}s",
        run.train.accuracy, run.test.accuracy, run.history.epoch_seconds[0]
    );

    // Chance is 0.10; one epoch on 2,000 images reaches about 0.9.
    assert!(
        run.test.accuracy >= 0.80,
        "test accuracy {}",
        run.test.accuracy
    );
    assert!(
        run.train.accuracy >= 0.80,
        "train accuracy {}",
        run.train.accuracy
    );
    assert_eq!((run.train.support, run.test.support), (2_000, 500));
    let confusion = run
        .confusion
        .as_ref()
        .expect("a classifier's confusion matrix");
    assert_eq!(confusion.total(), 500);
    assert!((confusion.accuracy() as f32 - run.test.accuracy).abs() < 1e-6);
    assert_eq!(run.history.loss.len(), 1);
    assert!(run.images_per_second > 0.0);
    assert_common_files(&run, 1);

    // First layer: 64 grey 3x3 kernels; one conv layer, drawn at 26x26x64.
    let filters = run.files.filters.as_deref().expect("filters.png");
    assert_png(filters, viz::filter_layout(3, 3, 1, 64).size());
    let names: Vec<&str> = run
        .files
        .feature_maps
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["conv2d"]);
    assert_png(
        &run.files.feature_maps[0].1,
        viz::feature_map_layout(26, 26, 64).size(),
    );

    // The saved weights give back the same model.
    let reloaded = report::evaluate_weights(&cfg, &run.files.weights).expect("eval");
    assert_eq!(reloaded.confusion, run.confusion);
    assert!((reloaded.scores.loss - run.test.loss).abs() < 1e-4);

    // input.png is test image 0 (a 7) scaled up; predict must scale it back and know it.
    let preds = report::predict_images(
        "mnist-conv",
        &run.files.weights,
        std::slice::from_ref(&run.files.input),
        false,
    )
    .expect("predict");
    let top = &preds[0].as_ref().expect("input.png loads").top;
    assert_eq!(top.len(), report::TOP_K);
    assert_eq!(top[0].0, "7", "top classes {top:?}");
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "sorted: {top:?}");
    assert!(top.iter().map(|t| t.1).sum::<f32>() <= 1.0 + 1e-4);
}

#[test]
fn mnist_dense_has_no_conv_pictures() {
    let Some(root) = data_root() else { return };
    let cfg = small_run("mnist-dense", root, 4_000, 200);
    let run = report::train_experiment(&cfg).expect("training mnist-dense");
    eprintln!("mnist-dense on 4,000 images: test {:.3}", run.test.accuracy);
    assert!(
        run.test.accuracy >= 0.70,
        "test accuracy {}",
        run.test.accuracy
    );
    assert_common_files(&run, 1);
    // Only cifar-pool's recipe mirrors its training images.
    assert!(!run.text.contains("augmentation"), "{}", run.text);
    assert_eq!(run.files.filters, None);
    assert!(run.files.feature_maps.is_empty());
    let stray: Vec<_> = std::fs::read_dir(&run.out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("filters") || n.starts_with("feature_maps"))
        .collect();
    assert!(stray.is_empty(), "unexpected pictures {stray:?}");
}

#[test]
fn images_convert_to_the_model_input() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("predict-input");
    std::fs::create_dir_all(&dir).unwrap();
    // 56x56 RGB, left half white: must become 28x28 grey with a bright left half.
    let path = dir.join("half.png");
    image::RgbImage::from_fn(56, 56, |x, _| {
        image::Rgb(if x < 28 { [255; 3] } else { [0; 3] })
    })
    .save(&path)
    .unwrap();
    let grey = report::load_input_image(&path, [28, 28, 1], false).unwrap();
    assert_eq!(grey.len(), 28 * 28);
    assert_eq!((grey[0], grey[27]), (1.0, 0.0));
    let inverted = report::load_input_image(&path, [28, 28, 1], true).unwrap();
    assert_eq!((inverted[0], inverted[27]), (0.0, 1.0));
    let rgb = report::load_input_image(&path, [32, 32, 3], false).unwrap();
    assert_eq!(rgb.len(), 32 * 32 * 3);
    assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));

    let not_png = dir.join("text.png");
    std::fs::write(&not_png, "not an image").unwrap();
    let err = format!(
        "{:#}",
        report::load_input_image(&not_png, [28, 28, 1], false).unwrap_err()
    );
    assert!(err.contains("text.png"), "{err}");
    let err = format!(
        "{:#}",
        report::load_input_image(dir.join("absent.png"), [28, 28, 1], false).unwrap_err()
    );
    assert!(
        err.contains("not found") && err.contains("absent.png"),
        "{err}"
    );
}

#[test]
fn mnist_unet_denoises_and_writes_its_run_directory() {
    let Some(root) = data_root() else { return };
    let cfg = small_run("mnist-unet", root, 3_000, 64);
    let run = report::train_experiment(&cfg).expect("training mnist-unet");
    let psnr = run.test.psnr.expect("a denoiser's test PSNR");
    let text = &run.text;
    eprintln!(
        "mnist-unet on 3,000 images: test loss {:.4}, PSNR {psnr:.2} dB",
        run.test.loss
    );
    assert_run_files(&run, 1, "binary_accuracy");
    assert_eq!(
        (run.confusion.as_ref(), run.files.confusion_matrix.as_ref()),
        (None, None)
    );
    assert!(!run.out_dir.join("confusion_matrix.png").exists());
    assert!(
        text.contains("PSNR dB") && text.contains("binary_accuracy"),
        "{text}"
    );
    assert!(
        !text.contains("precision"),
        "no classification report:\n{text}"
    );
    // The noisy inputs sit near 13.4 dB (clipping takes much of the noise off the black
    // background); an untrained model's grey outputs near 6 dB; one short epoch takes the
    // outputs above the inputs.
    let noisy = text
        .split("the inputs (noise σ 0.3, clipped to [0, 1]) are at ")
        .nth(1)
        .and_then(|t| t.split(" dB").next())
        .and_then(|v| v.parse::<f32>().ok())
        .expect("the noisy inputs' PSNR in the report");
    assert!((12.0..15.0).contains(&noisy), "noisy input PSNR {noisy}");
    assert!(
        psnr > noisy + 2.5,
        "PSNR {psnr} dB against the inputs' {noisy} dB"
    );
    // denoised.png: 8 columns, three rows (noisy, clean, output) of 28×28 tiles scaled 3×.
    let denoised = run.files.denoised.as_deref().expect("denoised.png");
    let img = image::open(denoised)
        .expect("denoised.png decodes")
        .to_rgb8();
    assert!(
        img.width() >= 8 * 84 && img.height() >= 3 * 84,
        "{:?}",
        img.dimensions()
    );
    // The feature maps are drawn from the noisy input the model sees.
    assert!(!run.files.feature_maps.is_empty());

    // The model file evaluates to the same scores (same noise, same PSNR).
    let model_file = run.out_dir.join("model.safetensors");
    let again = report::evaluate_model_file(&cfg, &model_file).expect("eval --model");
    assert_eq!(again.confusion, None);
    assert!((again.scores.loss - run.test.loss).abs() < 1e-4);
    assert!((again.scores.psnr.unwrap() - psnr).abs() < 1e-3);

    // predict writes the denoised image beside its input, and never over a file.
    let noisy_png = run.out_dir.join("noisy.png");
    viz::save_image(&vec![0.5; 28 * 28], 28, 28, 1, 1, &noisy_png).unwrap();
    let preds =
        report::predict_images_with_model(&model_file, std::slice::from_ref(&noisy_png), false)
            .expect("predict");
    let out = preds[0]
        .as_ref()
        .expect("a prediction")
        .output
        .clone()
        .expect("an image");
    assert_eq!(out, run.out_dir.join("noisy.mnist-unet.png"));
    assert_png(&out, (28, 28));
    let again = report::predict_images_with_model(&model_file, &[noisy_png], false).unwrap();
    let err = format!("{:#}", again[0].as_ref().unwrap_err());
    assert!(err.contains("exists already"), "{err}");
}
