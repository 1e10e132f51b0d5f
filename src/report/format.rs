//! The text of the run report: header, history table, scores, timing and file list, and
//! `history.csv`.

use super::Scores;
use crate::data::{Dataset, Split};
use crate::layers::thousands;
use crate::metrics::{ConfusionMatrix, classification_report};
use crate::model::History;
use crate::ops::optimizer::{Clip, LearningRate, Optimizer, Rule};
use std::fmt::Write;
use std::path::Path;

/// The experiment, data and recipe lines that open a training report.
pub(super) fn header(experiment: &str, data: &Split, epochs: usize, batch_size: usize) -> String {
    let counts = format!(
        "{} train and {} test",
        thousands(data.train.len()),
        thousands(data.test.len())
    );
    format!(
        "experiment: {experiment}\ndata: {counts} images of {}\nepochs: {epochs}, batch size: {batch_size}\n",
        image_shape(&data.train)
    )
}

/// The experiment and data lines that open an evaluation report.
pub(super) fn eval_header(experiment: &str, test: &Dataset) -> String {
    format!(
        "experiment: {experiment}\ndata: {} test images of {}\n",
        thousands(test.len()),
        image_shape(test)
    )
}

fn image_shape(ds: &Dataset) -> String {
    format!("{}x{}x{}", ds.height, ds.width, ds.channels)
}

/// "Adam, lr 0.001", "AdamW, lr cosine decay from 0.001 over 9380 steps, weight decay 0.004".
pub(super) fn optimizer(opt: &Optimizer) -> String {
    let mut s = format!("{}, lr {}", opt.name(), learning_rate(&opt.learning_rate));
    match opt.rule {
        Rule::Sgd { momentum, nesterov } if momentum > 0.0 => {
            s.push_str(&format!(", momentum {momentum}, nesterov {nesterov}"))
        }
        Rule::RmsProp {
            rho,
            momentum,
            centered,
            ..
        } => {
            s.push_str(&format!(", rho {rho}, momentum {momentum}"));
            if centered {
                s.push_str(", centered");
            }
        }
        Rule::Adam { amsgrad: true, .. } => s.push_str(", amsgrad"),
        _ => {}
    }
    match opt.clip {
        Clip::Value(v) => s.push_str(&format!(", clipvalue {v}")),
        Clip::Norm(c) => s.push_str(&format!(", clipnorm {c}")),
        Clip::GlobalNorm(c) => s.push_str(&format!(", global_clipnorm {c}")),
        Clip::None => {}
    }
    if opt.weight_decay > 0.0 {
        s.push_str(&format!(", weight decay {}", opt.weight_decay));
    }
    s
}

fn learning_rate(lr: &LearningRate) -> String {
    match lr {
        LearningRate::Constant(lr) => lr.to_string(),
        LearningRate::ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase,
        } => format!(
            "{initial} decaying ×{decay_rate} every {decay_steps} steps{}",
            if *staircase { " (staircase)" } else { "" }
        ),
        LearningRate::CosineDecay {
            initial,
            decay_steps,
            alpha,
            warmup_target,
            warmup_steps,
        } => {
            let warm = match warmup_target {
                Some(t) => format!(", warm-up to {t} over {warmup_steps} steps"),
                None => String::new(),
            };
            format!("cosine decay from {initial} over {decay_steps} steps (alpha {alpha}){warm}")
        }
        LearningRate::PiecewiseConstantDecay { boundaries, values } => {
            format!("piecewise constant {values:?} at steps {boundaries:?}")
        }
    }
}

/// One Keras-style line per epoch.
pub(super) fn history_table(h: &History, epochs: usize) -> String {
    let mut s = String::from("\nTraining history\n");
    for e in 0..h.loss.len() {
        s.push_str(&h.epoch_line(e, epochs));
        s.push('\n');
    }
    s
}

/// The train and test rows: loss, metric, PSNR where measured, and support.
pub(super) fn scores_table(train: &Scores, test: &Scores) -> String {
    let psnr = train.psnr.is_some() || test.psnr.is_some();
    format!(
        "\nResults\n{}{}{}",
        scores_head(test.metric, psnr),
        scores_row("train", train, psnr),
        scores_row("test", test, psnr)
    )
}

/// Scores of one set, with the table head.
pub(super) fn scores_table_one(part: &str, scores: &Scores) -> String {
    let psnr = scores.psnr.is_some();
    format!(
        "\n{}{}",
        scores_head(scores.metric, psnr),
        scores_row(part, scores, psnr)
    )
}

fn scores_head(metric: &str, psnr: bool) -> String {
    let width = metric.len().max(9) + 1;
    let db = if psnr {
        format!("{:>10}", "PSNR dB")
    } else {
        String::new()
    };
    format!(
        "{:<8}{:>10}{metric:>width$}{db}{:>10}\n",
        "", "loss", "support"
    )
}

fn scores_row(part: &str, s: &Scores, psnr: bool) -> String {
    let width = s.metric.len().max(9) + 1;
    let db = match (psnr, s.psnr) {
        (false, _) => String::new(),
        (true, Some(db)) => format!("{db:>10.2}"),
        (true, None) => format!("{:>10}", "-"),
    };
    format!(
        "{part:<8}{:>10.4}{:>width$.4}{db}{:>10}\n",
        s.loss, s.accuracy, s.support
    )
}

/// Seconds of each epoch and the training throughput.
pub(super) fn timing(epoch_seconds: &[f64], images_per_second: f64) -> String {
    let each: Vec<String> = epoch_seconds.iter().map(|s| format!("{s:.1}")).collect();
    format!(
        "\nseconds per epoch: {} (training only; the first includes compiling the shaders); {images_per_second:.0} img/s\n",
        each.join(", ")
    )
}

/// Per-class precision/recall/F1 and the confusion matrix of the test set.
pub(super) fn test_text(cm: &ConfusionMatrix, class_names: &[String]) -> String {
    format!(
        "\nClassification report (test set)\n{}\nConfusion matrix (test set; rows: true class, columns: predicted)\n{}",
        classification_report(cm, class_names),
        cm.to_table(class_names)
    )
}

/// A denoiser's test-set PSNR against that of its noisy inputs.
pub(super) fn denoise_text(psnr: f64, noisy_psnr: f64, sigma: f32) -> String {
    format!(
        "\nDenoising (test set): PSNR {psnr:.2} dB of the outputs against the clean images; \
         the inputs (noise σ {sigma}, clipped to [0, 1]) are at {noisy_psnr:.2} dB\n"
    )
}

/// The files written, relative to the run directory.
pub(super) fn files_list(out_dir: &Path, files: &[&Path]) -> String {
    let mut s = format!("\nWritten to {}:\n", out_dir.display());
    for f in files {
        let shown = f.strip_prefix(out_dir).unwrap_or(f);
        let _ = writeln!(s, "  {}", shown.display());
    }
    s
}
