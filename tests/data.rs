//! Tests of `wgcnn::data` on files the tests write themselves, a local HTTP
//! server for downloads, and (when present) the real datasets in ../shared.

mod common;

use flate2::{Compression, write::GzEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use wgcnn::data::*;

// ---------- helpers ----------

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(bytes))
}

/// Full error chain, as the user would see it.
fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

fn assert_contains(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "error {text:?} should mention {w:?}");
    }
}

const ROWS: usize = 2;
const COLS: usize = 3; // not square, so a row/column mix-up shows

fn mnist_pixel(i: usize, p: usize) -> u8 {
    ((i * 37 + p * 11) % 256) as u8
}

fn idx_images(n: usize, seed: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [2051u32, n as u32, ROWS as u32, COLS as u32] {
        v.extend(w.to_be_bytes());
    }
    for i in 0..n {
        for p in 0..ROWS * COLS {
            v.push(mnist_pixel(i + seed, p));
        }
    }
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(2049u32.to_be_bytes());
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend(labels);
    v
}

const TRAIN_LABELS: [u8; 5] = [9, 0, 3, 9, 1];
const TEST_LABELS: [u8; 3] = [7, 2, 0];

/// The four MNIST files (unpacked names and contents); test images use seed 100.
fn mnist_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("train-images-idx3-ubyte", idx_images(5, 0)),
        ("train-labels-idx1-ubyte", idx_labels(&TRAIN_LABELS)),
        ("t10k-images-idx3-ubyte", idx_images(3, 100)),
        ("t10k-labels-idx1-ubyte", idx_labels(&TEST_LABELS)),
    ]
}

