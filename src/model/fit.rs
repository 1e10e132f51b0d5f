//! The training and inference loops of a [`Model`]: `fit` (epochs of shuffled, augmented
//! batches, one submission a step, callbacks at epoch ends), `train_on_batch`,
//! `evaluate`, `predict`, `layer_outputs` and the step profiler.

use super::data_parallel::Shard;
use super::gpu::GpuGraph;
use super::{
    Compiled, DispatchTime, Engine, FitConfig, Graph, History, Model, NamedTensor, Objective,
};
use crate::callbacks;
use crate::data::augment::{Augment, Draw};
use crate::data::source::{GpuDraws, Loader, Source};
use crate::gpu::Gpu;
use crate::model::Targets;
use crate::ops::bytes::{bytes_to_unit_cpu, unit_table};
use anyhow::{Context, Result, bail, ensure};
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Keras' `validation_split`: the training samples are the first ⌊n·(1 − split)⌋ (all of
/// them for 0), the rest the validation data; an empty side is an error.
fn validation_split_at(n: usize, split: f32) -> Result<usize> {
    if split == 0.0 {
        return Ok(n);
    }
    ensure!(
        split > 0.0 && split < 1.0,
        "validation_split {split} must be in [0, 1)"
    );
    let at = (n as f64 * (1.0 - f64::from(split))).floor() as usize;
    ensure!(
        at > 0 && at < n,
        "{n} samples are not enough to split into training and validation sets with validation_split={split}"
    );
    Ok(at)
}

