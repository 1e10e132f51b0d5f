//! Running the `wgcnn` binary as a user would: helpers shared by the CLI test files.
#![allow(dead_code)] // each test file uses its own share of them

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `wgcnn args` in the test's working directory.
pub fn wgcnn(args: &[&str]) -> Output {
    wgcnn_in(Path::new("."), args)
}

/// Runs `wgcnn args` in `cwd`.
pub fn wgcnn_in(cwd: &Path, args: &[&str]) -> Output {
    command(cwd, args)
        .output()
        .expect("running the wgcnn binary")
}

/// The `wgcnn args` command in `cwd`, to add environment or spawn.
pub fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgcnn"));
    c.args(args).current_dir(cwd);
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run (a non-zero exit code, not a signal such as an abort) whose
/// stderr names every one of `words`, without a panic.
pub fn assert_fails_mentioning(o: &Output, words: &[&str]) {
    let err = stderr(o);
    assert!(
        o.status.code().is_some_and(|c| c != 0),
        "expected an error exit, got {}; stdout:\n{}\nstderr:\n{err}",
        o.status,
        stdout(o)
    );
    for w in words {
        assert!(err.contains(w), "stderr should mention {w:?}:\n{err}");
    }
    assert!(
        !err.contains("panicked"),
        "a panic instead of an error:\n{err}"
    );
}

/// Asserts a successful run, showing its output when it is not.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A fresh, empty folder `group/name` under the test's target folder.
pub fn tmp(group: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The datasets folder with MNIST in it (`WGCNN_DATA`, else `../shared/datasets`),
/// absolute; None, with a note, when it is missing outside CI (under CI that fails the
/// test).
pub fn mnist_root() -> Option<PathBuf> {
    let root = std::env::var_os("WGCNN_DATA")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"),
            PathBuf::from,
        );
    if root.join("mnist").is_dir() {
        return root.canonicalize().ok();
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} is missing",
        root.display()
    );
    eprintln!(
        "skipping: no MNIST under {} (set WGCNN_DATA to run this test)",
        root.display()
    );
    None
}

/// Saves a small CPU model as a model file (and its weights as a weights file) that
/// records `experiment`, with its Dense layer's `units` in the description replaced by
/// `claimed_units`: a crafted or corrupted file whose metadata claims a huge layer.
/// Returns (model file, weights file).
pub fn small_model_files(dir: &Path, experiment: &str, claimed_units: u64) -> (PathBuf, PathBuf) {
    use wgcnn::prelude::*;
    let build = || -> anyhow::Result<Sequential> {
        let mut m = Sequential::new();
        m.add(Input::new(&[28, 28, 1]))?;
        m.add(Flatten::new())?;
        m.add(Dense::new(10).activation(Softmax))?;
        m.set_device(Device::Cpu);
        m.compile(
            Optimizer::adam(),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )?;
        m.set_metadata("experiment", experiment);
        Ok(m)
    };
    let m = build().expect("a small CPU model");
    let (model, weights) = (
        dir.join("model.safetensors"),
        dir.join("weights.safetensors"),
    );
    m.save(&model).expect("saving the model");
    m.save_weights(&weights).expect("saving the weights");
    if claimed_units != 10 {
        let bytes = std::fs::read(&model).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        let json = meta.get_mut("wgcnn").unwrap();
        assert!(json.contains("\"units\":10"), "{json}");
        *json = json.replace("\"units\":10", &format!("\"units\":{claimed_units}"));
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let crafted = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
        std::fs::write(&model, crafted).unwrap();
    }
    (model, weights)
}