fn write_mnist(dir: &Path, gzipped: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in mnist_files() {
        if gzipped {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn check_mnist(split: &Split) {
    for (ds, labels, seed) in [
        (&split.train, &TRAIN_LABELS[..], 0),
        (&split.test, &TEST_LABELS[..], 100),
    ] {
        assert_eq!(ds.len(), labels.len());
        assert_eq!((ds.height, ds.width, ds.channels), (ROWS, COLS, 1));
        assert_eq!(ds.image_len(), ROWS * COLS);
        assert_eq!(ds.images.len(), labels.len() * ROWS * COLS);
        let want: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        assert_eq!(ds.labels, want);
        assert_eq!(
            ds.class_names,
            ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        );
        for i in 0..ds.len() {
            let want: Vec<f32> = (0..ROWS * COLS)
                .map(|p| f32::from(mnist_pixel(i + seed, p)) / 255.0)
                .collect();
            assert_eq!(ds.image(i), &want[..], "image {i}");
        }
    }
}

const CIFAR_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const BATCHES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
const RECORD: usize = 3073;

/// Channel `c` of pixel `p` in record `i` of batch `b`: each channel lives in its
/// own value band (R < 80 <= G < 160 <= B), so a planar/interleaved mix-up shows.
fn cifar_value(b: usize, i: usize, c: usize, p: usize) -> u8 {
    (c * 80 + (b * 7 + i * 3 + p) % 80) as u8
}

fn cifar_label(b: usize, i: usize) -> u8 {
    ((b * 3 + i) % 10) as u8
}

fn cifar_batch(b: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * RECORD);
    for i in 0..n {
        v.push(cifar_label(b, i));
        for c in 0..3 {
            v.extend((0..1024).map(|p| cifar_value(b, i, c, p)));
        }
    }
    v
}

/// CRLF and a blank line in the middle: both must be tolerated.
fn cifar_meta() -> String {
    let mut s = CIFAR_NAMES[..5].join("\r\n");
    s.push_str("\r\n\r\n");
    s.push_str(&CIFAR_NAMES[5..].join("\n"));
    s.push('\n');
    s
}

fn write_cifar(dir: &Path, per_batch: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (b, name) in BATCHES.iter().enumerate() {
        std::fs::write(dir.join(name), cifar_batch(b, per_batch)).unwrap();
    }
    std::fs::write(dir.join("batches.meta.txt"), cifar_meta()).unwrap();
}

fn check_cifar(split: &Split, per_batch: usize) {
    let check = |ds: &Dataset, batches: std::ops::Range<usize>| {
        assert_eq!(ds.len(), batches.len() * per_batch);
        assert_eq!((ds.height, ds.width, ds.channels), (32, 32, 3));
        assert_eq!(ds.class_names, CIFAR_NAMES);
        assert_eq!(ds.num_classes(), 10);
        let mut k = 0;
        for b in batches {
            for i in 0..per_batch {
                assert_eq!(ds.labels[k], u32::from(cifar_label(b, i)));
                let img = ds.image(k);
                for y in 0..32 {
                    for x in 0..32 {
                        for c in 0..3 {
                            let want = f32::from(cifar_value(b, i, c, y * 32 + x)) / 255.0;
                            assert_eq!(img[(y * 32 + x) * 3 + c], want, "b{b} i{i} y{y} x{x} c{c}");
                        }
                    }
                }
                k += 1;
            }
        }
    };
    check(&split.train, 0..5);
    check(&split.test, 5..6);
}

/// Serves `files` (URL path without the leading `/` -> body) on 127.0.0.1 and
/// answers 404 otherwise; returns the base URL. The thread ends with the process.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let resp = match files.get(req.url().trim_start_matches('/')) {
                Some(body) => tiny_http::Response::from_data(body.clone()),
                None => tiny_http::Response::from_string("not found").with_status_code(404),
            };
            let _ = req.respond(resp);
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------- MNIST ----------

#[test]
fn mnist_gz_and_plain_load_exactly() {
    for gzipped in [true, false] {
        let tmp = TempDir::new().unwrap();
        write_mnist(tmp.path(), gzipped);
        check_mnist(&load_mnist(tmp.path()).unwrap());
    }
}

#[test]
fn mnist_in_root_without_download() {
    let tmp = TempDir::new().unwrap();
    write_mnist(&tmp.path().join("mnist"), true);
    check_mnist(&mnist(tmp.path(), false).unwrap());
    // Files present (gzipped or not): `download = true` must not fetch anything.
    check_mnist(&mnist(tmp.path(), true).unwrap());
    let plain = TempDir::new().unwrap();
    write_mnist(&plain.path().join("mnist"), false);
    check_mnist(&mnist(plain.path(), true).unwrap());
    assert_eq!(file_names(&plain.path().join("mnist")).len(), 4);
}

#[test]
fn mnist_missing_file_names_path_and_hints() {
    let tmp = TempDir::new().unwrap();
    let text = err_text(mnist(tmp.path(), false));
    let looked = tmp.path().join("mnist").join("train-images-idx3-ubyte.gz");
    assert_contains(
        &text,
        &[&looked.display().to_string(), "--data", "WGCNN_DATA"],
    );

    // One file of four missing.
    write_mnist(tmp.path(), false);
    std::fs::remove_file(tmp.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let text = err_text(load_mnist(tmp.path()));
    assert_contains(
        &text,
        &["not found", "t10k-labels-idx1-ubyte", "WGCNN_DATA"],
    );
}

/// Writes the valid set, replaces one file, and returns the loader's error text.
fn mnist_error_with(name: &str, bytes: Vec<u8>) -> String {
    let tmp = TempDir::new().unwrap();
    write_mnist(tmp.path(), false);
    std::fs::write(tmp.path().join(name), bytes).unwrap();
    err_text(load_mnist(tmp.path()))
}

#[test]
fn mnist_wrong_magic() {
    let mut bytes = idx_images(5, 0);
    bytes[3] = 0x01; // 2049: a label file's magic
    let text = mnist_error_with("train-images-idx3-ubyte", bytes);
    assert_contains(&text, &["magic", "train-images-idx3-ubyte", "2049"]);

    let text = mnist_error_with("t10k-labels-idx1-ubyte", idx_images(3, 0));
    assert_contains(&text, &["magic", "t10k-labels-idx1-ubyte"]);
}

#[test]
fn mnist_truncated() {
    let mut bytes = idx_images(5, 0);
    bytes.pop();
    let text = mnist_error_with("train-images-idx3-ubyte", bytes);
    assert_contains(&text, &["truncated", "train-images-idx3-ubyte"]);

    let text = mnist_error_with("train-labels-idx1-ubyte", vec![0, 0, 8]);
    assert_contains(&text, &["truncated", "train-labels-idx1-ubyte"]);

    // A header claiming billions of images must fail on size, not allocate.
    let mut bytes = idx_images(5, 0);
    bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let text = mnist_error_with("train-images-idx3-ubyte", bytes);
    assert_contains(&text, &["truncated", "train-images-idx3-ubyte"]);

    let mut bytes = idx_images(5, 0);
    bytes.push(0);
    let text = mnist_error_with("train-images-idx3-ubyte", bytes);
    assert_contains(&text, &["unexpected bytes", "train-images-idx3-ubyte"]);
}

#[test]
fn mnist_count_mismatch() {
    let text = mnist_error_with("train-labels-idx1-ubyte", idx_labels(&[1, 2, 3, 4]));
    assert_contains(
        &text,
        &[
            "count mismatch",
            "train-labels-idx1-ubyte",
            "5 images",
            "4 labels",
        ],
    );
}

#[test]
fn mnist_label_out_of_range() {
    let text = mnist_error_with("t10k-labels-idx1-ubyte", idx_labels(&[7, 10, 0]));
    assert_contains(
        &text,
        &["label 10", "out of range", "t10k-labels-idx1-ubyte"],
    );
}

#[test]
fn mnist_corrupt_gzip() {
    let tmp = TempDir::new().unwrap();
    write_mnist(tmp.path(), true);
    let path = tmp.path().join("train-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0xff; // inside the CRC32/size trailer
    std::fs::write(&path, &bytes).unwrap();
    let text = err_text(load_mnist(tmp.path()));
    assert_contains(&text, &["gzip", "train-labels-idx1-ubyte.gz"]);

    std::fs::write(&path, &bytes[..n / 2]).unwrap();
    let text = err_text(load_mnist(tmp.path()));
    assert_contains(&text, &["gzip", "train-labels-idx1-ubyte.gz"]);

    std::fs::write(&path, b"definitely not gzip").unwrap();
    let text = err_text(load_mnist(tmp.path()));
    assert_contains(&text, &["gzip", "train-labels-idx1-ubyte.gz"]);
}

// ---------- CIFAR-10 ----------

#[test]
fn cifar_loads_nhwc_exactly() {
    let tmp = TempDir::new().unwrap();
    write_cifar(tmp.path(), 3);
    check_cifar(&load_cifar10(tmp.path()).unwrap(), 3);

    let root = TempDir::new().unwrap();
    write_cifar(&root.path().join("cifar-10-batches-bin"), 2);
    check_cifar(&cifar10(root.path(), false).unwrap(), 2);
    check_cifar(&cifar10(root.path(), true).unwrap(), 2); // present: no download
    assert_eq!(file_names(root.path()), ["cifar-10-batches-bin"]);
}

fn cifar_error_with(name: &str, bytes: Vec<u8>) -> String {
    let tmp = TempDir::new().unwrap();
    write_cifar(tmp.path(), 2);
    std::fs::write(tmp.path().join(name), bytes).unwrap();
    err_text(load_cifar10(tmp.path()))
}

#[test]
fn cifar_errors() {
    let mut bytes = cifar_batch(2, 2);
    bytes.pop();
    let text = cifar_error_with("data_batch_3.bin", bytes);
    assert_contains(&text, &["truncated", "data_batch_3.bin", "3073"]);

    let text = cifar_error_with("test_batch.bin", Vec::new());
    assert_contains(&text, &["test_batch.bin", "3073"]);

    let mut bytes = cifar_batch(0, 2);
    bytes[RECORD] = 10; // label of record 1
    let text = cifar_error_with("data_batch_1.bin", bytes);
    assert_contains(&text, &["label 10", "out of range", "data_batch_1.bin"]);

    // Fewer class names make a valid label out of range.
    let text = cifar_error_with("batches.meta.txt", b"a\nb\n".to_vec());
    assert_contains(&text, &["out of range", "batches.meta.txt"]);

    let text = cifar_error_with("batches.meta.txt", b"\n\n".to_vec());
    assert_contains(&text, &["no class names", "batches.meta.txt"]);

    let tmp = TempDir::new().unwrap();
    write_cifar(tmp.path(), 1);
    std::fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();
    let text = err_text(load_cifar10(tmp.path()));
    let looked = tmp.path().join("data_batch_4.bin");
    assert_contains(
        &text,
        &["not found", &looked.display().to_string(), "WGCNN_DATA"],
    );

    let root = TempDir::new().unwrap();
    let text = err_text(cifar10(root.path(), false));
    let looked = root.path().join("cifar-10-batches-bin");
    assert_contains(&text, &[&looked.display().to_string(), "--data"]);
}

// ---------- fuzz-style robustness ----------

/// Truncates each file at many offsets and flips random bytes (seeded); the
/// loader must return Ok or Err, never panic (a panic fails this test).
fn fuzz(files: &[(String, Vec<u8>)], load: &dyn Fn(&Path) -> bool, seed: u64) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ok, mut err) = (0, 0);
    let tmp = TempDir::new().unwrap();
    let write_all = || {
        for (name, bytes) in files {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    };
    write_all();
    let mut count = |good: bool| if good { ok += 1 } else { err += 1 };
    for (name, bytes) in files {
        let path = tmp.path().join(name);
        // Every offset for small files, ~60 spread offsets for big ones.
        let step = (bytes.len() / 60).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            count(load(tmp.path()));
        }
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..=3) {
                let i = rng.random_range(0..b.len());
                b[i] ^= rng.random_range(1..=255u8);
            }
            std::fs::write(&path, &b).unwrap();
            count(load(tmp.path()));
        }
        std::fs::write(&path, bytes).unwrap();
    }
    (ok, err)
}

