//! Nothing lost, nothing aborts: run folders, per-epoch history, sizes checked before
//! allocation and the command line's errors, tried through the binary as a user (or an
//! adversarial one) would: runs started together, `kill -9` mid-run, bad files and
//! bad values.

mod common;

use common::{
    assert_fails_mentioning, assert_ok, command, mnist_root, small_model_files, stderr, stdout,
    wgcnn, wgcnn_in,
};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    common::tmp("cli-runs", name)
}

/// `wgcnn train mnist-dense` on a small slice of MNIST, quiet, plus `extra` (1 epoch of
/// 300 images unless `extra` says otherwise).
fn train_args<'a>(root: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "mnist-dense",
        "--data",
        root.to_str().unwrap(),
        "--no-download",
        "--limit-test",
        "100",
        "-q",
    ];
    for (flag, default) in [("--epochs", "1"), ("--limit", "300")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// The run folder a quiet `train` reports ("…; wrote DIR").
fn wrote(o: &Output) -> String {
    let out = stdout(o);
    out.rsplit_once("wrote ")
        .map(|(_, d)| d.trim().to_string())
        .unwrap_or_else(|| panic!("no run folder in:\n{out}"))
}

/// The `epoch` column of a history.csv, and its rows without the seconds column.
fn history(path: &Path) -> (Vec<usize>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let epochs = rows
        .iter()
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect();
    let cells = rows
        .iter()
        .map(|r| r.rsplit_once(',').unwrap().0.to_string())
        .collect();
    (epochs, cells)
}

// 1. Two runs started together claim folders of their own.
#[test]
fn runs_started_together_get_folders_of_their_own() {
    // The library call itself: each claim creates a new folder.
    let base = tmp("claim");
    let a = wgcnn::report::claim_run_dir(&base, "mnist-dense").unwrap();
    let b = wgcnn::report::claim_run_dir(&base, "mnist-dense").unwrap();
    assert_ne!(a, b);
    assert!(a.is_dir() && b.is_dir());
    assert_eq!(b, base.join("runs/mnist-dense-2"));

    let Some(root) = mnist_root() else { return };
    let cwd = tmp("together");
    let spawn = |seed| {
        command(&cwd, &train_args(&root, &["--seed", seed]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn("1"), spawn("2"));
    let (one, two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    assert_ok(&one, "the first run");
    assert_ok(&two, "the second run");
    let (d1, d2) = (wrote(&one), wrote(&two));
    assert_ne!(d1, d2, "both runs wrote into {d1}");
    for (dir, seed) in [(&d1, "seed: 1"), (&d2, "seed: 2")] {
        let report = std::fs::read_to_string(cwd.join(dir).join("report.txt")).unwrap();
        assert!(report.contains(seed), "{dir}/report.txt lacks {seed:?}");
        assert!(cwd.join(dir).join("weights.safetensors").is_file());
    }
}

// 2. --out at a folder that holds files is refused unless --overwrite or resuming there.
#[test]
fn out_at_a_folder_with_files_is_refused_without_overwrite() {
    let cwd = tmp("out-non-empty");
    let out = cwd.join("earlier-run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let o = wgcnn_in(
        &cwd,
        &[
            "train",
            "mnist-dense",
            "--out",
            "earlier-run",
            "--data",
            "/nonexistent",
            "--no-download",
        ],
    );
    assert_fails_mentioning(&o, &["earlier-run", "already holds files", "--overwrite"]);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(!out.join("report.txt").exists());

    let Some(root) = mnist_root() else { return };
    let o = wgcnn_in(
        &cwd,
        &train_args(&root, &["--out", "earlier-run", "--overwrite"]),
    );
    assert_ok(&o, "train --overwrite");
    assert!(out.join("weights.safetensors").is_file());
}

// 3 and 4. The history is written after every epoch and survives a kill -9; a run resumed
// into its own folder numbers its epochs as the model counts them and continues the
// history; the killed writes' temporary files go.
#[test]
fn history_survives_a_kill_and_resume_continues_it() {
    let Some(root) = mnist_root() else { return };
    let cwd = tmp("kill");
    let csv = cwd.join("run/history.csv");
    let model = cwd.join("run/model.safetensors");
    let long = ["--epochs", "30", "--limit", "2000", "--out", "run"];
    let mut child = command(&cwd, &train_args(&root, &long))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Killed once the first epoch's model file is there (the history is written before it).
    while !model.exists() && child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no model.safetensors"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (epochs, before) = history(&csv);
    assert!(!epochs.is_empty(), "the killed run left no history rows");
    assert_eq!(epochs, (1..=epochs.len()).collect::<Vec<_>>());
    eprintln!("killed after {} epochs", epochs.len());

    // A write killed half-way leaves its temporary file: the next write removes it.
    let stale = cwd.join("run/.model.safetensors.AbC123.tmp");
    std::fs::write(&stale, b"half a model").unwrap();
    let o = wgcnn_in(
        &cwd,
        &train_args(
            &root,
            &[
                "--epochs",
                "32",
                "--limit",
                "2000",
                "--out",
                "run",
                "--resume",
                "run/model.safetensors",
            ],
        ),
    );
    assert_ok(&o, "resume into the run's own folder");
    assert!(!stale.exists(), "the stale temporary file is still there");
    let (epochs, after) = history(&csv);
    assert_eq!(
        epochs,
        (1..=32).collect::<Vec<_>>(),
        "epochs of the resumed run"
    );
    assert_eq!(after[..before.len()], before[..], "earlier rows changed");
    let report = std::fs::read_to_string(cwd.join("run/report.txt")).unwrap();
    assert!(report.contains("Epoch 32/32 - "), "{report}");
}

// 5, 7, 12, 13, 14. Failed runs leave no folder; eval and predict take the newest
// finished run and say which file they used; one bad image costs only its own result;
// an experiment and --model exclude each other; eval needs the test set only.
#[test]
fn failed_runs_leave_nothing_and_eval_finds_the_newest_finished_run() {
    let Some(root) = mnist_root() else { return };
    let cwd = tmp("newest");
    // An empty folder from an old failed run, and a killed run's folder (no weights).
    std::fs::create_dir_all(cwd.join("runs/mnist-dense")).unwrap();
    let o = wgcnn_in(&cwd, &train_args(&root, &[]));
    assert_ok(&o, "train");
    assert_eq!(wrote(&o), "runs/mnist-dense-2");
    let model = "runs/mnist-dense-2/model.safetensors";

    // Failures after the checks of today's code created its folder: none is left.
    let o = wgcnn_in(&cwd, &train_args(&root, &["--resume", model]));
    assert_fails_mentioning(&o, &["trained 1 epochs already"]);
    let o = wgcnn_in(&cwd, &train_args(&root, &["--lr", "1e38", "--epochs", "2"]));
    assert_fails_mentioning(&o, &["the loss became"]);
    let mut runs: Vec<String> = std::fs::read_dir(cwd.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    assert_eq!(
        runs,
        ["mnist-dense", "mnist-dense-2"],
        "folders left behind"
    );

    let root_s = root.to_str().unwrap();
    let o = wgcnn_in(
        &cwd,
        &[
            "eval",
            "mnist-dense",
            "--data",
            root_s,
            "--no-download",
            "--limit-test",
            "50",
        ],
    );
    assert_ok(&o, "eval");
    assert!(
        stdout(&o).contains("weights: runs/mnist-dense-2/weights.safetensors"),
        "{}",
        stdout(&o)
    );

    // eval reads the test set only: a folder without MNIST's training files will do.
    let data = cwd.join("test-only");
    std::fs::create_dir_all(data.join("mnist")).unwrap();
    for f in std::fs::read_dir(root.join("mnist")).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("t10k") {
            std::fs::copy(f.path(), data.join("mnist").join(f.file_name())).unwrap();
        }
    }
    let o = wgcnn_in(
        &cwd,
        &[
            "eval",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--no-download",
            "--limit-test",
            "50",
        ],
    );
    assert_ok(&o, "eval --model with the test set only");

    // predict: the newest run's weights by default, said on stderr; every good image
    // gets its line even when another fails, and the exit code says one failed.
    std::fs::write(cwd.join("notes.txt"), "not an image").unwrap();
    let img = "runs/mnist-dense-2/input.png";
    let o = wgcnn_in(&cwd, &["predict", "mnist-dense", img, "notes.txt", img]);
    assert_fails_mentioning(
        &o,
        &[
            "using the weights runs/mnist-dense-2/weights.safetensors",
            "notes.txt",
            "1 of 3 images could not be classified",
        ],
    );
    assert_eq!(
        stdout(&o).matches("input.png: ").count(),
        2,
        "{}",
        stdout(&o)
    );
    let o = wgcnn_in(&cwd, &["predict", "--model", model, "notes.txt", img]);
    assert_fails_mentioning(&o, &["using the model file", "notes.txt"]);
    assert_eq!(
        stdout(&o).matches("input.png: ").count(),
        1,
        "{}",
        stdout(&o)
    );

    // An experiment with --model: said so, not "image file not found: mnist-dense".
    let o = wgcnn_in(&cwd, &["predict", "mnist-dense", "--model", model, img]);
    assert_fails_mentioning(&o, &["'mnist-dense' is an experiment", "--model FILE"]);
    let help = stdout(&wgcnn(&["predict", "--help"]));
    assert!(
        help.contains("predict [OPTIONS] <EXPERIMENT> <IMAGE>...")
            && help.contains("predict [OPTIONS] --model <FILE> <IMAGE>..."),
        "{help}"
    );
}

// 6. An --out that cannot be written fails before any work.
#[test]
fn an_unwritable_out_fails_before_any_work() {
    let cwd = tmp("unwritable");
    std::fs::write(cwd.join("a-file"), "").unwrap();
    let o = wgcnn_in(
        &cwd,
        &[
            "train",
            "mnist-dense",
            "--out",
            "a-file/run",
            "--data",
            "/nonexistent",
            "--no-download",
        ],
    );
    assert_fails_mentioning(&o, &["a-file", "is not a folder"]);

    let ro = cwd.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes anywhere: run the binary as nobody then, as a user would meet it.
    let root_user = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0");
    let args = [
        "train",
        "mnist-dense",
        "--out",
        ro.to_str().unwrap(),
        "--data",
        "/nonexistent",
        "--no-download",
    ];
    let o = if root_user {
        let Ok(o) = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_wgcnn"))
            .args(args)
            .current_dir(&cwd)
            .output()
        else {
            eprintln!("skipping the read-only case: running as root without setpriv");
            return;
        };
        o
    } else {
        wgcnn_in(&cwd, &args)
    };
    assert_fails_mentioning(&o, &["read-only", "is not writable"]);
}

// 10. A model file whose description claims a huge layer is an error, not an abort.
#[test]
fn a_model_file_claiming_a_huge_layer_is_an_error() {
    let dir = tmp("huge");
    let (model, _) = small_model_files(&dir, "mnist-dense", 1 << 40);
    let o = wgcnn(&["eval", "--model", model.to_str().unwrap()]);
    assert_fails_mentioning(&o, &["dense", "kernel", "[784, 1099511627776]"]);
}

// 15. A bad WGPU_BACKEND names itself and the valid values.
#[test]
fn a_bad_wgpu_backend_is_named() {
    for args in [&["devices"][..], &["summary", "mnist-dense"][..]] {
        let o = command(Path::new("."), args)
            .env("WGPU_BACKEND", "bogus")
            .output()
            .unwrap();
        if args[0] == "summary" {
            assert_ok(&o, "summary needs no GPU");
            continue;
        }
        assert_fails_mentioning(&o, &["WGPU_BACKEND=bogus", "vulkan", "dx12"]);
    }
}

// 16. Numeric options take negative numbers, so that their range errors show.
#[test]
fn numeric_options_report_their_range() {
    let cwd = tmp("ranges");
    for (flag, value, words) in [
        ("--lr", "-1", &["finite positive number", "-1"][..]),
        ("--lr", "inf", &["finite positive number", "inf"][..]),
        ("--translation", "-1", &["translation factor", "[0, 1]"][..]),
        ("--translation", "nan", &["translation factor", "NaN"][..]),
        ("--translation", "5", &["translation factor", "5"][..]),
        (
            "--epochs",
            "-1",
            &["--epochs", "must be at least 1, got -1"][..],
        ),
        (
            "--batch-size",
            "0",
            &["--batch-size", "must be at least 1, got 0"][..],
        ),
        (
            "--limit",
            "-5",
            &["--limit", "must be at least 1, got -5"][..],
        ),
    ] {
        let o = wgcnn_in(
            &cwd,
            &[
                "train",
                "mnist-dense",
                flag,
                value,
                "--data",
                "/nonexistent",
                "--no-download",
            ],
        );
        assert_fails_mentioning(&o, words);
        assert!(!stderr(&o).contains("-- -1"), "{}", stderr(&o));
    }
    assert!(!cwd.join("runs").exists(), "a refused run made a folder");
}

// 17. A weights file where a model file belongs: the command line that takes it.
#[test]
fn a_weights_file_given_as_a_model_names_the_command_for_it() {
    let dir = tmp("weights-as-model");
    let (_, weights) = small_model_files(&dir, "mnist-dense", 10);
    let w = weights.to_str().unwrap();
    let o = wgcnn(&["eval", "--model", w]);
    assert_fails_mentioning(&o, &["weights only", "wgcnn eval EXPERIMENT --weights"]);
    let o = wgcnn(&["predict", "--model", w, "x.png"]);
    assert_fails_mentioning(&o, &["weights only", "wgcnn predict EXPERIMENT --weights"]);
    let o = wgcnn_in(&dir, &["train", "mnist-dense", "--resume", w]);
    assert_fails_mentioning(
        &o,
        &[
            "--resume takes a run's model file",
            "wgcnn eval mnist-dense --weights",
        ],
    );
    assert!(!stderr(&o).contains("load_weights"), "{}", stderr(&o));
}

// 18. A mistyped --data: the failed download says how to point at the data, and leaves
// no folders behind.
#[test]
fn a_failed_download_names_data_and_leaves_no_folders() {
    let cwd = tmp("typo");
    // The proxy is a closed local port: the download fails at once, network or not.
    let o = command(
        &cwd,
        &[
            "train",
            "mnist-dense",
            "--data",
            "typo/datasets",
            "--limit",
            "10",
        ],
    )
    .env("HTTPS_PROXY", "http://127.0.0.1:9")
    .env("https_proxy", "http://127.0.0.1:9")
    .env("ALL_PROXY", "http://127.0.0.1:9")
    .output()
    .unwrap();
    assert_fails_mentioning(&o, &["typo/datasets/mnist", "--data", "WGCNN_DATA"]);
    assert!(
        !cwd.join("typo").exists(),
        "the download left folders behind"
    );
}

/// `dir/<shade>/<i>.png`: 24 noisy 10×10 RGB images per class, the class the grey
/// level (dark, mid, light).
fn colour_folder(dir: &Path) {
    use image::{Rgb, RgbImage};
    let mut seed = 7u32;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 27) as u8
    };
    for (name, colour) in [
        ("dark", [20, 30, 10]),
        ("mid", [120, 130, 110]),
        ("light", [220, 230, 210]),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..24 {
            let img = RgbImage::from_fn(10, 10, |_, _| {
                Rgb(colour.map(|c: u8| c.saturating_add(noise())))
            });
            img.save(dir.join(name).join(format!("{i:02}.png")))
                .unwrap();
        }
    }
}

#[test]
fn image_folder_trains_an_experiments_architecture_on_a_users_folder() {
    let dir = tmp("image-folder");
    let data = dir.join("photos");
    colour_folder(&data);
    let run = dir.join("run");
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "image-folder",
            "--data",
            data_s,
            "--arch",
            "mnist-dense",
            "--image-size",
            "8",
            "--lr",
            "0.02",
            "--batch-size",
            "8",
            "-q",
            "--out",
            run_s,
        ];
        args.extend_from_slice(extra);
        wgcnn_in(&dir, &args)
    };
    let o = train(&["--epochs", "20"]);
    assert_ok(&o, "train image-folder");
    for f in [
        "model.safetensors",
        "weights.safetensors",
        "report.txt",
        "history.csv",
        "confusion_matrix.png",
        "training_curves.png",
        "input.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(run.join("report.txt")).unwrap();
    assert!(
        report.contains("58 training and 14 validation images of 8x8x1")
            && report.contains("3 classes: dark, light, mid"),
        "{report}"
    );
    let accuracy = |text: &str, row: &str| -> f32 {
        let line = text
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let val = accuracy(&report, "test ");
    assert!(
        val >= 0.7,
        "validation accuracy {val} (chance: 0.33):\n{report}"
    );

    // eval and predict read what the model file records: folder, size, split, classes.
    let o = wgcnn_in(
        &dir,
        &["eval", "--model", &format!("{run_s}/model.safetensors")],
    );
    assert_ok(&o, "eval --model");
    assert_eq!(accuracy(&stdout(&o), "validation"), val);
    let image = data.join("light/03.png");
    let o = wgcnn_in(
        &dir,
        &[
            "predict",
            "--model",
            &format!("{run_s}/model.safetensors"),
            image.to_str().unwrap(),
        ],
    );
    assert_ok(&o, "predict --model");
    assert!(stdout(&o).contains(": light "), "{}", stdout(&o));

    // --resume continues the run; the wrong flags are named.
    let model = format!("{run_s}/model.safetensors");
    assert_ok(&train(&["--epochs", "21", "--resume", &model]), "resume");
    let (epochs, _) = history(&run.join("history.csv"));
    assert_eq!(epochs, (1..=21).collect::<Vec<_>>());
    let o = wgcnn_in(
        &dir,
        &[
            "train",
            "image-folder",
            "--data",
            data_s,
            "--image-size",
            "8",
        ],
    );
    assert_fails_mentioning(&o, &["--arch"]);
    let o = wgcnn_in(&dir, &["train", "mnist-dense", "--arch", "mnist-conv"]);
    assert_fails_mentioning(&o, &["image-folder"]);
}