impl Model {
    /// Trains the model; see [`FitConfig`]. The epoch/step skeleton: each epoch draws its
    /// order and augmentation from the seed, runs its steps (one submission each, totals
    /// read only when the progress bar is due), validates, and hands its logs to the
    /// callbacks.
    ///
    /// With [`Model::set_distributed`], `batch_size` is the global batch: every rank trains
    /// on its shard of each batch and the gradients are averaged over the ranks; an error
    /// on any rank ends the whole job.
    pub fn fit<'y>(
        &mut self,
        x: &[f32],
        y: impl Into<Targets<'y>>,
        cfg: &FitConfig,
    ) -> Result<History> {
        let result = self.fit_feed(Feed::Arrays { x, y: y.into() }, cfg);
        self.ranks.or_abort(result)
    }

    /// [`Model::fit`] on a data set read sample by sample (class labels, per sample or per
    /// output position, or target values: see [`crate::data::Source`]): `cfg.workers`
    /// threads decode each batch, `cfg.prefetch_factor` batches ahead each, while the GPU
    /// trains; shuffling, augmentation and resume are those of the in-memory path for the
    /// same seed, whatever the number of workers. Validation: `cfg.validation_source` (or
    /// `validation_data`); `validation_split` needs arrays.
    pub fn fit_source(&mut self, source: &dyn Source, cfg: &FitConfig) -> Result<History> {
        let feed = Feed::Source {
            source,
            workers: cfg.workers,
            prefetch: cfg.prefetch_factor,
        };
        let result = self.fit_feed(feed, cfg);
        self.ranks.or_abort(result)
    }

    fn fit_feed(&mut self, feed: Feed, cfg: &FitConfig) -> Result<History> {
        ensure!(cfg.batch_size > 0, "batch_size must be positive");
        let per = self.targets_per_sample()?;
        let input = self.input_shape().context("no input shape")?.to_vec();
        let sample: usize = input.iter().product();
        let output = self.output_shape()?;
        // Flips and shifts move an image or a mask target with its input; one of another
        // size would no longer line up.
        ensure!(
            !(cfg.horizontal_flip || cfg.translation.is_some())
                || output.len() != 3
                || self.target_image()?.is_some(),
            "horizontal_flip and translation move the targets with the inputs, and this \
             model's outputs are images of another size ({output:?} per sample, inputs \
             {input:?}): train it without augmentation"
        );
        let given = match (
            cfg.validation_data,
            cfg.validation_values,
            cfg.validation_source,
        ) {
            (Some((vx, vy)), None, None) => Some(Feed::Arrays {
                x: vx,
                y: Targets::Classes(vy),
            }),
            (None, Some((vx, vy)), None) => Some(Feed::Arrays {
                x: vx,
                y: Targets::Values(vy),
            }),
            (None, None, Some(source)) => Some(Feed::Source {
                source,
                workers: cfg.workers,
                prefetch: cfg.prefetch_factor,
            }),
            (None, None, None) => None,
            _ => bail!("give one of validation_data, validation_values and validation_source"),
        };
        if let Some(v) = &given {
            let what = match v {
                Feed::Arrays { .. } => "validation_data",
                Feed::Source { .. } => "validation_source",
            };
            self.check_feed(v, what)?;
        }
        let n_all = self.check_feed(&feed, "fit")?;
        let (n, feed, validation) = match (feed, given) {
            (feed, Some(v)) => (n_all, feed, Some(v)),
            (Feed::Arrays { x, y }, None) => {
                let n = validation_split_at(n_all, cfg.validation_split)?;
                let held = (n < n_all).then(|| Feed::Arrays {
                    x: &x[n * sample..],
                    y: y.slice(n..n_all, per),
                });
                let train = Feed::Arrays {
                    x: &x[..n * sample],
                    y: y.slice(0..n, per),
                };
                (n, train, held)
            }
            (feed, None) => {
                ensure!(
                    cfg.validation_split == 0.0,
                    "validation_split holds out the end of arrays; with a data source give \
                     validation_source"
                );
                (n_all, feed, None)
            }
        };
        ensure!(
            cfg.initial_epoch <= cfg.epochs,
            "initial_epoch {} is past epochs {}",
            cfg.initial_epoch,
            cfg.epochs
        );
        let batch = cfg.batch_size.min(n);
        let ranks = self.ranks;
        if ranks.is_distributed() {
            let size = ranks.size();
            ensure!(
                cfg.batch_size.is_multiple_of(size),
                "batch_size {} is the global batch and must divide evenly over the {size} ranks",
                cfg.batch_size
            );
            let last = n % batch;
            ensure!(
                batch >= size && (last == 0 || last >= size),
                "with {n} samples in batches of {batch}, a batch of {} would leave a rank \
                 without samples; use fewer ranks or another batch size",
                if batch < size { batch } else { last }
            );
            ensure!(
                !matches!(self.graph.objective, Objective::Classes { iou: true, .. }),
                "MeanIoU is not summed over ranks yet: train with another metric under MPI"
            );
            self.broadcast_from_root()?;
        }
        let mut runner = callbacks::Runner::new(&cfg.callbacks, validation.is_some(), self)?;
        runner.on_train_begin(self)?;
        // Rank 0 alone shows progress.
        let verbose = cfg.verbose && ranks.is_root();
        let seed = self.seed;
        let mut history = History {
            metric: self.graph.objective.metric_name().to_string(),
            ..History::default()
        };
        let m = history.metric.clone();
        // The order of epoch e is the shuffle of epoch e − 1's: replay the epochs before
        // initial_epoch so that a resumed run continues the same sequence.
        let mut order: Vec<usize> = (0..n).collect();
        let shuffle = |order: &mut Vec<usize>, epoch: usize| {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ))
        };
        if cfg.shuffle {
            (0..cfg.initial_epoch).for_each(|e| shuffle(&mut order, e));
        }
        for epoch in cfg.initial_epoch..cfg.epochs {
            if cfg.shuffle {
                shuffle(&mut order, epoch);
            }
            if runner.on_epoch_begin(self, epoch)? {
                history.stopped_epoch = Some(epoch);
                break;
            }
            let augment =
                Augment::for_epoch(seed, epoch, &input, cfg.horizontal_flip, cfg.translation)?;
            let start = Instant::now();
            let bar = progress_bar(verbose, n.div_ceil(batch), epoch, cfg.epochs);
            let (loss, acc, stopped) =
                self.train_epoch(&feed, &order, augment, batch, epoch, &bar, &mut runner)?;
            self.average_moving_statistics()?;
            history.epoch.push(epoch);
            history.loss.push(loss);
            history.accuracy.push(acc);
            history.epoch_seconds.push(start.elapsed().as_secs_f64());
            if let Some(v) = &validation {
                let (vl, va) = self.evaluate_feed(v, batch)?;
                history.val_loss.push(vl);
                history.val_accuracy.push(va);
                bar.set_message(format!(
                    "loss: {loss:.4} - {m}: {acc:.4} - val_loss: {vl:.4} - val_{m}: {va:.4}"
                ));
            }
            bar.finish();
            let c = self.compiled()?;
            c.epochs_done = epoch + 1;
            history
                .learning_rate
                .push(c.optimizer.learning_rate.at(c.step.saturating_sub(1)));
            if verbose && !std::io::stderr().is_terminal() {
                // No bar without a terminal (a log file): one line per epoch, like Keras'
                // verbose=2.
                eprintln!("{}", history.epoch_line(history.loss.len() - 1, cfg.epochs));
            }
            self.history.push_last_of(&history);
            if runner.on_epoch_end(self, epoch, &mut history)? || stopped {
                if stopped {
                    history.stopped_epoch = Some(epoch);
                }
                break;
            }
        }
        runner.on_train_end(self)?;
        Ok(history)
    }

    /// The steps of one epoch over `order`; returns its mean loss and accuracy, and
    /// whether a callback stopped training inside it (the means are then over the steps
    /// run).
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &mut self,
        feed: &Feed,
        order: &[usize],
        mut augment: Option<Augment>,
        batch: usize,
        epoch: usize,
        bar: &indicatif::ProgressBar,
        runner: &mut callbacks::Runner,
    ) -> Result<(f32, f32, bool)> {
        let input = self.input_shape().context("no input shape")?.to_vec();
        let sample: usize = input.iter().product();
        let n = order.len();
        let steps = n.div_ceil(batch);
        let per = self.targets_per_sample()?;
        let ranks = self.ranks;
        // This rank's part of a global batch: all of it in one process.
        let local = batch.div_ceil(ranks.size());
        // Per step, this rank's samples and their flips and shifts, drawn for every sample
        // of the batch in order as one process draws them (so a rank's images, and a
        // loader's, get what they would get there).
        let plan: Vec<Vec<(usize, Option<Draw>)>> = order
            .chunks(batch)
            .map(|global| {
                let mine = ranks.shard(global.len());
                global
                    .iter()
                    .enumerate()
                    .filter_map(|(j, &i)| {
                        let draw = augment.as_mut().map(Augment::next_draw);
                        (mine.0..mine.1).contains(&j).then_some((i, draw))
                    })
                    .collect()
            })
            .collect();
        let graph = self.graph.clone();
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(&graph, local, true)?;
                g.reset_totals(&p.gpu)?;
            }
            Engine::Cpu(e) => e.reset_totals(),
        }
        let mut run = EpochRun {
            epoch,
            steps,
            batch,
            n,
            local,
            rows_per_sample: self.loss_rows_per_sample()?,
            start: Instant::now(),
            last_read: Instant::now(),
            cpu_totals: (0.0, 0.0),
            seen_here: 0,
            result: (f32::NAN, f32::NAN),
            loader_rate: None,
        };
        let shape = augment.as_ref().map(Augment::shape);
        // Image and mask targets move with their inputs.
        let target_shape = self.target_image()?.filter(|_| shape.is_some());
        let mut scratch = Vec::new();
        let (mut label_scratch, mut value_scratch) = (Vec::new(), Vec::new());
        match *feed {
            Feed::Arrays { x, y } => {
                let mut xb = vec![0f32; local * sample];
                // The batch's targets: labels or values, `per` each.
                let (mut yb, mut vb) = match y {
                    Targets::Classes(_) => (vec![0u32; local * per], Vec::new()),
                    Targets::Values(_) => (Vec::new(), vec![0f32; local * per]),
                };
                for (step, items) in plan.iter().enumerate() {
                    for (j, &(i, draw)) in items.iter().enumerate() {
                        let (src, dst) = (
                            &x[i * sample..(i + 1) * sample],
                            &mut xb[j * sample..(j + 1) * sample],
                        );
                        match (draw, shape) {
                            (Some(d), Some(shape)) => d.apply(src, dst, shape, &mut scratch),
                            _ => dst.copy_from_slice(src),
                        }
                        let (at, to) = (i * per..(i + 1) * per, j * per..(j + 1) * per);
                        match (y, draw.zip(target_shape)) {
                            (Targets::Classes(l), Some((d, ts))) => {
                                d.apply(&l[at], &mut yb[to], ts, &mut label_scratch)
                            }
                            (Targets::Values(v), Some((d, ts))) => {
                                d.apply(&v[at], &mut vb[to], ts, &mut value_scratch)
                            }
                            (Targets::Classes(l), None) => yb[to].copy_from_slice(&l[at]),
                            (Targets::Values(v), None) => vb[to].copy_from_slice(&v[at]),
                        }
                    }
                    let valid = items.len();
                    let targets = match y {
                        Targets::Classes(_) => Targets::Classes(&yb[..valid * per]),
                        Targets::Values(_) => Targets::Values(&vb[..valid * per]),
                    };
                    if self.train_batch(
                        &mut run,
                        step,
                        Samples::F32(&xb[..valid * sample]),
                        targets,
                        bar,
                        runner,
                    )? {
                        return Ok((run.result.0, run.result.1, true));
                    }
                }
            }
            Feed::Source {
                source,
                workers,
                prefetch,
            } => {
                let mut stopped = false;
                // The GPU applies the flips and shifts in the step; the CPU path's loader
                // applies them to the bytes.
                let on_gpu = matches!(self.compiled()?.engine, Engine::Gpu(_));
                let image = source.shape();
                let loader = Loader::new(source, workers, prefetch)
                    .draws_on_gpu(on_gpu)
                    .targets_move(target_shape);
                loader.batches(&plan, shape, |step, xb, yb, draws| {
                    run.loader_rate = loader.rate();
                    stopped = self.train_batch(
                        &mut run,
                        step,
                        Samples::Bytes(xb, draws, image),
                        yb,
                        bar,
                        runner,
                    )?;
                    Ok(stopped)
                })?;
                if stopped {
                    return Ok((run.result.0, run.result.1, true));
                }
            }
        }
        Ok((run.result.0, run.result.1, false))
    }

    /// Step `step` of an epoch on this rank's samples `xb` (and their targets); reads,
    /// sums and shows the totals when due and runs the batch callbacks. True when a
    /// callback stopped training.
    fn train_batch(
        &mut self,
        run: &mut EpochRun,
        step: usize,
        xb: Samples,
        targets: Targets,
        bar: &indicatif::ProgressBar,
        runner: &mut callbacks::Runner,
    ) -> Result<bool> {
        let ranks = self.ranks;
        let steps = run.steps;
        let global_len = run.batch.min(run.n - step * run.batch);
        let (shard, _) = Shard::of(ranks, global_len);
        let sample: usize = self
            .input_shape()
            .context("no input shape")?
            .iter()
            .product();
        let valid = xb.len() / sample.max(1);
        run.seen_here += valid;
        // Read the totals only when the bar is due (or every 64 steps, to catch a
        // diverging loss early) and at the epoch's end; never otherwise. Only the
        // epoch's end and the callbacks' steps, the same on every rank, sum the
        // totals over the ranks.
        let hook = runner.wants_batch(step)?;
        let sync = step + 1 == steps || hook;
        let due = step + 1 == steps
            || step % 64 == 63
            || hook
            || (!bar.is_hidden() && run.last_read.elapsed() > Duration::from_millis(300));
        let shard = ranks.is_distributed().then_some(shard);
        let totals = self.step(
            xb,
            targets,
            run.local,
            due,
            &mut run.cpu_totals,
            shard.as_ref(),
        )?;
        if let Some((l, h)) = totals {
            run.last_read = Instant::now();
            let (l, h, seen) = if sync && ranks.is_distributed() {
                let mut t = [l, h, run.seen_here as f64];
                ranks.all_reduce_sum_f64(&mut t)?;
                (t[0], t[1], t[2] as usize)
            } else {
                (l, h, run.seen_here)
            };
            let counted = (seen * run.rows_per_sample) as f64;
            let (loss, acc) = (l / counted, h / counted);
            if !loss.is_finite() {
                bail!(
                    "the loss became {loss} in epoch {} at or before step {} of {steps}; lower the learning rate or check the data",
                    run.epoch + 1,
                    step + 1
                );
            }
            let rate = seen as f64 / run.start.elapsed().as_secs_f64().max(1e-9);
            let m = self.graph.objective.metric_name();
            // With a loader: what its workers could decode, beside what training takes.
            let loader = run
                .loader_rate
                .map_or(String::new(), |r| format!(" (loader {r:.0} img/s)"));
            bar.set_message(format!(
                "loss: {loss:.4} - {m}: {acc:.4} - {rate:.0} img/s{loader}"
            ));
            run.result = (loss as f32, acc as f32);
            if hook {
                let c = self.compiled()?;
                let logs = callbacks::Logs {
                    loss: run.result.0,
                    accuracy: run.result.1,
                    val_loss: None,
                    val_accuracy: None,
                    learning_rate: c.optimizer.learning_rate.at(c.step.saturating_sub(1)),
                };
                if runner.on_train_batch_end(self, step, &logs)? {
                    bar.set_position(step as u64 + 1);
                    return Ok(true);
                }
            }
        }
        bar.set_position(step as u64 + 1);
        Ok(false)
    }

    /// One training step on `valid` samples in a graph of `batch` rows (a rank's `shard`
    /// of a global batch in data-parallel training); returns the totals (loss sum, correct
    /// count) since the epoch's reset when `read` asks for them.
    fn step(
        &mut self,
        xb: Samples,
        yb: Targets,
        batch: usize,
        read: bool,
        cpu_totals: &mut (f64, f64),
        shard: Option<&Shard>,
    ) -> Result<Option<(f64, f64)>> {
        // Borrowed field by field: a step clones nothing.
        let Model {
            graph,
            seed,
            compiled,
            ..
        } = self;
        let c = Compiled::of(compiled)?;
        let (seed, valid) = (
            *seed,
            xb.len()
                / graph
                    .input_shape()
                    .map_or(1, |s| s.iter().product::<usize>().max(1)),
        );
        c.step += 1;
        let opt = &c.optimizer;
        match &mut c.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(graph, batch, true)?;
                xb.load(g, &p.gpu, Some(yb), valid)?;
                g.train_step(p, opt, c.step, seed, shard)?;
                if read {
                    Ok(Some(g.read_totals(&p.gpu)?))
                } else {
                    Ok(None)
                }
            }
            Engine::Cpu(e) => {
                let x = xb.floats();
                let (l, h) = e.train_step(graph, &x, yb, valid, opt, c.step, seed, shard)?;
                *cpu_totals = (cpu_totals.0 + l, cpu_totals.1 + h);
                Ok(Some(*cpu_totals))
            }
        }
    }

    /// Keras' `train_on_batch`: one training step on (x, y) as one batch; returns its
    /// loss and accuracy (one read-back).
    pub fn train_on_batch<'y>(
        &mut self,
        x: &[f32],
        y: impl Into<Targets<'y>>,
    ) -> Result<(f32, f32)> {
        let result = self.train_on_batch_ranks(x, y.into());
        self.ranks.or_abort(result)
    }

    /// [`Model::train_on_batch`]; data-parallel, (x, y) is the global batch and this rank
    /// trains on its shard (the first call starts every rank from rank 0's weights; call
    /// [`Model::average_moving_statistics`] now and then to keep BatchNormalization's
    /// statistics the same on every rank).
    fn train_on_batch_ranks(&mut self, x: &[f32], y: Targets) -> Result<(f32, f32)> {
        let n = self.check_data(x, Some(y), "train_on_batch")?;
        let ranks = self.ranks;
        // The same answer on every rank: all fail together, none waits for the others.
        ensure!(
            n >= ranks.size(),
            "a batch of {n} cannot give each of the {} ranks a sample",
            ranks.size()
        );
        if ranks.is_distributed() && self.compiled()?.step == 0 {
            self.broadcast_from_root()?;
        }
        let (shard, mine) = Shard::of(ranks, n);
        let sample = x.len() / n;
        let per = self.targets_per_sample()?;
        let (x, y) = (
            &x[mine.start * sample..mine.end * sample],
            y.slice(mine.clone(), per),
        );
        let local = mine.len();
        let graph = self.graph.clone();
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(&graph, local, true)?;
                g.reset_totals(&p.gpu)?;
            }
            Engine::Cpu(e) => e.reset_totals(),
        }
        let shard = ranks.is_distributed().then_some(shard);
        let (l, h) = self
            .step(
                Samples::F32(x),
                y,
                local,
                true,
                &mut (0.0, 0.0),
                shard.as_ref(),
            )?
            .context("a step's totals")?;
        let mut t = [l, h];
        ranks.all_reduce_sum_f64(&mut t)?;
        let counted = (n * self.loss_rows_per_sample()?) as f64;
        Ok(((t[0] / counted) as f32, (t[1] / counted) as f32))
    }

    /// Mean loss and accuracy on (x, y), batch 32 like Keras.
    pub fn evaluate<'y>(&mut self, x: &[f32], y: impl Into<Targets<'y>>) -> Result<(f32, f32)> {
        self.evaluate_batched(x, y, 32)
    }

    /// Mean loss and accuracy on (x, y) in batches of `batch_size`.
    pub fn evaluate_batched<'y>(
        &mut self,
        x: &[f32],
        y: impl Into<Targets<'y>>,
        batch_size: usize,
    ) -> Result<(f32, f32)> {
        let result = self.evaluate_feed(&Feed::Arrays { x, y: y.into() }, batch_size);
        self.ranks.or_abort(result)
    }

    /// Mean loss and accuracy on a data set read sample by sample, in batches of
    /// `batch_size` that `workers` threads decode ahead (0: in this thread).
    pub fn evaluate_source(
        &mut self,
        source: &dyn Source,
        batch_size: usize,
        workers: usize,
    ) -> Result<(f32, f32)> {
        let feed = Feed::Source {
            source,
            workers,
            prefetch: 2,
        };
        let result = self.evaluate_feed(&feed, batch_size);
        self.ranks.or_abort(result)
    }

    /// Mean loss and metric over `feed`; data-parallel, every rank evaluates its share and
    /// the sums add up over the ranks.
    fn evaluate_feed(&mut self, feed: &Feed, batch_size: usize) -> Result<(f32, f32)> {
        ensure!(batch_size > 0, "batch_size must be positive");
        let n_all = self.check_feed(feed, "evaluate")?;
        let per = self.targets_per_sample()?;
        let input = self.input_shape().context("no input shape")?.to_vec();
        let sample: usize = input.iter().product();
        let ranks = self.ranks;
        ensure!(
            !ranks.is_distributed()
                || !matches!(self.graph.objective, Objective::Classes { iou: true, .. }),
            "MeanIoU is not summed over ranks yet: evaluate with another metric under MPI"
        );
        let (first, end) = ranks.shard(n_all);
        let n = end - first;
        let graph = self.graph.clone();
        let batch = self.reuse_batch(batch_size.min(n).max(1));
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                e.graph(&graph, batch, false)?.0.reset_totals(&gpu)?;
            }
            Engine::Cpu(e) => e.reset_totals(),
        }
        let mut cpu = (0f64, 0f64);
        match *feed {
            Feed::Arrays { x, y } => {
                for start in (first..end).step_by(batch) {
                    let valid = batch.min(end - start);
                    let xs = &x[start * sample..(start + valid) * sample];
                    let ys = y.slice(start..start + valid, per);
                    self.eval_batch(&graph, Samples::F32(xs), ys, batch, &mut cpu)?;
                }
            }
            Feed::Source {
                source,
                workers,
                prefetch,
            } => {
                let plan = in_batches(first..end, batch);
                let image = source.shape();
                Loader::new(source, workers, prefetch).batches(&plan, None, |_, xb, yb, _| {
                    self.eval_batch(&graph, Samples::Bytes(xb, None, image), yb, batch, &mut cpu)?;
                    Ok(false)
                })?;
            }
        }
        let (sum, hits) = match &mut self.compiled()?.engine {
            _ if n == 0 => (0.0, 0.0),
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                e.graph(&graph, batch, false)?.0.read_totals(&gpu)?
            }
            Engine::Cpu(_) => cpu,
        };
        let mut t = [sum, hits];
        ranks.all_reduce_sum_f64(&mut t)?;
        let counted = (n_all * self.loss_rows_per_sample()?) as f64;
        Ok(((t[0] / counted) as f32, (t[1] / counted) as f32))
    }

    /// Adds one batch's loss and metric to the totals (the GPU's, or `cpu`).
    fn eval_batch(
        &mut self,
        graph: &Graph,
        xb: Samples,
        yb: Targets,
        batch: usize,
        cpu: &mut (f64, f64),
    ) -> Result<()> {
        let valid = xb.len()
            / graph
                .input_shape()
                .map_or(1, |s| s.iter().product::<usize>().max(1));
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                let (g, _) = e.graph(graph, batch, false)?;
                xb.load(g, &gpu, Some(yb), valid)?;
                g.eval_step(&gpu)
            }
            Engine::Cpu(e) => {
                let (l, h) = e.eval_batch(graph, &xb.floats(), yb, valid)?;
                *cpu = (cpu.0 + l, cpu.1 + h);
                Ok(())
            }
        }
    }

    /// A batch size whose graph already exists when `wanted` has none, to avoid
    /// allocating a second set of activations for evaluation.
    fn reuse_batch(&self, wanted: usize) -> usize {
        match &self.compiled {
            Some(Compiled {
                engine: Engine::Gpu(e),
                ..
            }) if !e.graphs.contains_key(&wanted) => {
                e.graphs.keys().copied().max().unwrap_or(wanted)
            }
            _ => wanted,
        }
    }

    /// Model outputs for every sample of `x` (probabilities with a softmax head), row-major
    /// `[n, classes]`.
    pub fn predict(&mut self, x: &[f32], batch_size: usize) -> Result<Vec<f32>> {
        ensure!(batch_size > 0, "batch_size must be positive");
        let n = self.check_data(x, None, "predict")?;
        let sample = x.len() / n;
        let graph = self.graph.clone();
        let batch = self.reuse_batch(batch_size.min(n));
        let mut out = Vec::with_capacity(n * self.output_size()?);
        for start in (0..n).step_by(batch) {
            let valid = batch.min(n - start);
            let xs = &x[start * sample..(start + valid) * sample];
            self.predict_batch(&graph, Samples::F32(xs), batch, &mut out)?;
        }
        Ok(out)
    }

    /// [`Model::predict`] over a data set read sample by sample (its labels unused),
    /// `workers` threads decoding ahead (0: in this thread). Every rank predicts all of it.
    pub fn predict_source(
        &mut self,
        source: &dyn Source,
        batch_size: usize,
        workers: usize,
    ) -> Result<Vec<f32>> {
        ensure!(batch_size > 0, "batch_size must be positive");
        let feed = Feed::Source {
            source,
            workers,
            prefetch: 2,
        };
        let n = self.check_feed(&feed, "predict")?;
        let graph = self.graph.clone();
        let batch = self.reuse_batch(batch_size.min(n));
        let mut out = Vec::with_capacity(n * self.output_size()?);
        let plan = in_batches(0..n, batch);
        let image = source.shape();
        Loader::new(source, workers, 2).batches(&plan, None, |_, xb, _, _| {
            self.predict_batch(&graph, Samples::Bytes(xb, None, image), batch, &mut out)?;
            Ok(false)
        })?;
        Ok(out)
    }

    /// Appends the outputs of the samples `xs` (at most `batch`) to `out`.
    fn predict_batch(
        &mut self,
        graph: &Graph,
        xs: Samples,
        batch: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let sample: usize = graph
            .input_shape()
            .map_or(1, |s| s.iter().product::<usize>().max(1));
        let valid = xs.len() / sample;
        let classes = self.output_size()?;
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                let (g, _) = e.graph(graph, batch, false)?;
                xs.load(g, &gpu, None, valid)?;
                g.predict_step(&gpu)?;
                let src = if g.predict_probs {
                    &g.probs
                } else {
                    &g.acts[g.output]
                };
                out.extend_from_slice(&src.read::<f32>(&gpu)?[..valid * classes]);
            }
            Engine::Cpu(e) => out.extend(e.predict_batch(graph, &xs.floats(), valid)?),
        }
        Ok(())
    }

    /// Checks `feed` against the model and returns its number of samples.
    fn check_feed(&self, feed: &Feed, what: &str) -> Result<usize> {
        match *feed {
            Feed::Arrays { x, y } => self.check_data(x, Some(y), what),
            Feed::Source { source, .. } => {
                let input = self.input_shape().context("the model has no input shape")?;
                let shape = source.shape();
                ensure!(
                    input == shape,
                    "{what}: the data set's samples are {shape:?}, the model takes {input:?}"
                );
                ensure!(!source.is_empty(), "{what}: the data set is empty");
                let per = self.targets_per_sample()?;
                let values = source.target_len();
                if matches!(self.graph.objective, Objective::Classes { .. }) {
                    let labels = source.labels_per_sample();
                    ensure!(
                        values == 0 && labels == per,
                        "{what}: this model's loss takes {per} class label(s) per sample, and \
                         the data set gives {}",
                        if values > 0 {
                            format!("{values} target values")
                        } else {
                            format!("{labels} class label(s)")
                        }
                    );
                } else {
                    ensure!(
                        values == per,
                        "{what}: this model's loss takes {per} target values per sample (its \
                         output's size), and the data set gives {}",
                        if values > 0 {
                            format!("{values}")
                        } else {
                            "class labels".to_string()
                        }
                    );
                    return Ok(source.len());
                }
                let (names, classes) = (source.class_names().len(), self.classes()?);
                ensure!(
                    names <= classes,
                    "{what}: the data set has {names} classes and the model's output {classes}"
                );
                Ok(source.len())
            }
        }
    }

    /// Every layer's output for one sample (layer name, per-sample shape, values).
    pub fn layer_outputs(&mut self, sample_x: &[f32]) -> Result<Vec<NamedTensor>> {
        let n = self.check_data(sample_x, None, "layer_outputs")?;
        ensure!(n == 1, "layer_outputs takes one sample, got {n}");
        let graph = self.graph.clone();
        let c = self.compiled()?;
        // Every tensor of the graph, the input's included.
        let outs: Vec<Vec<f32>> = match &mut c.engine {
            Engine::Gpu(e) => {
                let gpu = e.params.gpu.clone();
                let (g, _) = e.graph(&graph, 1, false)?;
                g.load(&gpu, sample_x, None, 1)?;
                g.predict_step(&gpu)?;
                g.acts
                    .iter()
                    .map(|t| t.read::<f32>(&gpu))
                    .collect::<Result<_>>()?
            }
            Engine::Cpu(e) => e.layer_outputs(&graph, sample_x, 1),
        };
        Ok(graph
            .nodes
            .iter()
            .zip(outs)
            .filter(|(n, _)| n.op != crate::layers::Op::Input)
            .map(|(n, values)| NamedTensor {
                name: n.name.clone(),
                shape: n.out_shape.clone(),
                values,
            })
            .collect())
    }

    /// The times of every dispatch of one GPU training step at `batch` (each run alone:
    /// its first run and the median of `reps` more), in step order. Empty on the CPU path.
    pub fn profile_step(&mut self, batch: usize, reps: usize) -> Result<Vec<DispatchTime>> {
        let graph = self.graph.clone();
        match &mut self.compiled()?.engine {
            Engine::Gpu(e) => {
                let (g, p) = e.graph(&graph, batch, true)?;
                g.profile(p, reps)
            }
            Engine::Cpu(_) => Ok(Vec::new()),
        }
    }
}