#[test]
fn fuzz_mnist_never_panics() {
    for gzipped in [false, true] {
        let files: Vec<(String, Vec<u8>)> = mnist_files()
            .into_iter()
            .map(|(n, b)| match gzipped {
                true => (format!("{n}.gz"), gz(&b)),
                false => (n.to_string(), b),
            })
            .collect();
        let (ok, err) = fuzz(&files, &|d| load_mnist(d).is_ok(), 42);
        // Most corruptions must be caught; some flips (pixels) are valid data.
        assert!(err > ok, "gz={gzipped}: {ok} ok, {err} err");
        assert!(ok > 0, "gz={gzipped}: pixel flips should still load");
    }
}

#[test]
fn fuzz_cifar_never_panics() {
    let mut files: Vec<(String, Vec<u8>)> = BATCHES
        .iter()
        .enumerate()
        .map(|(b, n)| (n.to_string(), cifar_batch(b, 1)))
        .collect();
    files.push(("batches.meta.txt".into(), cifar_meta().into_bytes()));
    let (ok, err) = fuzz(&files, &|d| load_cifar10(d).is_ok(), 7);
    assert!(ok > 0 && err > 0, "{ok} ok, {err} err");
}

#[test]
fn fuzz_image_folder_never_panics() {
    let img = image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, 7]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let files = vec![("a/x.png".to_string(), png.into_inner())];
    let (ok, err) = fuzz(&files, &|d| load_image_folder(d, None).is_ok(), 3);
    assert!(err > 0, "{ok} ok, {err} err");
}

