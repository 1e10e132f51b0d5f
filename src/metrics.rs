//! Classification metrics on the CPU: confusion matrix, per-class precision / recall / F1,
//! and a text report laid out like scikit-learn's `classification_report`.
//!
//! Undefined ratios (no predictions for a class, no samples of a class) are reported as 0,
//! like scikit-learn with `zero_division=0`.

use std::fmt;

use anyhow::{Context, Result, ensure};

/// Counts of (true label, predicted label) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Number of classes; labels are `0..num_classes`.
    pub num_classes: usize,
    /// `num_classes * num_classes` counts, row-major: row = true label, column = predicted.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An all-zero matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// Builds the matrix from parallel slices of true and predicted labels.
    ///
    /// Errors if the slices differ in length or a label is not below `num_classes`.
    pub fn from_predictions(labels: &[u32], predicted: &[u32], num_classes: usize) -> Result<Self> {
        ensure!(
            labels.len() == predicted.len(),
            "confusion matrix: {} labels but {} predictions",
            labels.len(),
            predicted.len()
        );
        let mut cm = Self::new(num_classes);
        for (i, (&label, &pred)) in labels.iter().zip(predicted).enumerate() {
            cm.add(label, pred).with_context(|| format!("sample {i}"))?;
        }
        Ok(cm)
    }

    /// Counts one sample. Errors if either label is out of range.
    pub fn add(&mut self, label: u32, predicted: u32) -> Result<()> {
        let n = self.num_classes;
        let (l, p) = (label as usize, predicted as usize);
        ensure!(
            l < n && p < n,
            "label {label} / prediction {predicted} out of range for {n} classes"
        );
        self.counts[l * n + p] += 1;
        Ok(())
    }

    /// Count of samples with true class `label` predicted as `predicted` (0 when out of range).
    pub fn get(&self, label: usize, predicted: usize) -> u64 {
        let n = self.num_classes;
        if label < n && predicted < n {
            self.counts[label * n + predicted]
        } else {
            0
        }
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of samples on the diagonal; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.num_classes).map(|c| self.get(c, c)).sum();
        ratio(correct, self.total())
    }

    /// Number of samples whose true class is `class` (row sum).
    pub fn support(&self, class: usize) -> u64 {
        (0..self.num_classes).map(|p| self.get(class, p)).sum()
    }

    /// Number of samples predicted as `class` (column sum).
    pub fn predicted_count(&self, class: usize) -> u64 {
        (0..self.num_classes).map(|l| self.get(l, class)).sum()
    }

    /// Of the samples predicted as `class`, the fraction that truly are; 0 if none were predicted.
    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.get(class, class), self.predicted_count(class))
    }

    /// Of the samples of `class`, the fraction predicted as `class`; 0 if there are none.
    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.get(class, class), self.support(class))
    }

    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub fn f1(&self, class: usize) -> f64 {
        let (p, r) = (self.precision(class), self.recall(class));
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }

    /// The counts as an aligned text table: one row per true class, one column per predicted
    /// class, headed by the class names (missing names fall back to the class index).
    pub fn to_table(&self, class_names: &[String]) -> String {
        let n = self.num_classes;
        let names: Vec<String> = (0..n).map(|c| class_name(class_names, c)).collect();
        let corner = "true \\ predicted";
        let first_w = names
            .iter()
            .map(|s| s.chars().count())
            .fold(corner.len(), usize::max);
        let col_w: Vec<usize> = (0..n)
            .map(|p| {
                let widest_count = (0..n).map(|l| self.get(l, p).to_string().len()).max();
                names[p].chars().count().max(widest_count.unwrap_or(0))
            })
            .collect();

        let mut out = format!("{corner:<first_w$}");
        for (name, w) in names.iter().zip(&col_w) {
            out += &format!("  {name:>w$}");
        }
        out.push('\n');
        for (l, name) in names.iter().enumerate() {
            out += &format!("{name:<first_w$}");
            for (p, w) in col_w.iter().enumerate() {
                out += &format!("  {:>w$}", self.get(l, p));
            }
            out.push('\n');
        }
        out
    }
}

/// Precision, recall, F1 and support of one class (or of an average).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// Class name, or "macro avg" / "weighted avg".
    pub name: String,
    /// See [`ConfusionMatrix::precision`].
    pub precision: f64,
    /// See [`ConfusionMatrix::recall`].
    pub recall: f64,
    /// See [`ConfusionMatrix::f1`].
    pub f1: f64,
    /// Number of true samples the scores are over.
    pub support: u64,
}

