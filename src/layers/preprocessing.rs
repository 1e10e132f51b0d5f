//! Keras' preprocessing layers that are fixed per-channel maps: `Rescaling` and
//! `Normalization` (with its statistics given, or computed from data by `adapt`). Both
//! run as one affine map per channel (`ops::channel_affine`) and learn nothing.

use anyhow::{Result, ensure};

/// Keras' `Rescaling(scale, offset=0.0)`: `x·scale + offset` (e.g. `1/255` for bytes, or
/// `1/127.5` with offset −1 for [−1, 1]). One value, or one per channel (the last axis).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rescaling {
    /// The factor: one value, or one per channel.
    pub scale: Vec<f32>,
    /// Added after scaling: one value, or one per channel.
    pub offset: Vec<f32>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Rescaling {
    /// Multiplies every input by `scale` (Keras' default offset 0).
    pub fn new(scale: f32) -> Rescaling {
        Rescaling {
            scale: vec![scale],
            offset: vec![0.0],
            input_shape: None,
        }
    }

    /// Adds `offset` after scaling (Keras' `offset`).
    pub fn offset(mut self, offset: f32) -> Self {
        self.offset = vec![offset];
        self
    }

    /// One factor and offset per channel.
    pub fn per_channel(scale: &[f32], offset: &[f32]) -> Rescaling {
        Rescaling {
            scale: scale.to_vec(),
            offset: offset.to_vec(),
            input_shape: None,
        }
    }
}

/// Keras' `Normalization(axis=-1, mean, variance)`: `(x − mean) / max(√variance, 1e-7)`
/// per channel (the last axis), with the statistics given or computed from data
/// ([`Normalization::adapt`], Keras' `layer.adapt(data)`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// The mean: one value, or one per channel.
    pub mean: Vec<f32>,
    /// The variance: one value, or one per channel.
    pub variance: Vec<f32>,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl Normalization {
    /// The given mean and variance (one value, or one per channel).
    pub fn new(mean: &[f32], variance: &[f32]) -> Normalization {
        Normalization {
            mean: mean.to_vec(),
            variance: variance.to_vec(),
            input_shape: None,
        }
    }

    /// Each channel's mean and (population) variance over `data`, rows of `channels`
    /// values (Keras' `adapt`, whose values these are), summed in f64. Keras 3 then holds
    /// them as 2·channels + 1 non-trainable weights (mean, variance, count); here they are
    /// constants of the layer and the summary counts 0 parameters.
    pub fn adapt(data: &[f32], channels: usize) -> Result<Normalization> {
        ensure!(
            channels > 0 && !data.is_empty() && data.len().is_multiple_of(channels),
            "Normalization.adapt: {} values are not rows of {channels} channels",
            data.len()
        );
        let rows = (data.len() / channels) as f64;
        let mut sum = vec![0f64; channels];
        for (i, &v) in data.iter().enumerate() {
            sum[i % channels] += f64::from(v);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / rows).collect();
        let mut sq = vec![0f64; channels];
        for (i, &v) in data.iter().enumerate() {
            sq[i % channels] += (f64::from(v) - mean[i % channels]).powi(2);
        }
        Ok(Normalization::new(
            &mean.iter().map(|&m| m as f32).collect::<Vec<_>>(),
            &sq.iter().map(|s| (s / rows) as f32).collect::<Vec<_>>(),
        ))
    }
}

/// One value per channel from `v` (one value for all, or exactly `channels`).
pub(crate) fn per_channel(v: &[f32], channels: usize, what: &str) -> Result<Vec<f32>> {
    match v.len() {
        1 => Ok(vec![v[0]; channels]),
        n if n == channels => Ok(v.to_vec()),
        n => anyhow::bail!("{what} has {n} values for {channels} channels (give 1 or {channels})"),
    }
}