// ---------- downloads ----------

#[test]
fn download_mnist_success_mismatch_and_404() {
    let mut served = HashMap::new();
    let mut table = Vec::new();
    for (name, bytes) in mnist_files() {
        let gz_name = format!("{name}.gz");
        let body = gz(&bytes);
        table.push((gz_name.clone(), sha256_hex(&body)));
        served.insert(format!("mnist/{gz_name}"), body);
    }
    let base = serve(served);
    let url = format!("{base}mnist/");
    let table: Vec<(&str, &str)> = table
        .iter()
        .map(|(n, h)| (n.as_str(), h.as_str()))
        .collect();

    // Success: only the four files end up in the folder (no temporaries).
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("nested").join("mnist");
    download_mnist_from(&url, &dir, &table).unwrap();
    let mut want: Vec<String> = table.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(file_names(&dir), want);
    check_mnist(&load_mnist(&dir).unwrap());

    // Checksum mismatch: error names file and both hashes; nothing left behind.
    let dir = tmp.path().join("bad");
    let wrong = "00".repeat(32);
    let bad = [(table[1].0, wrong.as_str())];
    let text = err_text(download_mnist_from(&url, &dir, &bad));
    assert_contains(
        &text,
        &["checksum mismatch", table[1].0, &wrong, table[1].1],
    );
    // The folder the download created goes too (a mistyped --data leaves nothing), and
    // the error says how to point at data already on the machine.
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_contains(&text, &["--data", "WGCNN_DATA"]);

    // 404.
    let dir = tmp.path().join("missing");
    let text = err_text(download_mnist_from(
        &format!("{base}nowhere"),
        &dir,
        &table[..1],
    ));
    assert_contains(&text, &["404", "train-images-idx3-ubyte.gz", "nowhere"]);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // A folder that existed before stays, empty or not.
    std::fs::create_dir_all(&dir).unwrap();
    let _ = download_mnist_from(&format!("{base}nowhere"), &dir, &table[..1]);
    assert!(dir.is_dir());
}

