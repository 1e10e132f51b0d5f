//! Files of a model: weights (`save_weights`, Keras' weight names as safetensors tensors)
//! and whole models (`save` / `load`): one safetensors file holding the architecture and
//! compile settings (JSON in its metadata), the weights with the BatchNormalization
//! statistics, the optimizer state and step, the epochs trained and the seed (every
//! random draw of a run derives from the seed, the epoch and the step). A resumed run
//! continues bit for bit. Both are written atomically.

use super::{Engine, Graph, History, Model, NamedTensor, Sequential};
use crate::layers::Layer;
use crate::ops::optimizer::Optimizer;
use anyhow::{Context, Result, bail, ensure};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What a model file's metadata says it is.
const FORMAT: &str = "wgcnn-model";
/// The newest model-file layout this build reads and writes: 2 records the layer graph
/// (nodes with their inputs); 1, a Sequential's list of layers, is still read.
const VERSION: u32 = 2;
/// The safetensors metadata key holding the JSON below.
const META_KEY: &str = "wgcnn";
/// Optimizer slots are stored as `optimizer/<weight name>/<slot>`.
const OPTIMIZER_PREFIX: &str = "optimizer/";

/// The JSON in a model file's metadata.
#[derive(serde::Serialize, serde::Deserialize)]
struct ModelMeta {
    format: String,
    version: u32,
    name: String,
    seed: u64,
    /// Version 1: a Sequential's layers, as added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    layers: Vec<Layer>,
    /// Version 2: every node of the graph, in order.
    #[serde(default)]
    nodes: Vec<SavedNode>,
    /// Version 2: the output nodes.
    #[serde(default)]
    outputs: Vec<usize>,
    /// Version 2: built with the functional API.
    #[serde(default)]
    functional: bool,
    optimizer: Optimizer,
    /// The compiled loss and metrics (absent, sparse categorical cross-entropy and
    /// accuracy, in files of earlier builds).
    #[serde(default = "class_loss")]
    loss: super::Loss,
    #[serde(default = "accuracy")]
    metrics: Vec<super::Metric>,
    /// Optimizer steps taken.
    step: u64,
    /// Epochs trained.
    epoch: usize,
    metadata: BTreeMap<String, String>,
    /// The per-epoch history of every epoch trained (absent in files of earlier builds).
    #[serde(default)]
    history: History,
}

fn class_loss() -> super::Loss {
    super::Loss::SparseCategoricalCrossentropy
}

fn accuracy() -> Vec<super::Metric> {
    vec![super::Metric::Accuracy]
}

/// One node of a saved graph: its layer, name and inputs.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedNode {
    layer: Layer,
    name: String,
    inputs: Vec<usize>,
    /// False for a frozen layer (absent, true, in files of earlier builds).
    #[serde(default = "trainable", skip_serializing_if = "is_true")]
    trainable: bool,
}

/// serde's default for [`SavedNode::trainable`].
fn trainable() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The safetensors bytes of `tensors`, with `meta` as the header's metadata.
fn encode(tensors: &[NamedTensor], meta: Metadata) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|t| {
            Ok((
                t.name.clone(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    t.shape.clone(),
                    bytemuck::cast_slice(&t.values),
                )?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .context("preparing tensors")?;
    Ok(safetensors::serialize(views, meta)?)
}

/// A safetensors header's free-form metadata.
type Metadata = Option<HashMap<String, String>>;

/// The tensors and metadata of a safetensors file.
fn decode(data: &[u8]) -> Result<(Vec<NamedTensor>, Metadata)> {
    let (_, header) = safetensors::SafeTensors::read_metadata(data)
        .context("not a safetensors file, or a truncated one")?;
    let meta = header.metadata().clone();
    let st = safetensors::SafeTensors::deserialize(data)
        .context("not a safetensors file, or a truncated one")?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        ensure!(
            view.dtype() == safetensors::Dtype::F32,
            "tensor '{name}' is {:?}, expected F32",
            view.dtype()
        );
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            values: bytemuck::pod_collect_to_vec(view.data()),
        });
    }
    Ok((tensors, meta))
}

/// What a safetensors file that wgcnn wrote holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A whole model ([`Model::save`]): architecture, weights, optimizer state.
    Model,
    /// Weights only ([`Model::save_weights`]).
    Weights,
}

/// Says whether `path` holds a whole model or weights only, from its header alone (so a
/// command line can name the right command before loading anything).
pub fn file_kind(path: impl AsRef<Path>) -> Result<FileKind> {
    use std::io::Read;
    let path = path.as_ref();
    let read = || -> Result<FileKind> {
        let mut f = std::fs::File::open(path)?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        // safetensors' own bound on a header.
        ensure!(len <= 100_000_000, "its header length {len} is implausible");
        let mut header = Vec::new();
        f.take(len).read_to_end(&mut header)?;
        let header: serde_json::Value = serde_json::from_slice(&header)?;
        let model = header
            .get("__metadata__")
            .and_then(|m| m.get(META_KEY))
            .is_some();
        Ok(if model {
            FileKind::Model
        } else {
            FileKind::Weights
        })
    };
    read().with_context(|| {
        format!(
            "{} is not a safetensors file, or a truncated one",
            path.display()
        )
    })
}

