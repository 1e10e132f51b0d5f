//! Metrics on small cases computed by hand (and checked against scikit-learn 1.x).

use wgcnn::metrics::{ClassReport, ConfusionMatrix, argmax_rows, classification_report, psnr};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// 3 classes; class 1 ("dog") is never predicted.
///   true:      0 0 1 1 2 2 2
///   predicted: 0 2 0 2 2 2 0
fn sample() -> ConfusionMatrix {
    ConfusionMatrix::from_predictions(&[0, 0, 1, 1, 2, 2, 2], &[0, 2, 0, 2, 2, 2, 0], 3).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn counts_are_row_true_column_predicted() {
    let cm = sample();
    assert_eq!(cm.counts, vec![1, 0, 1, 1, 0, 1, 1, 0, 2]);
    assert_eq!(cm.get(2, 0), 1);
    assert_eq!(cm.get(2, 2), 2);
    assert_eq!(cm.get(3, 0), 0, "out of range reads as 0");
    assert_eq!(cm.total(), 7);
    assert_eq!((cm.support(0), cm.support(1), cm.support(2)), (2, 2, 3));
    assert!(close(cm.accuracy(), 3.0 / 7.0));
}

#[test]
fn precision_recall_f1_by_hand() {
    let cm = sample();
    assert!(close(cm.precision(0), 1.0 / 3.0));
    assert!(close(cm.recall(0), 0.5));
    assert!(close(cm.f1(0), 0.4));
    // No predictions of class 1: precision is undefined and reported as 0, like sklearn.
    assert_eq!(cm.precision(1), 0.0);
    assert_eq!(cm.recall(1), 0.0);
    assert_eq!(cm.f1(1), 0.0);
    assert!(close(cm.precision(2), 0.5));
    assert!(close(cm.recall(2), 2.0 / 3.0));
    assert!(close(cm.f1(2), 4.0 / 7.0));
}

#[test]
fn empty_matrix_is_all_zero_not_nan() {
    let cm = ConfusionMatrix::new(2);
    assert_eq!(cm.total(), 0);
    assert_eq!(cm.accuracy(), 0.0);
    assert_eq!((cm.precision(0), cm.recall(0), cm.f1(0)), (0.0, 0.0, 0.0));
    assert!(!classification_report(&cm, &[]).contains("NaN"));
}

#[test]
fn bad_input_is_an_error() {
    let err = ConfusionMatrix::from_predictions(&[0, 1, 1], &[0, 1], 2).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains('3') && msg.contains('2'),
        "names both lengths: {msg}"
    );

    let err = ConfusionMatrix::from_predictions(&[0, 5], &[0, 1], 3).unwrap_err();
    assert!(format!("{err:#}").contains('5'), "{err:#}");
    let mut cm = ConfusionMatrix::new(3);
    assert!(cm.add(0, 3).is_err());
    assert!(cm.add(3, 0).is_err());
    assert_eq!(cm.total(), 0, "a refused sample is not counted");
    cm.add(2, 1).unwrap();
    assert_eq!(cm.get(2, 1), 1);
}

#[test]
fn report_matches_sklearn_text() {
    // Printed by sklearn's classification_report(y, p, target_names=..., zero_division=0).
    let expected = "              precision    recall  f1-score   support

         cat       0.33      0.50      0.40         2
         dog       0.00      0.00      0.00         2
        bird       0.50      0.67      0.57         3

    accuracy                           0.43         7
   macro avg       0.28      0.39      0.32         7
weighted avg       0.31      0.43      0.36         7
";
    assert_eq!(
        classification_report(&sample(), &names(&["cat", "dog", "bird"])),
        expected
    );
}

#[test]
fn report_widens_for_long_names() {
    let cm = ConfusionMatrix::from_predictions(&[0, 1, 1, 2], &[0, 1, 0, 2], 3).unwrap();
    let expected = "                   precision    recall  f1-score   support

                x       0.50      1.00      0.67         1
a_very_long_class       1.00      0.50      0.67         2
                z       1.00      1.00      1.00         1

         accuracy                           0.75         4
        macro avg       0.83      0.83      0.78         4
     weighted avg       0.88      0.75      0.75         4
";
    assert_eq!(
        classification_report(&cm, &names(&["x", "a_very_long_class", "z"])),
        expected
    );
}

#[test]
fn report_numbers() {
    let r = ClassReport::new(&sample(), &[]);
    assert_eq!(
        r.classes[1].name, "1",
        "missing names fall back to the index"
    );
    assert!(close(r.accuracy, 3.0 / 7.0));
    assert!(close(r.macro_avg.precision, (1.0 / 3.0 + 0.5) / 3.0));
    assert!(close(r.macro_avg.f1, (0.4 + 4.0 / 7.0) / 3.0));
    assert!(
        close(r.weighted_avg.recall, 3.0 / 7.0),
        "weighted recall equals accuracy"
    );
    assert!(close(r.weighted_avg.precision, (2.0 / 3.0 + 1.5) / 7.0));
    assert_eq!(r.weighted_avg.support, 7);
}

#[test]
fn table_is_aligned_with_names() {
    let table = sample().to_table(&names(&["cat", "dog", "bird"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("true \\ predicted"));
    assert!(lines[0].ends_with("cat  dog  bird"), "{table}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["bird", "1", "0", "2"]
    );
    // Right-aligned columns: every row is as long as the header.
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
}

#[test]
fn argmax_takes_first_max_and_skips_nan() {
    let probs = [
        0.1,
        0.7,
        0.2, // row 0 → 1
        0.4,
        0.4,
        0.2, // tie → first, 0
        0.1,
        0.3,
        0.3, // tie → 1
        f32::NAN,
        0.2,
        0.1, // NaN never wins → 1
        0.0,
        0.0, // trailing partial row ignored
    ];
    assert_eq!(argmax_rows(&probs, 3), vec![1, 0, 1, 1]);
    assert!(argmax_rows(&probs, 0).is_empty());
    assert_eq!(argmax_rows(&[5.0], 1), vec![0]);
}

#[test]
fn psnr_is_the_mean_over_images_of_their_own() {
    // Image 1 off by 0.1 everywhere: MSE 0.01, 20 dB; image 2 off by 0.01: 40 dB.
    let clean = [0.5f32; 8];
    let mut pred = [0.6f32; 8];
    pred[4..].fill(0.51);
    let db = psnr(&pred, &clean, 4).unwrap();
    assert!((db - 30.0).abs() < 1e-4, "{db}");
    // One pixel of four off by 1: MSE 0.25, 6.02 dB; an exact copy is capped at 120 dB.
    let db = psnr(&[1.0, 0.0, 0.0, 0.0], &[0.0; 4], 4).unwrap();
    assert!((db - 10.0 * 4f64.log10()).abs() < 1e-9, "{db}");
    assert!((psnr(&clean, &clean, 4).unwrap() - 120.0).abs() < 1e-9);
    for (p, c, per) in [
        (&pred[..7], &clean[..7], 4),
        (&pred[..], &clean[..4], 4),
        (&[][..], &[][..], 4),
    ] {
        assert!(psnr(p, c, per).is_err());
    }
    assert!(psnr(&pred, &clean, 0).is_err());
}