/// What scikit-learn's `classification_report` prints, as numbers; `Display` prints it the
/// same way (two decimals). Every class `0..num_classes` is listed, even one with no samples,
/// as sklearn does when given `labels=range(num_classes)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    /// One entry per class, in class order.
    pub classes: Vec<ClassScores>,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Unweighted mean over classes.
    pub macro_avg: ClassScores,
    /// Mean over classes weighted by support.
    pub weighted_avg: ClassScores,
}

impl ClassReport {
    /// Computes the report from a confusion matrix.
    pub fn new(cm: &ConfusionMatrix, class_names: &[String]) -> Self {
        let classes: Vec<ClassScores> = (0..cm.num_classes)
            .map(|c| ClassScores {
                name: class_name(class_names, c),
                precision: cm.precision(c),
                recall: cm.recall(c),
                f1: cm.f1(c),
                support: cm.support(c),
            })
            .collect();
        let total = cm.total();
        let avg = |name: &str, weight: &dyn Fn(&ClassScores) -> f64, norm: f64| {
            let mean = |f: fn(&ClassScores) -> f64| {
                if norm > 0.0 {
                    classes.iter().map(|s| weight(s) * f(s)).sum::<f64>() / norm
                } else {
                    0.0
                }
            };
            ClassScores {
                name: name.to_string(),
                precision: mean(|s| s.precision),
                recall: mean(|s| s.recall),
                f1: mean(|s| s.f1),
                support: total,
            }
        };
        let macro_avg = avg("macro avg", &|_| 1.0, classes.len() as f64);
        let weighted_avg = avg("weighted avg", &|s| s.support as f64, total as f64);
        Self {
            accuracy: cm.accuracy(),
            classes,
            macro_avg,
            weighted_avg,
        }
    }
}

impl fmt::Display for ClassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same column layout as sklearn: names right-aligned to the widest name (at least
        // "weighted avg"), then four 9-wide columns each preceded by a space.
        let w = self
            .classes
            .iter()
            .map(|s| s.name.chars().count())
            .fold("weighted avg".len(), usize::max);
        let row = |f: &mut fmt::Formatter<'_>, s: &ClassScores| {
            let (p, r, f1, n) = (s.precision, s.recall, s.f1, s.support);
            writeln!(f, "{:>w$}  {p:>9.2} {r:>9.2} {f1:>9.2} {n:>9}", s.name)
        };
        writeln!(
            f,
            "{:>w$}  {:>9} {:>9} {:>9} {:>9}",
            "", "precision", "recall", "f1-score", "support"
        )?;
        writeln!(f)?;
        for s in &self.classes {
            row(f, s)?;
        }
        writeln!(f)?;
        let (acc, n) = (self.accuracy, self.macro_avg.support);
        writeln!(
            f,
            "{:>w$}  {:>9} {:>9} {acc:>9.2} {n:>9}",
            "accuracy", "", ""
        )?;
        row(f, &self.macro_avg)?;
        row(f, &self.weighted_avg)
    }
}

/// The text of scikit-learn's `classification_report` for this confusion matrix.
pub fn classification_report(cm: &ConfusionMatrix, class_names: &[String]) -> String {
    ClassReport::new(cm, class_names).to_string()
}

/// The predicted class of each row of `probs` (row-major, `num_classes` per row): the index
/// of the largest value, the first one on ties. NaN never wins; a trailing partial row and
/// `num_classes == 0` yield no prediction.
pub fn argmax_rows(probs: &[f32], num_classes: usize) -> Vec<u32> {
    if num_classes == 0 {
        return Vec::new();
    }
    probs
        .chunks_exact(num_classes)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                // Strict `>` keeps the first maximum on ties; a NaN (which compares false
                // with everything) only stays best until any number comes along.
                if v > row[best] || row[best].is_nan() && !v.is_nan() {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn class_name(names: &[String], class: usize) -> String {
    names
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

/// Peak signal-to-noise ratio of images with values in [0, 1], averaged over the images:
/// the mean over images of 10·log10(1 / MSE), each `per_image` values long (an image
/// reproduced exactly counts as 120 dB, not infinity).
pub fn psnr(pred: &[f32], clean: &[f32], per_image: usize) -> Result<f64> {
    ensure!(
        per_image > 0 && pred.len() == clean.len() && pred.len().is_multiple_of(per_image),
        "PSNR needs whole images of {per_image} values on both sides, got {} and {}",
        pred.len(),
        clean.len()
    );
    ensure!(!pred.is_empty(), "PSNR of no images");
    let sum: f64 = pred
        .chunks(per_image)
        .zip(clean.chunks(per_image))
        .map(|(p, c)| {
            let se: f64 = p.iter().zip(c).map(|(a, b)| f64::from(a - b).powi(2)).sum();
            10.0 * (1.0 / (se / per_image as f64).max(1e-12)).log10()
        })
        .sum();
    Ok(sum / (pred.len() / per_image) as f64)
}