impl Model {
    /// Every parameter tensor, named like Keras (`conv2d/kernel`, `conv2d/bias`, …).
    pub fn get_weights(&self) -> Result<Vec<NamedTensor>> {
        let c = self.compiled.as_ref().context("compile the model first")?;
        let values = c.engine.weights()?;
        let mut out = Vec::new();
        for (node, vals) in self.graph.nodes.iter().zip(values) {
            for ((suffix, shape), v) in node.param_shapes().into_iter().zip(vals) {
                out.push(NamedTensor {
                    name: format!("{}/{suffix}", node.name),
                    shape,
                    values: v,
                });
            }
        }
        Ok(out)
    }

    /// Sets every parameter (all must be present, with matching shapes) and resets the
    /// optimizer state.
    pub fn set_weights(&mut self, weights: &[NamedTensor]) -> Result<()> {
        self.write_weights(weights)?;
        let c = self.compiled()?;
        match &mut c.engine {
            Engine::Gpu(e) => e.params.reset_state()?,
            Engine::Cpu(e) => e.reset_state(),
        }
        c.step = 0;
        Ok(())
    }

    /// Sets every parameter, keeping the optimizer state (EarlyStopping's restore, a
    /// model file's load).
    pub(crate) fn write_weights(&mut self, weights: &[NamedTensor]) -> Result<()> {
        let by_name: HashMap<&str, (&Vec<usize>, &Vec<f32>)> = weights
            .iter()
            .map(|w| (w.name.as_str(), (&w.shape, &w.values)))
            .collect();
        let mut values = Vec::new();
        for node in &self.graph.nodes {
            let mut vals = Vec::new();
            for (suffix, shape) in node.param_shapes() {
                let name = format!("{}/{suffix}", node.name);
                let (s, v) = by_name.get(name.as_str()).with_context(|| {
                    format!(
                        "weights have no tensor '{name}' (model: {})",
                        self.architecture()
                    )
                })?;
                ensure!(
                    **s == shape,
                    "tensor '{name}' has shape {s:?} but the model needs {shape:?}"
                );
                ensure!(
                    v.len() == shape.iter().product::<usize>(),
                    "tensor '{name}' has {} values for shape {shape:?}",
                    v.len()
                );
                vals.push((*v).clone());
            }
            values.push(vals);
        }
        let expected: usize = self
            .graph
            .nodes
            .iter()
            .map(|n| n.param_shapes().len())
            .sum();
        if weights.len() != expected {
            let known: Vec<String> = self
                .graph
                .nodes
                .iter()
                .flat_map(|n| {
                    n.param_shapes()
                        .into_iter()
                        .map(move |(s, _)| format!("{}/{s}", n.name))
                })
                .collect();
            let extra: Vec<&str> = weights
                .iter()
                .map(|w| w.name.as_str())
                .filter(|n| !known.iter().any(|k| k == n))
                .collect();
            bail!("weights hold tensors the model does not have: {extra:?}");
        }
        let c = self.compiled.as_mut().context("compile the model first")?;
        match &mut c.engine {
            Engine::Gpu(e) => e.params.write(&values)?,
            Engine::Cpu(e) => e.params = values,
        }
        Ok(())
    }

