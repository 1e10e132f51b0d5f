//! The Keras training loop beyond `fit(epochs)`: callbacks against hand-checked histories,
//! validation_split, train_on_batch, seeded augmentation, whole-model files, atomic writes
//! and bit-exact resume.

use std::path::PathBuf;
use wgcnn::callbacks::{EarlyStopping, ModelCheckpoint, Monitor, ReduceLROnPlateau};
use wgcnn::data::ImageBytes;
use wgcnn::data::augment::{FillMode, RandomTranslation, translate};
use wgcnn::prelude::*;
use wgcnn::testing::{random_labels, random_vec};

type R = anyhow::Result<()>;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("training")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gpu() -> Device {
    Device::gpu().expect("a GPU adapter (lavapipe in CI) is required")
}

/// A small image model with every kind of state a resume must carry: BatchNormalization
/// statistics, dropout masks, Adam's moments.
fn model(device: Device, seed: u64) -> anyhow::Result<Sequential> {
    let mut m = Sequential::new();
    m.add(Input::new(&[8, 8, 1]))?;
    m.add(Conv2D::new(4, 3).padding(Same))?;
    m.add(BatchNormalization::new().momentum(0.9))?;
    m.add(Activation::new(Relu))?;
    m.add(MaxPooling2D::new(2))?;
    m.add(Flatten::new())?;
    m.add(Dropout::new(0.2))?;
    m.add(Dense::new(3).activation(Softmax))?;
    m.set_device(device).set_seed(seed);
    m.compile(
        Optimizer::adam().learning_rate(0.02),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

/// Random images whose labels the model can partly learn (class = brightest third) and
/// validation data with random labels, whose loss falls, then rises as the model overfits:
/// a curve with a minimum for the callbacks to find.
fn data(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    wgcnn::testing::brightest_third(n, seed)
}

fn quiet(epochs: usize) -> FitConfig<'static> {
    FitConfig {
        epochs,
        batch_size: 16,
        verbose: false,
        ..Default::default()
    }
}

/// Keras 3's EarlyStopping, by hand on a recorded curve: (stopped epoch, best epoch).
fn early_stopping_by_hand(
    values: &[f32],
    patience: usize,
    min_delta: f32,
) -> (Option<usize>, usize) {
    let (mut best, mut best_epoch, mut wait) = (f32::INFINITY, 0, 0);
    for (epoch, &v) in values.iter().enumerate() {
        wait += 1;
        if v + min_delta < best {
            best = v;
            best_epoch = epoch;
            wait = 0;
        } else if wait >= patience && epoch > 0 {
            return (Some(epoch), best_epoch);
        }
    }
    (None, best_epoch)
}

#[test]
fn early_stopping_stops_at_the_keras_epoch_and_restores_the_best_weights() -> R {
    let (x, y) = data(96, 1);
    let (vx, _) = data(48, 2);
    let vy = random_labels(48, 3, 3);
    let dir = tmp("early-stopping");
    // The curve without callbacks (CPU: exact, and the same run as below up to the stop).
    let mut free = model(Device::Cpu, 5)?;
    let curve = free.fit(
        &x,
        &y,
        &FitConfig {
            validation_data: Some((&vx, &vy)),
            ..quiet(12)
        },
    )?;
    let (patience, min_delta) = (2, 1e-3);
    let (stop, best) = early_stopping_by_hand(&curve.val_loss, patience, min_delta);
    let stop = stop.expect("the validation loss turns up within 12 epochs");
    assert!(
        best < stop && stop < 11,
        "an early stop worth testing: {:?}",
        curve.val_loss
    );

    let mut m = model(Device::Cpu, 5)?;
    let every = dir.join("epoch-{epoch:02d}.safetensors");
    let h = m.fit(
        &x,
        &y,
        &FitConfig {
            validation_data: Some((&vx, &vy)),
            callbacks: vec![
                EarlyStopping::new(Monitor::ValLoss)
                    .patience(patience)
                    .min_delta(min_delta)
                    .restore_best_weights(true)
                    .into(),
                ModelCheckpoint::new(&every).save_weights_only(true).into(),
            ],
            ..quiet(12)
        },
    )?;
    assert_eq!(h.stopped_epoch, Some(stop));
    assert_eq!(h.best_epoch, Some(best));
    assert_eq!(h.loss.len(), stop + 1, "no epoch after the stop");
    assert_eq!(
        h.val_loss,
        curve.val_loss[..=stop],
        "the same run up to the stop"
    );
    // The model ends with the weights the checkpoint wrote after the best epoch.
    let mut at_best = model(Device::Cpu, 0)?;
    at_best.load_weights(dir.join(format!("epoch-{:02}.safetensors", best + 1)))?;
    assert_eq!(m.get_weights()?, at_best.get_weights()?);
    // Keras restores the weights only: the optimizer keeps its state and step count.
    assert_eq!(m.steps_taken(), 6 * (stop as u64 + 1));
    assert_eq!(h.checkpoints.len(), stop + 1);
    Ok(())
}

#[test]
fn checkpoint_best_only_and_lr_on_plateau_follow_the_curve() -> R {
    let (x, y) = data(96, 1);
    let (vx, _) = data(48, 2);
    let vy = random_labels(48, 3, 3);
    let dir = tmp("plateau");
    let val = Some((&vx[..], &vy[..]));
    let mut free = model(Device::Cpu, 5)?;
    let curve = free.fit(
        &x,
        &y,
        &FitConfig {
            validation_data: val,
            ..quiet(10)
        },
    )?;
    // By hand: save_best_only writes at every new minimum; ReduceLROnPlateau(patience 1,
    // factor 0.5, min_delta 1e-3, cooldown 1) halves the rate after each epoch without a
    // new minimum, then skips counting for one epoch.
    let mut best = f32::INFINITY;
    let saves: Vec<usize> = (0..10)
        .filter(|&e| {
            let better = curve.val_loss[e] < best;
            best = best.min(curve.val_loss[e]);
            better
        })
        .collect();
    // lrs[e]: the rate in effect during epoch e (what the history logs, as Keras' logs do).
    let (mut lr, mut best, mut wait, mut cooldown) = (0.02f32, f32::INFINITY, 0, 0);
    let mut lrs = Vec::new();
    for &v in &curve.val_loss {
        lrs.push(lr);
        if cooldown > 0 {
            cooldown -= 1;
            wait = 0;
        }
        if v < best - 1e-3 {
            best = v;
            wait = 0;
        } else if cooldown == 0 {
            wait += 1;
            if wait >= 1 {
                lr *= 0.5;
                cooldown = 1;
                wait = 0;
            }
        }
    }
    // The checkpoint run trains exactly like the free one.
    let mut m = model(Device::Cpu, 5)?;
    let best_file = dir.join("best.safetensors");
    let h = m.fit(
        &x,
        &y,
        &FitConfig {
            validation_data: val,
            callbacks: vec![ModelCheckpoint::new(&best_file).save_best_only(true).into()],
            ..quiet(10)
        },
    )?;
    let saved: Vec<usize> = h.checkpoints.iter().map(|(e, _)| *e).collect();
    assert_eq!(saved, saves);
    let restored = Model::load_on(&best_file, Some(Device::Cpu))?;
    assert_eq!(restored.epochs_trained(), saves.last().unwrap() + 1);
    // The plateau run: the learning rate recorded per epoch is the hand-computed one (the
    // runs diverge after the first reduction, so only up to there is the curve shared).
    let mut m = model(Device::Cpu, 5)?;
    let h = m.fit(
        &x,
        &y,
        &FitConfig {
            validation_data: val,
            callbacks: vec![
                ReduceLROnPlateau::new(Monitor::ValLoss)
                    .patience(1)
                    .factor(0.5)
                    .min_delta(1e-3)
                    .cooldown(1)
                    .into(),
            ],
            ..quiet(10)
        },
    )?;
    // The first epoch at the halved rate was decided on the shared curve.
    let first_cut = lrs
        .iter()
        .position(|&l| l < 0.02)
        .expect("a plateau in 10 epochs");
    assert_eq!(h.learning_rate[..=first_cut], lrs[..=first_cut]);
    assert!(h.learning_rate.windows(2).all(|w| w[1] <= w[0]));
    assert!(m.constant_learning_rate() <= h.learning_rate.last().copied());
    // A monitor that needs validation data, without it: a clear error before training.
    let err = model(Device::Cpu, 5)?
        .fit(
            &x,
            &y,
            &FitConfig {
                callbacks: vec![EarlyStopping::new(Monitor::ValAccuracy).into()],
                ..quiet(2)
            },
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("val_accuracy") && err.contains("validation"),
        "{err}"
    );
    Ok(())
}

#[test]
fn validation_split_holds_out_the_last_fraction_before_shuffling() -> R {
    let (x, y) = data(40, 7);
    let mut a = model(gpu(), 3)?;
    let ha = a.fit(
        &x,
        &y,
        &FitConfig {
            validation_split: 0.25,
            ..quiet(2)
        },
    )?;
    // Keras: the first ⌊40·0.75⌋ = 30 samples train, the last 10 validate.
    let mut b = model(gpu(), 3)?;
    let hb = b.fit(
        &x[..30 * 64],
        &y[..30],
        &FitConfig {
            validation_data: Some((&x[30 * 64..], &y[30..])),
            ..quiet(2)
        },
    )?;
    assert_eq!(ha, hb_without_time(hb, &ha));
    assert_eq!(a.get_weights()?, b.get_weights()?);
    for bad in [1.0, -0.1, 0.999] {
        let r = model(gpu(), 3)?.fit(
            &x,
            &y,
            &FitConfig {
                validation_split: bad,
                ..quiet(1)
            },
        );
        assert!(r.is_err(), "validation_split {bad}");
    }
    Ok(())
}

/// `b` with `a`'s epoch times (the only field two identical runs do not share).
fn hb_without_time(mut b: History, a: &History) -> History {
    b.epoch_seconds.clone_from(&a.epoch_seconds);
    b
}

#[test]
fn train_on_batch_is_one_fit_step() -> R {
    let (x, y) = data(20, 9);
    let mut a = model(gpu(), 4)?;
    let (loss, acc) = a.train_on_batch(&x, &y)?;
    let mut b = model(gpu(), 4)?;
    let h = b.fit(
        &x,
        &y,
        &FitConfig {
            batch_size: 20,
            shuffle: false,
            ..quiet(1)
        },
    )?;
    assert_eq!((loss, acc), (h.loss[0], h.accuracy[0]));
    assert_eq!(a.get_weights()?, b.get_weights()?);
    assert_eq!(a.steps_taken(), 1);
    Ok(())
}

#[test]
fn translation_shifts_whole_pixels_with_keras_fill_modes() {
    // A 1×4 image, one channel: [a b c d] = [1 2 3 4], moved right by 2.
    let src = [1.0, 2.0, 3.0, 4.0];
    let mut dst = [0.0; 4];
    let shifted = |fill, dst: &mut [f32; 4]| translate(&src, dst, [1, 4, 1], (0, 2), fill);
    shifted(FillMode::Constant, &mut dst);
    assert_eq!(dst, [0.0, 0.0, 1.0, 2.0]);
    shifted(FillMode::Nearest, &mut dst);
    assert_eq!(dst, [1.0, 1.0, 1.0, 2.0]);
    shifted(FillMode::Reflect, &mut dst); // b a | a b
    assert_eq!(dst, [2.0, 1.0, 1.0, 2.0]);
    // Up by one row in a 2×2×2 image keeps channels together.
    let src = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
    let mut dst = [0.0; 8];
    translate(&src, &mut dst, [2, 2, 2], (-1, 0), FillMode::Constant);
    assert_eq!(dst, [3.0, 30.0, 4.0, 40.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn augmentation_is_drawn_from_the_seed() -> R {
    let (x, y) = data(48, 11);
    let cfg = || FitConfig {
        horizontal_flip: true,
        translation: Some(RandomTranslation::new(0.25, 0.25)),
        ..quiet(2)
    };
    let weights = |seed| -> anyhow::Result<Vec<NamedTensor>> {
        let mut m = model(gpu(), 1)?;
        m.set_seed(seed); // initialisation stays the compile seed's; draws follow this
        m.fit(&x, &y, &cfg())?;
        m.get_weights()
    };
    assert_eq!(weights(1)?, weights(1)?, "same seed, same run, bit for bit");
    assert_ne!(weights(1)?, weights(2)?, "another seed draws other shifts");
    let mut plain = model(gpu(), 1)?;
    plain.fit(&x, &y, &quiet(2))?;
    assert_ne!(
        plain.get_weights()?,
        weights(1)?,
        "the augmentation changes training"
    );
    Ok(())
}

#[test]
fn image_and_mask_targets_move_with_their_augmented_inputs() -> R {
    // Pixels whose three channels are 10, 100 and 200 in a random order: each pixel's
    // brightest channel (its class) is never a tie.
    let n = 20;
    let order = random_labels(n * 64, 6, 7);
    let perms = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let levels = [10u8, 100, 200];
    let pixels: Vec<u8> = order
        .iter()
        .flat_map(|&o| perms[o as usize].map(|k| levels[k]))
        .collect();
    let x: Vec<f32> = pixels.iter().map(|&b| f32::from(b) / 255.0).collect();
    let masks: Vec<u32> = pixels
        .chunks(3)
        .map(|p| (0..3).max_by_key(|&c| p[c]).unwrap_or(0) as u32)
        .collect();
    let augment = |fill| FitConfig {
        horizontal_flip: true,
        translation: Some(RandomTranslation::new(0.25, 0.25).fill_mode(fill)),
        ..quiet(2)
    };
    // A 1×1 convolution whose kernel is `gain`·identity and whose learning rate is 0: the
    // output is the input (×gain) wherever the targets moved with it.
    let identity = |device: Device, gain: f32, loss, metric| -> anyhow::Result<Model> {
        let mut m = Sequential::new();
        m.add(Input::new(&[8, 8, 3]))?;
        let act = if gain == 1.0 { Linear } else { Softmax };
        m.add(Conv2D::new(3, 1).use_bias(false).activation(act))?;
        let mut m = m.into_model();
        m.set_device(device).set_seed(3);
        m.compile(Optimizer::sgd(0.0), loss, &[metric])?;
        let mut w = m.get_weights()?;
        w[0].values = (0..9)
            .map(|i| if i % 4 == 0 { gain } else { 0.0 })
            .collect();
        m.set_weights(&w)?;
        Ok(m)
    };
    for device in [gpu(), Device::Cpu] {
        // The clean image as the target (a denoiser's): zero loss with zero fill too.
        let mse = |device: Device| {
            identity(
                device,
                1.0,
                Loss::MeanSquaredError,
                Metric::MeanAbsoluteError,
            )
        };
        for fill in [FillMode::Constant, FillMode::Reflect, FillMode::Nearest] {
            let h = mse(device.clone())?.fit(&x, &x[..], &augment(fill))?;
            assert_eq!(h.loss, vec![0.0, 0.0], "{fill:?}");
            // The same from a source: the GPU moves the input bytes in the step, the
            // loader the target values on the host, and they agree bit for bit.
            let src = ImageBytes::with_values(pixels.clone(), x.clone(), [8, 8, 3])?;
            let mut m = mse(device.clone())?;
            assert_eq!(
                m.fit_source(&src, &augment(fill))?.loss,
                vec![0.0, 0.0],
                "{fill:?}"
            );
        }
        // Masks (a segmentation's): every pixel's class is its brightest channel, which
        // the identity ×50 predicts, wherever the masks moved with the images.
        let names = ["r", "g", "b"].map(String::from).to_vec();
        let src = ImageBytes::with_masks(pixels.clone(), masks.clone(), [8, 8, 3], names)?;
        for fill in [FillMode::Reflect, FillMode::Nearest] {
            let (loss, metric) = (Loss::SparseCategoricalCrossentropy, Metric::Accuracy);
            let mut m = identity(device.clone(), 50.0, loss, metric)?;
            assert_eq!(
                m.fit(&x, &masks[..], &augment(fill))?.accuracy,
                vec![1.0, 1.0]
            );
            let mut m = identity(device.clone(), 50.0, loss, metric)?;
            assert_eq!(m.fit_source(&src, &augment(fill))?.accuracy, vec![1.0, 1.0]);
        }
    }
    // Without moving them the same checks fail: the test can tell.
    let mut m = identity(
        Device::Cpu,
        1.0,
        Loss::MeanSquaredError,
        Metric::MeanAbsoluteError,
    )?;
    let shifted: Vec<f32> = x.iter().skip(3).chain(&x[..3]).copied().collect();
    assert!(m.fit(&x, &shifted[..], &quiet(1))?.loss[0] > 0.0);
    // An output of another size than the input cannot move with it.
    let mut v = Sequential::new();
    v.add(Input::new(&[8, 8, 3]))?;
    v.add(Conv2D::new(1, 3).activation(Sigmoid))?;
    let mut v = v.into_model();
    v.set_device(Device::Cpu);
    v.compile(Optimizer::adam(), Loss::binary_crossentropy(), &[])?;
    let y = vec![0.5; n * 36];
    let err = format!(
        "{:#}",
        v.fit(&x, &y[..], &augment(FillMode::Reflect)).unwrap_err()
    );
    assert!(
        err.contains("another size") && err.contains("[6, 6, 1]"),
        "{err}"
    );
    v.fit(&x, &y[..], &quiet(1))?;
    // A vector of values per image (a regression) is augmented, its targets unmoved.
    let mut r = Sequential::new();
    r.add(Input::new(&[8, 8, 3]))?;
    r.add(Flatten::new())?;
    r.add(Dense::new(2))?;
    let mut r = r.into_model();
    r.set_device(Device::Cpu);
    r.compile(Optimizer::adam(), Loss::MeanSquaredError, &[])?;
    r.fit(&x, &random_vec(n * 2, 6)[..], &augment(FillMode::Reflect))?;
    Ok(())
}

#[test]
fn model_files_round_trip_everything_and_reject_others() -> R {
    let (x, y) = data(48, 13);
    let dir = tmp("files");
    let path = dir.join("model.safetensors");
    let mut m = model(gpu(), 6)?;
    m.set_metadata("dataset", "mnist");
    m.fit(&x, &y, &quiet(2))?;
    m.save(&path)?;
    let mut back = Model::load(&path)?;
    assert_eq!(back.summary(), m.summary());
    assert_eq!(back.get_weights()?, m.get_weights()?); // BatchNormalization statistics too
    assert_eq!(back.epochs_trained(), 2);
    assert_eq!(back.steps_taken(), m.steps_taken());
    assert_eq!(
        back.metadata().get("dataset").map(String::as_str),
        Some("mnist")
    );
    assert_eq!(back.optimizer(), m.optimizer());
    // The optimizer state came back: one more step moves both models alike.
    m.train_on_batch(&x[..16 * 64], &y[..16])?;
    back.train_on_batch(&x[..16 * 64], &y[..16])?;
    assert_eq!(back.get_weights()?, m.get_weights()?);

    let bytes = std::fs::read(&path)?;
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let err = format!("{:#}", Model::load(&truncated).err().unwrap());
    assert!(err.contains("truncated"), "{err}");
    let newer = dir.join("newer.safetensors");
    // The header holds the model's JSON as an escaped string: \"version\":2. Same-length
    // edit of the bytes.
    let (find, with) = (br#"\"version\":2"#, br#"\"version\":7"#);
    let at = bytes
        .windows(find.len())
        .position(|w| w == find)
        .expect("the version field");
    let mut newer_bytes = bytes.clone();
    newer_bytes[at..at + with.len()].copy_from_slice(with);
    std::fs::write(&newer, &newer_bytes)?;
    let err = format!("{:#}", Model::load(&newer).err().unwrap());
    assert!(err.contains("version 7") && err.contains("newer"), "{err}");
    let weights = dir.join("weights.safetensors");
    m.save_weights(&weights)?;
    let err = format!("{:#}", Model::load(&weights).err().unwrap());
    assert!(err.contains("weights file"), "{err}");
    Ok(())
}

#[test]
fn a_write_torn_midway_leaves_the_previous_file_intact() -> R {
    let dir = tmp("atomic");
    let path = dir.join("model.safetensors");
    wgcnn::io::write_atomic(&path, b"the good file")?;
    let torn = wgcnn::io::write_atomic_with(&path, |w| {
        w.write_all(b"half of a new")?;
        anyhow::bail!("the disk is full")
    });
    assert!(torn.is_err());
    assert_eq!(std::fs::read(&path)?, b"the good file");
    let names: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        names,
        ["model.safetensors"],
        "no temporary file left behind"
    );
    Ok(())
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() -> R {
    let (x, y) = data(56, 17); // batch 16: a partial last batch every epoch
    let (vx, vy) = data(24, 18);
    let dir = tmp("resume");
    let cfg = |epochs, initial_epoch| FitConfig {
        epochs,
        initial_epoch,
        validation_data: Some((&vx[..], &vy[..])),
        horizontal_flip: true,
        translation: Some(RandomTranslation::new(0.2, 0.2)),
        ..quiet(epochs)
    };
    let mut whole = model(gpu(), 8)?;
    let hw = whole.fit(&x, &y, &cfg(3, 0))?;
    let mut first = model(gpu(), 8)?;
    first.fit(&x, &y, &cfg(1, 0))?;
    let path = dir.join("model.safetensors");
    first.save(&path)?;
    drop(first);
    let mut resumed = Model::load(&path)?;
    let hr = resumed.fit(&x, &y, &cfg(3, resumed.epochs_trained()))?;
    assert_eq!(hr.epoch, [1, 2]);
    assert_eq!(hr.val_loss, hw.val_loss[1..]);
    let (a, b) = (whole.get_weights()?, resumed.get_weights()?);
    for (a, b) in a.iter().zip(&b) {
        let same = a
            .values
            .iter()
            .zip(&b.values)
            .all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{} differs after resuming", a.name);
    }
    assert_eq!(resumed.steps_taken(), whole.steps_taken());
    Ok(())
}

#[test]
fn monitors_parse_from_keras_names() -> R {
    assert_eq!(Monitor::parse("val_loss")?, Monitor::ValLoss);
    assert_eq!(Monitor::parse("val_acc")?, Monitor::ValAccuracy);
    assert_eq!(Monitor::parse("accuracy")?, Monitor::Accuracy);
    assert_eq!(Monitor::parse("loss")?, Monitor::Loss);
    let err = format!("{:#}", Monitor::parse("val_f1").err().unwrap());
    assert!(err.contains("val_f1") && err.contains("val_loss"), "{err}");
    Ok(())
}

/// Compiling again keeps the weights (BatchNormalization's statistics too), as Keras does
/// for fine-tuning; the new optimizer starts afresh. Moving a compiled model to another
/// device keeps them as well.
#[test]
fn recompiling_keeps_the_weights_and_restarts_the_optimizer() -> R {
    let (x, y) = data(24, 3);
    for device in [Device::Cpu, gpu()] {
        let mut m = model(device, 5)?;
        for _ in 0..3 {
            m.train_on_batch(&x, &y)?;
        }
        let trained = m.get_weights()?;
        m.compile(
            Optimizer::sgd(0.001),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )?;
        assert_eq!(m.get_weights()?, trained, "recompiling changed the weights");
        assert_eq!(m.steps_taken(), 0);
        m.train_on_batch(&x, &y)?;
        assert_ne!(m.get_weights()?, trained, "the new optimizer did not train");

        let before = m.get_weights()?;
        m.set_device(Device::Cpu);
        m.compile(
            Optimizer::adam(),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )?;
        assert_eq!(
            m.get_weights()?,
            before,
            "moving devices changed the weights"
        );
    }
    Ok(())
}

/// Files get the mode an ordinary write gives (0666 less the umask), not the 0600 of the
/// temporary file they are written through.
#[test]
fn written_files_get_the_mode_of_an_ordinary_write() -> R {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("modes");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let reference = dir.join("reference");
    std::fs::File::create(&reference)?;
    let m = model(Device::Cpu, 1)?;
    m.save(dir.join("model.safetensors"))?;
    m.save_weights(dir.join("weights.safetensors"))?;
    wgcnn::io::write_atomic(dir.join("history.csv"), b"epoch\n")?;
    for f in ["model.safetensors", "weights.safetensors", "history.csv"] {
        assert_eq!(mode(&dir.join(f)), mode(&reference), "{f}");
    }
    Ok(())
}

/// A user callback with Keras' hooks: called in order with the epoch's logs, a batch hook
/// at its frequency whose steps alone read the loss back, a learning rate changed from a
/// hook, and training stopped from a batch hook.
#[test]
fn custom_callbacks_see_the_logs_change_the_rate_and_stop() -> R {
    use std::sync::{Arc, Mutex};
    use wgcnn::callbacks::{Callback, CallbackContext, CustomCallback, Logs};

    #[derive(Default)]
    struct Recorder {
        events: Vec<String>,
        epoch_logs: Vec<Logs>,
    }
    impl CustomCallback for Recorder {
        fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> anyhow::Result<()> {
            self.events.push("train_begin".into());
            Ok(())
        }
        fn on_epoch_begin(&mut self, e: usize, _ctx: &mut CallbackContext) -> anyhow::Result<()> {
            self.events.push(format!("epoch_begin {e}"));
            Ok(())
        }
        fn on_train_batch_end(
            &mut self,
            b: usize,
            logs: &Logs,
            ctx: &mut CallbackContext,
        ) -> anyhow::Result<()> {
            assert!(logs.loss.is_finite() && logs.val_loss.is_none());
            self.events.push(format!("batch {b}"));
            // Stop in the third epoch, after its second hook.
            if self.epoch_logs.len() == 2 && b == 3 {
                ctx.stop_training();
            }
            Ok(())
        }
        fn on_epoch_end(
            &mut self,
            e: usize,
            logs: &Logs,
            ctx: &mut CallbackContext,
        ) -> anyhow::Result<()> {
            self.events.push(format!("epoch_end {e}"));
            self.epoch_logs.push(*logs);
            if e == 0 {
                ctx.set_learning_rate(0.005)?;
            }
            Ok(())
        }
        fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> anyhow::Result<()> {
            self.events.push("train_end".into());
            Ok(())
        }
        fn batch_frequency(&self) -> Option<usize> {
            Some(2)
        }
    }

    let g = Arc::new(wgcnn::Gpu::new()?); // its own counters
    let mut m = model(Device::Gpu(g.clone()), 3)?;
    let (x, y) = data(96, 4); // 6 steps of 16 per epoch
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let epochs_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = epochs_seen.clone();
    let cfg = FitConfig {
        callbacks: vec![
            Callback::Custom(wgcnn::callbacks::Custom(recorder.clone())),
            Callback::on_epoch_end(move |e, logs, _ctx| {
                seen.lock()
                    .expect("not poisoned")
                    .push((e, logs.learning_rate));
                Ok(())
            }),
        ],
        validation_data: Some((&x[..32 * 64], &y[..32])),
        ..quiet(5)
    };
    let (_, _, r0) = g.counters.snapshot();
    let h = m.fit(&x, &y, &cfg)?;
    let (_, _, r1) = g.counters.snapshot();
    let rec = recorder.lock().expect("not poisoned");
    let want: Vec<String> = [
        "train_begin",
        "epoch_begin 0",
        "batch 1",
        "batch 3",
        "batch 5",
        "epoch_end 0",
        "epoch_begin 1",
        "batch 1",
        "batch 3",
        "batch 5",
        "epoch_end 1",
        "epoch_begin 2",
        "batch 1",
        "batch 3",
        "epoch_end 2",
        "train_end",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(rec.events, want);
    // The logs are the history's; the rate set after epoch 0 is in force after it.
    assert_eq!(h.loss.len(), 3);
    for (e, logs) in rec.epoch_logs.iter().enumerate() {
        assert_eq!(logs.loss, h.loss[e]);
        assert_eq!(logs.val_loss, Some(h.val_loss[e]));
    }
    assert_eq!(h.stopped_epoch, Some(2));
    let rates: Vec<f32> = epochs_seen
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(rates, [0.02, 0.005, 0.005]);
    // Read-backs: a full epoch reads at its hooked steps 1, 3 and 5 (5, the last, reads
    // anyway; a quiet epoch reads there alone) and once for validation; the stopped
    // epoch at its two hooks and for validation.
    assert_eq!(r1 - r0, 2 * (3 + 1) + (2 + 1), "read-backs");
    Ok(())
}