fn cifar_archive(per_batch: usize) -> (Vec<u8>, Vec<(String, String)>) {
    type Tar = tar::Builder<GzEncoder<Vec<u8>>>;
    fn add(tar: &mut Tar, name: &str, bytes: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let path = format!("cifar-10-batches-bin/{name}");
        tar.append_data(&mut h, path, bytes).unwrap();
    }
    let mut tar = Tar::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut sums = Vec::new();
    for (b, name) in BATCHES.iter().enumerate() {
        let bytes = cifar_batch(b, per_batch);
        if b < 5 {
            sums.push((name.to_string(), sha256_hex(&bytes)));
        }
        add(&mut tar, name, &bytes);
    }
    add(&mut tar, "batches.meta.txt", cifar_meta().as_bytes());
    add(&mut tar, "readme.html", b"<p>test</p>");
    (tar.into_inner().unwrap().finish().unwrap(), sums)
}

#[test]
fn download_cifar_success_mismatch_and_404() {
    let (archive, sums) = cifar_archive(2);
    let md5 = md5_hex(&archive);
    let base = serve(HashMap::from([("c10.tar.gz".to_string(), archive)]));
    let url = format!("{base}c10.tar.gz");
    let members: Vec<(&str, &str)> = sums.iter().map(|(n, h)| (n.as_str(), h.as_str())).collect();

    // Success: only the unpacked folder remains (no archive, no staging folder).
    let root = TempDir::new().unwrap();
    download_cifar10_from(&url, root.path(), &md5, &members).unwrap();
    assert_eq!(file_names(root.path()), ["cifar-10-batches-bin"]);
    check_cifar(&cifar10(root.path(), false).unwrap(), 2);

    // Archive checksum mismatch.
    let root = TempDir::new().unwrap();
    let wrong = "ab".repeat(16);
    let text = err_text(download_cifar10_from(&url, root.path(), &wrong, &members));
    assert_contains(&text, &["checksum mismatch", "md5", &wrong, &md5]);
    assert_eq!(file_names(root.path()), Vec::<String>::new());

    // Member checksum mismatch: nothing unpacked is kept.
    let mut bad = members.clone();
    let wrong = "cd".repeat(32);
    bad[1].1 = &wrong;
    let text = err_text(download_cifar10_from(&url, root.path(), &md5, &bad));
    assert_contains(
        &text,
        &[
            "checksum mismatch",
            "data_batch_2.bin",
            &wrong,
            members[1].1,
        ],
    );
    assert_eq!(file_names(root.path()), Vec::<String>::new());

    // 404.
    let text = err_text(download_cifar10_from(
        &format!("{base}gone.tar.gz"),
        root.path(),
        &md5,
        &members,
    ));
    assert_contains(&text, &["404", "gone.tar.gz"]);
    assert_eq!(file_names(root.path()), Vec::<String>::new());
}

// ---------- image folders ----------

fn rgb_png(path: &Path, w: u32, h: u32, seed: u8) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([seed.wrapping_add(x as u8), 100 + y as u8, 200 + seed])
    })
    .save(path)
    .unwrap();
}

#[test]
fn image_folder_loads_and_checks_sizes() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    for c in ["dog", "cat"] {
        std::fs::create_dir(d.join(c)).unwrap();
    }
    rgb_png(&d.join("cat/b.png"), 4, 3, 20);
    rgb_png(&d.join("cat/a.png"), 4, 3, 10);
    rgb_png(&d.join("dog/z.png"), 4, 3, 30);
    std::fs::write(d.join("cat/.DS_Store"), b"junk").unwrap(); // hidden: ignored

    let ds = load_image_folder(d, None).unwrap();
    assert_eq!(ds.class_names, ["cat", "dog"]);
    assert_eq!(ds.labels, [0, 0, 1]);
    assert_eq!((ds.height, ds.width, ds.channels), (3, 4, 3));
    for (i, seed) in [10u8, 20, 30].into_iter().enumerate() {
        let img = ds.image(i);
        for y in 0..3 {
            for x in 0..4 {
                let px = &img[(y * 4 + x) * 3..][..3];
                let want =
                    [seed + x as u8, 100 + y as u8, 200 + seed].map(|v| f32::from(v) / 255.0);
                assert_eq!(px, want, "image {i} x{x} y{y}");
            }
        }
    }

    // A differently sized image: an error naming it, unless a size is given.
    rgb_png(&d.join("dog/y.png"), 5, 3, 40);
    let text = err_text(load_image_folder(d, None));
    assert_contains(&text, &["y.png", "5x3", "4x3"]);
    let ds = load_image_folder(d, Some((8, 6))).unwrap();
    assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (4, 6, 8, 3));
    assert_eq!(ds.images.len(), 4 * 6 * 8 * 3);
    assert!(ds.images.iter().all(|v| (0.0..=1.0).contains(v)));

    // Greyscale-only folders give one channel.
    let grey = TempDir::new().unwrap();
    std::fs::create_dir(grey.path().join("only")).unwrap();
    image::GrayImage::from_fn(2, 2, |x, y| image::Luma([(y * 2 + x) as u8 * 85]))
        .save(grey.path().join("only/g.png"))
        .unwrap();
    let ds = load_image_folder(grey.path(), None).unwrap();
    assert_eq!(
        (ds.channels, ds.image(0)),
        (1, &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0][..])
    );

    // Undecodable file and missing folder: errors naming the path.
    std::fs::write(d.join("dog/broken.png"), b"not a png").unwrap();
    assert_contains(
        &err_text(load_image_folder(d, Some((8, 6)))),
        &["broken.png"],
    );
    assert_contains(
        &err_text(load_image_folder(d.join("nope"), None)),
        &["not found", "nope"],
    );
}

