//! The model's side of data-parallel training (see [`crate::distributed`]): which part of a
//! batch a rank trains on, how its gradients join the other ranks', and the state every
//! rank must share (weights and optimizer state from rank 0 at the start, the moving
//! statistics of BatchNormalization averaged at each epoch's end).

use super::{Engine, Model};
use crate::distributed::Ranks;
use anyhow::Result;

/// One rank's part of one training step of a global batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shard {
    /// Index within the global batch of this rank's first sample (dropout masks follow
    /// it, so that they are the ones one process would draw).
    pub first: usize,
    /// Local samples over the global batch's: the weight of this rank's mean gradient in
    /// the global mean (equal shards: 1 / ranks).
    pub weight: f32,
    pub ranks: Ranks,
}

impl Shard {
    /// Rank `ranks`' shard of a global batch of `global` samples.
    pub fn of(ranks: Ranks, global: usize) -> (Shard, std::ops::Range<usize>) {
        let (start, end) = ranks.shard(global);
        let shard = Shard {
            first: start,
            weight: (end - start) as f32 / global.max(1) as f32,
            ranks,
        };
        (shard, start..end)
    }

    /// Turns this rank's mean gradients (every trainable tensor, one after another) into
    /// the global batch's: weighted by this rank's share, summed over the ranks. Every
    /// rank gets the same values.
    pub fn reduce(&self, grads: &mut [f32]) -> Result<()> {
        if self.weight != 1.0 {
            grads.iter_mut().for_each(|g| *g *= self.weight);
        }
        self.ranks.all_reduce_sum(grads)
    }
}

impl Model {
    /// Makes every rank start from rank 0's weights, optimizer state and step count (they
    /// agree already when every rank built the model from the same seed or file; this
    /// makes sure of it).
    pub(crate) fn broadcast_from_root(&mut self) -> Result<()> {
        let ranks = self.ranks;
        if !ranks.is_distributed() {
            return Ok(());
        }
        let mut weights = self.get_weights()?;
        let mut flat: Vec<f32> = weights.iter().flat_map(|w| w.values.clone()).collect();
        ranks.broadcast(&mut flat)?;
        let mut at = 0;
        for w in &mut weights {
            let n = w.values.len();
            w.values.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        self.write_weights(&weights)?;
        let c = self.compiled()?;
        let mut state = match &c.engine {
            Engine::Gpu(e) => e.params.read_state()?,
            Engine::Cpu(e) => e.state.clone(),
        };
        let mut flat: Vec<f32> = state
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .copied()
            .collect();
        flat.push(c.step as f32); // exact up to 2^24 steps; checked below
        ranks.broadcast(&mut flat)?;
        let step = flat.pop().unwrap_or(0.0);
        anyhow::ensure!(
            step as u64 == c.step || c.step >= 1 << 24,
            "rank {} is at optimizer step {} and rank 0 at {step}: start every rank from the \
             same model file",
            ranks.rank(),
            c.step
        );
        let mut at = 0;
        for v in state.iter_mut().flatten().flatten() {
            let n = v.len();
            v.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        match &mut c.engine {
            Engine::Gpu(e) => e.params.write_state(&state)?,
            Engine::Cpu(e) => e.set_state(state),
        }
        Ok(())
    }

    /// Averages the moving mean and variance of every trainable BatchNormalization over
    /// the ranks (each rank normalizes with its own batch statistics, as PyTorch's DDP and
    /// Horovod do without SyncBatchNorm), so that every rank holds the same model. `fit`
    /// does it at every epoch's end; a loop of [`Model::train_on_batch`] calls it itself
    /// (on every rank). Nothing happens in one process.
    pub fn average_moving_statistics(&mut self) -> Result<()> {
        let ranks = self.ranks;
        let slots: Vec<(usize, [usize; 2])> = self
            .graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.trainable)
            .filter_map(|(i, n)| n.op.batchnorm_slots().map(|(.., m, v)| (i, [m, v])))
            .collect();
        if !ranks.is_distributed() || slots.is_empty() {
            return Ok(());
        }
        let c = self.compiled()?;
        let mut values = c.engine.weights()?;
        let mut flat: Vec<f32> = slots
            .iter()
            .flat_map(|(i, s)| {
                s.iter()
                    .flat_map(|&k| values[*i][k].clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        ranks.all_reduce_sum(&mut flat)?;
        let scale = 1.0 / ranks.size() as f32;
        let mut at = 0;
        for (i, s) in &slots {
            for &k in s {
                for v in values[*i][k].iter_mut() {
                    *v = flat[at] * scale;
                    at += 1;
                }
            }
        }
        match &mut c.engine {
            Engine::Gpu(e) => e.params.write(&values)?,
            Engine::Cpu(e) => e.params = values,
        }
        Ok(())
    }
}