fn progress_bar(
    verbose: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> indicatif::ProgressBar {
    if !verbose {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{epochs} {{pos:>5}}/{{len}} [{{bar:25}}] {{elapsed}}<{{eta}} {{msg}}",
        epoch + 1
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Where `fit` takes its training batches from.
pub(crate) enum Feed<'a> {
    /// Arrays in memory: inputs and their targets.
    Arrays { x: &'a [f32], y: Targets<'a> },
    /// A data set read sample by sample by `workers` threads, `prefetch` batches ahead
    /// each (class labels).
    Source {
        source: &'a dyn Source,
        workers: usize,
        prefetch: usize,
    },
}

/// The running state of one training epoch.
struct EpochRun {
    epoch: usize,
    steps: usize,
    /// The global batch and the epoch's samples.
    batch: usize,
    n: usize,
    /// This rank's graph batch.
    local: usize,
    rows_per_sample: usize,
    start: Instant,
    last_read: Instant,
    cpu_totals: (f64, f64),
    /// Samples this rank has trained on this epoch.
    seen_here: usize,
    /// The last (loss, metric) read.
    result: (f32, f32),
    /// A loader's decode capacity so far (images per second of its workers' time).
    loader_rate: Option<f64>,
}

/// `range` in consecutive batches of `batch` samples, without augmentation.
fn in_batches(range: std::ops::Range<usize>, batch: usize) -> Vec<Vec<(usize, Option<Draw>)>> {
    let all: Vec<usize> = range.collect();
    all.chunks(batch.max(1))
        .map(|c| c.iter().map(|&i| (i, None)).collect())
        .collect()
}

/// One batch's inputs: floats, or the bytes of 8-bit images, which travel to the GPU as
/// they are (a quarter of the upload) and become b / 255 there, bit for bit as on the host.
#[derive(Clone, Copy)]
pub(crate) enum Samples<'a> {
    F32(&'a [f32]),
    /// Bytes of images of the shape given, and the flips and shifts left to the GPU.
    Bytes(&'a [u8], GpuDraws<'a>, [usize; 3]),
}

impl<'a> Samples<'a> {
    /// Values (one per pixel and channel).
    fn len(&self) -> usize {
        match self {
            Samples::F32(x) => x.len(),
            Samples::Bytes(b, ..) => b.len(),
        }
    }

    /// Loads the batch into a GPU graph.
    fn load(self, g: &GpuGraph, gpu: &Gpu, targets: Option<Targets>, valid: usize) -> Result<()> {
        match self {
            Samples::F32(x) => g.load(gpu, x, targets, valid),
            Samples::Bytes(b, draws, shape) => g.load_bytes(gpu, (b, draws, shape), targets, valid),
        }
    }

    /// The floats (the CPU reference path converts bytes on the host).
    fn floats(self) -> std::borrow::Cow<'a, [f32]> {
        match self {
            Samples::F32(x) => std::borrow::Cow::Borrowed(x),
            Samples::Bytes(b, draws, shape) => {
                let mut out = vec![0.0; b.len()];
                let draws = draws.map(|(d, fill)| (d, shape, fill));
                bytes_to_unit_cpu(&mut out, b, &unit_table(), draws);
                std::borrow::Cow::Owned(out)
            }
        }
    }
}