// ---------- Dataset helpers and data_root ----------

#[test]
fn subset_and_accessors() {
    let tmp = TempDir::new().unwrap();
    write_mnist(tmp.path(), false);
    let train = load_mnist(tmp.path()).unwrap().train;
    assert!(!train.is_empty());
    let s = train.subset(1..4).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s.labels, &train.labels[1..4]);
    assert_eq!(s.image(0), train.image(1));
    assert_eq!(s.class_names, train.class_names);
    assert!(train.subset(0..0).unwrap().is_empty());
    assert_contains(&err_text(train.subset(3..6)), &["out of range"]);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = train.subset(3..1);
    assert!(reversed.is_err());
}

#[test]
fn data_root_precedence() {
    assert_eq!(data_root(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    // The environment is not changed here (set_var is unsafe with threads).
    match std::env::var_os("WGCNN_DATA").filter(|v| !v.is_empty()) {
        Some(env) => assert_eq!(data_root(None), PathBuf::from(env)),
        None => assert!(data_root(None).ends_with("wgcnn") || data_root(None) == Path::new("data")),
    }
}

// ---------- the real datasets ----------

#[test]
fn real_datasets() {
    let Some(root) = common::mnist_root() else {
        return;
    };
    let t = std::time::Instant::now();
    let m = mnist(&root, false).unwrap();
    eprintln!("MNIST loaded in {:?}", t.elapsed());
    assert_eq!((m.train.len(), m.test.len()), (60000, 10000));
    for ds in [&m.train, &m.test] {
        assert_eq!((ds.height, ds.width, ds.channels), (28, 28, 1));
        assert_eq!(ds.images.len(), ds.len() * 784);
        assert!(ds.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    assert_eq!(
        histogram(&m.test),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(
        histogram(&m.train),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );

    let t = std::time::Instant::now();
    let c = cifar10(&root, false).unwrap();
    eprintln!("CIFAR-10 loaded in {:?}", t.elapsed());
    assert_eq!((c.train.len(), c.test.len()), (50000, 10000));
    for ds in [&c.train, &c.test] {
        assert_eq!((ds.height, ds.width, ds.channels), (32, 32, 3));
        assert_eq!(ds.images.len(), ds.len() * 3072);
        assert_eq!(ds.class_names, CIFAR_NAMES);
    }
    assert_eq!(histogram(&c.test), [1000; 10]);
    assert_eq!(histogram(&c.train), [5000; 10]);

    // The same sets as bytes (a quarter of the memory, for the streaming loader): their
    // floats are the f32 loaders' exactly, and the f32 sets turn back into them.
    let cb = wgcnn::data::cifar10_bytes(&root, false).unwrap();
    assert_eq!((cb.train.len(), cb.train.shape()), (50000, [32, 32, 3]));
    assert_eq!(cb.test.to_dataset(), c.test);
    assert_eq!(c.test.to_bytes().unwrap(), cb.test);
    let mb = wgcnn::data::mnist_bytes(&root, false).unwrap();
    assert_eq!((mb.train.len(), mb.test.shape()), (60000, [28, 28, 1]));
    assert_eq!(mb.to_split(), m);
}

fn histogram(ds: &Dataset) -> Vec<usize> {
    let mut h = vec![0; ds.num_classes()];
    for &l in &ds.labels {
        h[l as usize] += 1;
    }
    h
}
