//! Runs the `wgcnn` binary as a user would and checks its output, exit codes and errors.

mod common;

use common::{assert_fails_mentioning, mnist_root, stderr, stdout, wgcnn};
use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("cli", name)
}

#[test]
fn help_lists_the_subcommands() {
    let o = wgcnn(&["--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in ["train", "summary", "eval", "predict", "devices"] {
        assert!(text.contains(cmd), "--help lacks {cmd}:\n{text}");
    }
    let train = stdout(&wgcnn(&["train", "--help"]));
    for flag in [
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--horizontal-flip",
        "--data",
        "--out",
        "--limit",
        "--quiet",
        "--no-download",
        "--resume",
        "--translation",
        "--limit-test",
        "--overwrite",
    ] {
        assert!(train.contains(flag), "train --help lacks {flag}:\n{train}");
    }
}

#[test]
fn summary_prints_the_lecture_parameter_counts() {
    for (name, total) in [
        ("cifar-pool", "Total params: 462,954"),
        ("cifar-conv", "Total params: 1,845,354"),
        ("cifar-deep", "Total params: 564,426"),
        ("mnist-dense", "Total params: 7,850"),
        ("mnist-unet", "Total params: 56,929"),
    ] {
        let o = wgcnn(&["summary", name]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stdout(&o).contains(total), "{name}:\n{}", stdout(&o));
    }
    // The recipe line records what a plain `wgcnn train <name>` runs, seed included.
    let o = wgcnn(&["summary", "cifar-pool"]);
    assert!(
        stdout(&o).contains("epochs: 20, batch size: 32, optimizer: Adam, lr 0.0003")
            && stdout(&o).contains("seed: 1, augmentation: horizontal flip"),
        "{}",
        stdout(&o)
    );
    let o = wgcnn(&["summary", "cifar-deep"]);
    assert!(!stdout(&o).contains("augmentation"), "{}", stdout(&o));
    let o = wgcnn(&["summary", "mnist-unet"]);
    assert!(stdout(&o).contains("task: denoising"), "{}", stdout(&o));
    let o = wgcnn(&["summary", "mnist-bn"]);
    let text = stdout(&o);
    assert!(
        text.contains("Non-trainable params: 192")
            && text.contains("lr cosine decay from 0.001 over 15000 steps")
            && text.contains("augmentation: random translation up to 0.1"),
        "{text}"
    );
}

#[test]
fn unknown_experiment_names_the_valid_ones() {
    for cmd in ["train", "summary"] {
        let o = wgcnn(&[cmd, "mnist-lstm"]);
        assert_fails_mentioning(
            &o,
            &[
                "mnist-lstm",
                "mnist-dense",
                "mnist-conv",
                "cifar-conv",
                "cifar-pool",
                "cifar-deep",
            ],
        );
    }
}

#[test]
fn missing_data_directory_is_named() {
    let o = wgcnn(&[
        "train",
        "mnist-conv",
        "--data",
        "/nonexistent",
        "--no-download",
        "--out",
        tmp("no-data").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(&o));
    assert_fails_mentioning(&o, &["error:", "/nonexistent/mnist", "--data"]);
}

#[test]
fn predict_reports_a_missing_image() {
    let o = wgcnn(&[
        "predict",
        "mnist-conv",
        "--weights",
        "whatever.safetensors",
        "no-such-digit.png",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_fails_mentioning(&o, &["error:", "no-such-digit.png", "not found"]);
}

#[test]
fn eval_reports_missing_weights() {
    let o = wgcnn(&[
        "eval",
        "cifar-pool",
        "--weights",
        "/nonexistent/w.safetensors",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_fails_mentioning(&o, &["error:", "/nonexistent/w.safetensors"]);
}

#[test]
fn devices_lists_adapter_limits() {
    let o = wgcnn(&["devices"]);
    assert!(o.status.success(), "stderr:\n{}", stderr(&o));
    let text = stdout(&o);
    for key in [
        "backend:",
        "max_storage_buffer_binding_size",
        "max_compute_workgroups_per_dimension",
        "max_compute_invocations_per_workgroup",
        "subgroups:",
        "wgcnn uses:",
    ] {
        assert!(text.contains(key), "devices lacks {key}:\n{text}");
    }
}

/// The quick start end to end on a tiny slice: train, then eval and predict its weights.
#[test]
fn train_eval_predict_round_trip() {
    let Some(root) = mnist_root() else {
        return;
    };
    let out = tmp("round-trip");
    let root = root.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    let o = wgcnn(&[
        "train",
        "mnist-dense",
        "--data",
        root,
        "--no-download",
        "--out",
        out_s,
        "--epochs",
        "1",
        "--limit",
        "512",
        "--limit-test",
        "128",
    ]);
    assert!(o.status.success(), "train failed:\n{}", stderr(&o));
    // Without a terminal the progress bar is hidden; one line per epoch goes to the log.
    assert!(
        stderr(&o).contains("Epoch 1/1 - ") && stderr(&o).contains(" - val_accuracy: "),
        "no epoch line:\n{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("Results"), "{}", stdout(&o));
    let weights = out.join("weights.safetensors");
    assert!(out.join("report.txt").is_file() && weights.is_file());

    let weights = weights.to_str().unwrap();
    let o = wgcnn(&[
        "eval",
        "mnist-dense",
        "--weights",
        weights,
        "--data",
        root,
        "--no-download",
        "--limit-test",
        "128",
    ]);
    assert!(o.status.success(), "eval failed:\n{}", stderr(&o));
    for part in ["accuracy", "precision", "true \\ predicted"] {
        assert!(
            stdout(&o).contains(part),
            "eval output lacks {part:?}:\n{}",
            stdout(&o)
        );
    }

    let input = out.join("input.png");
    let o = wgcnn(&[
        "predict",
        "mnist-dense",
        "--weights",
        weights,
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "predict failed:\n{}", stderr(&o));
    let line = stdout(&o);
    assert!(
        line.contains("input.png:") && line.matches('%').count() == 3,
        "{line}"
    );

    // Weights of another architecture: a clear error, not a panic.
    let o = wgcnn(&[
        "predict",
        "mnist-conv",
        "--weights",
        weights,
        input.to_str().unwrap(),
    ]);
    assert_fails_mentioning(&o, &["error:", "weights.safetensors"]);
}

/// A run never replaces an earlier one; a run resumed from its model file ends with the
/// weights of the uninterrupted run, byte for byte; eval and predict work from the model
/// file alone.
#[test]
fn runs_never_overwrite_and_resume_bit_identically() {
    let Some(root) = mnist_root() else {
        return;
    };
    let cwd = tmp("resume");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "mnist-dense",
            "--data",
            root.to_str().unwrap(),
            "--no-download",
            "--limit",
            "300",
            "--limit-test",
            "100",
            "--batch-size",
            "32",
        ];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_wgcnn"))
            .args(&args)
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "train {extra:?} failed:\n{}",
            stderr(&o)
        );
        o
    };
    // Without --out: runs/mnist-dense, then runs/mnist-dense-2, each said.
    for dir in ["runs/mnist-dense", "runs/mnist-dense-2"] {
        let o = run(&["--epochs", "1"]);
        assert!(
            stdout(&o).contains(&format!("run directory: {dir}")),
            "{}",
            stdout(&o)
        );
        assert!(cwd.join(dir).join("model.safetensors").is_file());
    }
    run(&["--epochs", "3", "--out", "whole"]);
    run(&["--epochs", "1", "--out", "first"]);
    let o = run(&[
        "--epochs",
        "3",
        "--resume",
        "first/model.safetensors",
        "--out",
        "resumed",
    ]);
    assert!(
        stdout(&o).contains("resumed from first/model.safetensors after epoch 1")
            && stderr(&o).contains("Epoch 2/3")
            && !stderr(&o).contains("Epoch 1/3"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let weights = |d: &str| std::fs::read(cwd.join(d).join("weights.safetensors")).unwrap();
    assert_eq!(weights("whole"), weights("resumed"), "resumed run differs");
    assert_ne!(weights("first"), weights("resumed"));
    // The resumed run's history continues the first run's (its model file carries it):
    // epochs 1-3 as the uninterrupted run had them, the seconds column aside.
    let history = |d: &str| -> Vec<String> {
        std::fs::read_to_string(cwd.join(d).join("history.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(history("resumed"), history("whole"));
    assert_eq!(history("whole").len(), 4, "{:?}", history("whole"));
    // Asking for no more epochs than the file has: a clear error.
    let o = Command::new(env!("CARGO_BIN_EXE_wgcnn"))
        .args([
            "train",
            "mnist-dense",
            "--data",
            root.to_str().unwrap(),
            "--no-download",
        ])
        .args(["--limit", "300", "--limit-test", "100", "--epochs", "1"])
        .args(["--resume", "first/model.safetensors", "--out", "again"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_fails_mentioning(&o, &["error:", "trained 1 epochs already"]);

    let model = cwd.join("resumed/model.safetensors");
    let model = model.to_str().unwrap();
    let o = wgcnn(&[
        "eval",
        "--model",
        model,
        "--data",
        root.to_str().unwrap(),
        "--no-download",
        "--limit-test",
        "100",
    ]);
    assert!(o.status.success(), "eval --model failed:\n{}", stderr(&o));
    assert!(
        stdout(&o).contains("3 epochs trained") && stdout(&o).contains("accuracy"),
        "{}",
        stdout(&o)
    );
    let input = cwd.join("resumed/input.png");
    let o = wgcnn(&["predict", "--model", model, input.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "predict --model failed:\n{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o).matches('%').count(), 3, "{}", stdout(&o));
    let o = wgcnn(&["eval", "--model", "/nonexistent/model.safetensors"]);
    assert_fails_mentioning(&o, &["error:", "model file not found"]);
}
