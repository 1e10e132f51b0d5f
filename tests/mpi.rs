//! Data-parallel training under `mpirun` (the `mpi` feature): N ranks on a global batch
//! equal one process on it (within f32 summation order), the ranks end with bit-identical
//! weights, a resumed run continues bit for bit, and a failing rank ends the job.
//!
//! MPI initialises once per process, so each scenario runs in child processes: this test
//! binary started again by `mpirun` on one test (`child_rank`), told what to do by
//! `WGCNN_MPI_SCENARIO`, writing each rank's weights into `WGCNN_MPI_OUT`.

mod common;

#[cfg(not(feature = "mpi"))]
#[test]
fn data_parallel_training_needs_the_mpi_feature() {
    eprintln!(
        "skipping: the MPI tests need the `mpi` feature (cargo test --release --features mpi)"
    );
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::common;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};
    use wgcnn::data::augment::RandomTranslation;
    use wgcnn::distributed::Ranks;
    use wgcnn::prelude::*;
    use wgcnn::testing::{assert_close, brightest_third};

    type R = anyhow::Result<()>;

    const RANKS: usize = 2;

    /// `mpirun -np RANKS` of `program args` under a time limit, with what one host with
    /// few cores needs (root allowed, more ranks than cores, no core binding: lavapipe
    /// runs threads of its own).
    fn mpirun(program: &Path, args: &[&str], env: &[(&str, &str)], limit_s: u64) -> Output {
        let mut c = Command::new("timeout");
        c.arg(limit_s.to_string())
            .arg("mpirun")
            .args([
                "-np",
                &RANKS.to_string(),
                "--oversubscribe",
                "--bind-to",
                "none",
            ])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_tcp_if_include", "lo")
            .env("NODEVICE_SELECT", "1");
        for (k, v) in env {
            c.env(k, v).args(["-x", k]);
        }
        c.arg(program).args(args);
        c.output()
            .expect("mpirun (Open MPI's openmpi-bin) is installed")
    }

    /// Runs `scenario` on RANKS ranks and returns each rank's final weights.
    fn on_ranks(scenario: &str) -> anyhow::Result<Vec<Vec<f32>>> {
        let out = common::tmp("mpi", scenario);
        let me = std::env::current_exe()?;
        let o = mpirun(
            &me,
            &[
                "--exact",
                "with_mpi::child_rank",
                "--nocapture",
                "--test-threads",
                "1",
            ],
            &[
                ("WGCNN_MPI_SCENARIO", scenario),
                ("WGCNN_MPI_OUT", out.to_str().unwrap()),
            ],
            300,
        );
        anyhow::ensure!(
            o.status.success(),
            "{scenario} under mpirun failed:\n{}\n{}",
            common::stdout(&o),
            common::stderr(&o)
        );
        (0..RANKS)
            .map(|r| {
                let bytes = std::fs::read(out.join(format!("rank{r}.f32")))?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            })
            .collect()
    }

    /// The child: one rank of a scenario (does nothing outside `mpirun`).
    #[test]
    fn child_rank() -> R {
        let Ok(scenario) = std::env::var("WGCNN_MPI_SCENARIO") else {
            return Ok(());
        };
        let dist = Distributed::init()?;
        assert_eq!(dist.size(), RANKS, "started by mpirun -np {RANKS}");
        if scenario == "panic" {
            // Rank 0 waits in a collective that rank 1 never joins.
            if dist.rank() == 1 {
                panic!("rank 1 fails on purpose");
            }
            dist.ranks().all_reduce_sum(&mut [1.0])?;
            std::thread::sleep(Duration::from_secs(60));
            return Ok(());
        }
        let weights = train(&scenario, dist.ranks())?;
        let out = PathBuf::from(std::env::var("WGCNN_MPI_OUT")?);
        let path = out.join(format!("rank{}.f32", dist.rank()));
        std::fs::write(path, bytemuck::cast_slice(&weights))?;
        Ok(())
    }

    /// Trains the scenario's model on `ranks` and returns its weights, flattened.
    fn train(scenario: &str, ranks: Ranks) -> anyhow::Result<Vec<f32>> {
        let mut m = Sequential::new();
        m.add(Input::new(&[8, 8, 1]))?;
        m.add(Conv2D::new(4, 3).padding(Same).activation(Relu))?;
        if scenario == "batchnorm" {
            m.add(BatchNormalization::new().momentum(0.9))?;
        }
        m.add(MaxPooling2D::new(2))?;
        m.add(Flatten::new())?;
        let dropout = scenario.ends_with("dropout");
        if dropout {
            m.add(Dropout::new(0.3))?;
        }
        m.add(Dense::new(3).activation(Softmax))?;
        let mut m = m.into_model();
        m.set_seed(7).set_ranks(ranks);
        if scenario.starts_with("cpu") {
            m.set_device(Device::Cpu); // the CPU reference path, data-parallel too
        }
        m.compile(
            Optimizer::sgd(0.05).momentum(0.9),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )?;
        // One step of one batch, or 21 samples in batches of 8 (the last one partial,
        // 5 = 2 + 3 over the ranks) for 3 epochs.
        let (n, epochs) = if scenario == "one-step" {
            (8, 1)
        } else {
            (21, 3)
        };
        let (x, y) = brightest_third(n, 3);
        let augment = dropout;
        let cfg = FitConfig {
            epochs,
            batch_size: 8,
            verbose: false,
            horizontal_flip: augment,
            translation: augment.then(|| RandomTranslation::new(0.25, 0.25)),
            ..Default::default()
        };
        let h = m.fit(&x, &y, &cfg)?;
        anyhow::ensure!(h.loss.iter().all(|l| l.is_finite()), "loss {:?}", h.loss);
        let (vl, _) = m.evaluate(&x, &y)?;
        anyhow::ensure!(vl.is_finite());
        Ok(m.get_weights()?
            .into_iter()
            .flat_map(|w| w.values)
            .collect())
    }

    fn bit_identical(ranks: &[Vec<f32>]) -> bool {
        let bits = |w: &Vec<f32>| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        ranks.windows(2).all(|p| bits(&p[0]) == bits(&p[1]))
    }

    #[test]
    fn ranks_on_a_global_batch_equal_one_process() -> R {
        for scenario in ["one-step", "steps", "dropout", "cpu-dropout"] {
            let ranks = on_ranks(scenario)?;
            assert!(
                bit_identical(&ranks),
                "{scenario}: the ranks' weights differ"
            );
            let one = train(scenario, Ranks::single())?;
            // The same maths; only the order of the batch sums differs.
            assert_close(scenario, &ranks[0], &one, 1e-5, 1e-4)?;
            eprintln!("{scenario}: {RANKS} ranks = one process, ranks bit-identical");
        }
        Ok(())
    }

    #[test]
    fn batchnorm_ranks_agree_bit_for_bit() -> R {
        // Each rank normalizes with its own batch statistics (DDP's default), so the run
        // differs from one process; the moving statistics are averaged at each epoch's
        // end, and every rank holds the same model.
        let ranks = on_ranks("batchnorm")?;
        assert!(bit_identical(&ranks), "the ranks' weights differ");
        let one = train("batchnorm", Ranks::single())?;
        assert_ne!(ranks[0], one, "local batch statistics change the run");
        Ok(())
    }

    #[test]
    fn a_failing_rank_ends_the_job_quickly() {
        let t = Instant::now();
        let me = std::env::current_exe().unwrap();
        let o = mpirun(
            &me,
            &[
                "--exact",
                "with_mpi::child_rank",
                "--nocapture",
                "--test-threads",
                "1",
            ],
            &[("WGCNN_MPI_SCENARIO", "panic")],
            60,
        );
        let took = t.elapsed().as_secs_f64();
        assert!(!o.status.success(), "the job must fail");
        assert_ne!(o.status.code(), Some(124), "timed out: the other rank hung");
        assert!(took < 10.0, "the job took {took:.1} s to end");
        assert!(
            common::stderr(&o).contains("rank 1 fails on purpose")
                || common::stdout(&o).contains("rank 1 fails on purpose"),
            "the panic is shown:\n{}",
            common::stderr(&o)
        );
        eprintln!("a panicking rank ended the job in {took:.1} s");
    }

    #[test]
    fn the_cli_trains_and_resumes_on_ranks_bit_for_bit() -> R {
        let Some(root) = common::mnist_root() else {
            return Ok(());
        };
        let dir = common::tmp("mpi", "cli");
        let wgcnn = Path::new(env!("CARGO_BIN_EXE_wgcnn"));
        let data = root.to_str().unwrap().to_string();
        let train = |out: &str, extra: &[&str]| {
            let mut args = vec![
                "train",
                "mnist-dense",
                "--data",
                &data,
                "--no-download",
                "--limit",
                "3000",
                "--limit-test",
                "500",
                "-q",
                "--out",
            ];
            let out = dir.join(out);
            let out = out.to_str().unwrap().to_string();
            args.push(&out);
            args.extend_from_slice(extra);
            let o = mpirun(wgcnn, &args, &[], 300);
            assert!(o.status.success(), "{}", common::stderr(&o));
            (common::stdout(&o), PathBuf::from(out))
        };
        let (said, straight) = train("straight", &["--epochs", "2"]);
        // Rank 0 alone prints and writes.
        assert_eq!(said.lines().count(), 1, "{said}");
        let (_, resumed) = train("resumed", &["--epochs", "1"]);
        let model = resumed.join("model.safetensors");
        let model = model.to_str().unwrap().to_string();
        train("resumed", &["--epochs", "2", "--resume", &model]);
        let a = std::fs::read(straight.join("weights.safetensors"))?;
        let b = std::fs::read(resumed.join("weights.safetensors"))?;
        assert!(a == b, "a resumed run under MPI continues bit for bit");
        Ok(())
    }
}