    fn architecture(&self) -> String {
        self.nodes()
            .iter()
            .map(|n| format!("{} {:?}", n.name, n.out_shape))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Saves the weights as safetensors, one tensor per Keras weight name (atomically:
    /// a crash never leaves a half-written file where a good one was).
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = encode(&self.get_weights()?, None)
            .with_context(|| format!("encoding the weights for {}", path.display()))?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Loads weights saved by [`save_weights`](Self::save_weights) (or the weights of a
    /// [`save`](Self::save) file); a file of another architecture is an error naming the
    /// mismatched tensor.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let data = std::fs::read(path)
            .with_context(|| format!("reading weights file {}", path.display()))?;
        let (tensors, _) = decode(&data).with_context(|| format!("reading {}", path.display()))?;
        let weights: Vec<NamedTensor> = tensors
            .into_iter()
            .filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
            .collect();
        self.set_weights(&weights)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Saves the whole model (Keras' `model.save`): architecture, compile settings,
    /// weights, optimizer state and step, epochs trained, seed and metadata, in one
    /// safetensors file, written atomically. [`Model::load`] reads it back.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let c = self
            .compiled
            .as_ref()
            .context("compile the model before saving it")?;
        let meta = ModelMeta {
            format: FORMAT.into(),
            version: VERSION,
            name: self.name.clone(),
            seed: self.seed,
            layers: Vec::new(),
            nodes: self
                .graph
                .nodes
                .iter()
                .zip(&self.graph.layers)
                .map(|(n, l)| SavedNode {
                    layer: l.clone(),
                    name: n.name.clone(),
                    inputs: n.inputs.clone(),
                    trainable: n.trainable,
                })
                .collect(),
            outputs: self.graph.outputs.clone(),
            functional: self.functional,
            optimizer: c.optimizer.clone(),
            loss: c.loss,
            metrics: c.metrics.clone(),
            step: c.step,
            epoch: c.epochs_done,
            metadata: self.metadata.clone(),
            history: self.history.clone(),
        };
        let json = serde_json::to_string(&meta).context("describing the model")?;
        let mut tensors = self.get_weights()?;
        let state = match &c.engine {
            Engine::Gpu(e) => e.params.read_state()?,
            Engine::Cpu(e) => e.state.clone(),
        };
        for (node, slots) in self.graph.nodes.iter().zip(state) {
            for (param, slots) in node.params().into_iter().filter(|p| p.trainable).zip(slots) {
                for (k, values) in slots.into_iter().enumerate() {
                    tensors.push(NamedTensor {
                        name: format!("{OPTIMIZER_PREFIX}{}/{}/{k}", node.name, param.suffix),
                        shape: param.shape.clone(),
                        values,
                    });
                }
            }
        }
        let bytes = encode(
            &tensors,
            Some(HashMap::from([(META_KEY.to_string(), json)])),
        )
        .with_context(|| format!("encoding the model for {}", path.display()))?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Loads a model saved by [`Model::save`], compiled on the default device, ready to
    /// predict or to train on (a `fit` with `initial_epoch: model.epochs_trained()`
    /// continues the saved run exactly).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_on(path, None)
    }

    /// Like [`Model::load`], on `device` (None: the default).
    pub fn load_on(path: impl AsRef<Path>, device: Option<super::Device>) -> Result<Model> {
        let path = path.as_ref();
        let data = std::fs::read(path)
            .with_context(|| format!("reading model file {}", path.display()))?;
        Self::from_bytes(&data, device).with_context(|| format!("loading {}", path.display()))
    }

    fn from_bytes(data: &[u8], device: Option<super::Device>) -> Result<Model> {
        let (tensors, meta) = decode(data)?;
        let Some(json) = meta.as_ref().and_then(|m| m.get(META_KEY)) else {
            bail!(
                "this is a weights file (save_weights), not a model file (save): load it into \
                 the model it came from with load_weights"
            );
        };
        let header: serde_json::Value =
            serde_json::from_str(json).context("the model description is not valid JSON")?;
        let format = header.get("format").and_then(|v| v.as_str()).unwrap_or("");
        ensure!(
            format == FORMAT,
            "not a wgcnn model file (format '{format}')"
        );
        let version = header.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        ensure!(
            version <= u64::from(VERSION),
            "the model file has format version {version}, newer than this wgcnn reads ({VERSION}); update wgcnn"
        );
        let meta: ModelMeta = serde_json::from_value(header)
            .context("the model description does not match this wgcnn's layers and optimizers")?;
        let mut m = if version < 2 {
            let mut s = Sequential::new();
            for layer in meta.layers {
                s.add(layer)?;
            }
            s.into_model()
        } else {
            let mut graph = Graph::default();
            for n in meta.nodes {
                let i = graph.push(n.layer, n.inputs, Some(n.name))?;
                graph.nodes[i].trainable = n.trainable;
            }
            ensure!(
                meta.outputs.iter().all(|&o| o < graph.nodes.len()),
                "the model file names an output node it does not have"
            );
            graph.outputs = meta.outputs;
            Model::from_graph(
                if meta.functional {
                    "functional"
                } else {
                    "sequential"
                },
                meta.functional,
                graph,
            )
        };
        m.name = meta.name;
        m.metadata = meta.metadata;
        m.history = meta.history;
        m.set_seed(meta.seed);
        if let Some(d) = device {
            m.set_device(d);
        }
        m.compile(meta.optimizer, meta.loss, &meta.metrics)?;
        let (state, weights): (Vec<NamedTensor>, Vec<NamedTensor>) = tensors
            .into_iter()
            .partition(|t| t.name.starts_with(OPTIMIZER_PREFIX));
        m.write_weights(&weights)?;
        let mut by_name: HashMap<String, NamedTensor> =
            state.into_iter().map(|t| (t.name.clone(), t)).collect();
        let slots = m.compiled()?.optimizer.slots();
        let mut values = Vec::new();
        for node in &m.graph.nodes {
            let mut per_tensor = Vec::new();
            for param in node.params().into_iter().filter(|p| p.trainable) {
                let mut s = Vec::new();
                for k in 0..slots {
                    let name = format!("{OPTIMIZER_PREFIX}{}/{}/{k}", node.name, param.suffix);
                    let t = by_name.remove(&name).with_context(|| {
                        format!("the model file has no optimizer tensor '{name}'")
                    })?;
                    ensure!(
                        t.shape == param.shape,
                        "optimizer tensor '{name}' has shape {:?}, expected {:?}",
                        t.shape,
                        param.shape
                    );
                    s.push(t.values);
                }
                per_tensor.push(s);
            }
            values.push(per_tensor);
        }
        let c = m.compiled()?;
        match &mut c.engine {
            Engine::Gpu(e) => e.params.write_state(&values)?,
            Engine::Cpu(e) => e.set_state(values),
        }
        c.step = meta.step;
        c.epochs_done = meta.epoch;
        Ok(m)
    }
}
