//! Keras' functional API. [`input`] gives a symbolic tensor; applying a layer to symbolic
//! tensors (`Conv2D::new(16, 3).apply(&x)?`, `Add::new().apply(&[&x, &y])?`) gives a new
//! one, checked against its inputs' shapes right then; [`Model::new`] collects the layers
//! between the inputs and the outputs into a [`Graph`]. A layer applied but off every path
//! to the outputs is not part of the model, as in Keras.
//!
//! ```
//! use wgcnn::prelude::*;
//! # fn main() -> anyhow::Result<()> {
//! let inputs = input(&[32, 32, 3])?;
//! let x = Conv2D::new(16, 3).padding(Same).activation(Relu).apply(&inputs)?;
//! let y = Conv2D::new(16, 3).padding(Same).apply(&x)?;
//! let y = Add::new().apply(&[&x, &y])?; // a residual connection
//! let y = GlobalAveragePooling2D::new().apply(&y)?;
//! let outputs = Dense::new(10).activation(Softmax).apply(&y)?;
//! let model = Model::new(&[&inputs], &[&outputs])?;
//! assert_eq!(model.count_params(), 448 + 2_320 + 170);
//! # Ok(()) }
//! ```

use super::{Graph, Model};
use crate::layers::{self, Input, Layer};
use anyhow::{Result, bail, ensure};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A symbolic tensor (Keras' `KerasTensor`): the output of a layer applied in a functional
/// model, with its per-sample shape. Cheap to clone; every clone is the same tensor.
#[derive(Clone)]
pub struct SymbolicTensor(Rc<Symbol>);

struct Symbol {
    /// Creation order: layers are named, and placed in the graph, in the order they were
    /// applied (Keras' automatic names in a fresh process).
    seq: u64,
    layer: Layer,
    inputs: Vec<SymbolicTensor>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for SymbolicTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SymbolicTensor({} {:?})",
            self.0.layer.keras_type(),
            self.0.shape
        )
    }
}

impl SymbolicTensor {
    /// The per-sample shape (without the batch axis).
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn id(&self) -> *const Symbol {
        Rc::as_ptr(&self.0)
    }
}

/// Keras' `keras.Input(shape=…)`: a model input of per-sample `shape`.
pub fn input(shape: &[usize]) -> Result<SymbolicTensor> {
    apply(Input::new(shape).into(), &[])
}

/// `layer` applied to `inputs`: resolved now, so that a layer that does not fit is an
/// error here, naming it and the shapes.
pub(crate) fn apply(layer: Layer, inputs: &[&SymbolicTensor]) -> Result<SymbolicTensor> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(s) = layer.input_shape() {
        ensure!(
            matches!(layer, Layer::Input(_)),
            "input_shape {s:?} is for a Sequential's first layer; in a functional model, \
             start from input(&{s:?})"
        );
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let name = layers::auto_name(&layer, &[]);
    let node = layers::resolve(&layer, &shapes, Vec::new(), name)?;
    Ok(SymbolicTensor(Rc::new(Symbol {
        seq: NEXT.fetch_add(1, Ordering::Relaxed),
        layer,
        inputs: inputs.iter().map(|&t| t.clone()).collect(),
        shape: node.out_shape,
    })))
}

impl Model {
    /// Keras' `Model(inputs, outputs)`: the layers between `inputs` (from [`input`]) and
    /// `outputs`, in the order they were applied, named as Keras names them. One input and
    /// one output for now.
    ///
    /// A residual block, as in ResNet:
    ///
    /// ```
    /// use wgcnn::prelude::*;
    /// # fn main() -> anyhow::Result<()> {
    /// let inputs = input(&[8, 8, 4])?;
    /// let x = Conv2D::new(4, 3).padding(Same).activation(Relu).apply(&inputs)?;
    /// let x = Conv2D::new(4, 3).padding(Same).apply(&x)?;
    /// let x = Add::new().apply(&[&x, &inputs])?; // the shortcut
    /// let x = Activation::new(Relu).apply(&x)?;
    /// let x = GlobalAveragePooling2D::new().apply(&x)?;
    /// let outputs = Dense::new(3).activation(Softmax).apply(&x)?;
    /// let mut model = Model::new(&[&inputs], &[&outputs])?;
    /// assert_eq!(model.count_params(), 2 * (4 * 9 * 4 + 4) + 4 * 3 + 3);
    /// model.set_device(Device::Cpu);
    /// model.compile(Optimizer::adam(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
    /// let x = vec![0.5; 2 * 8 * 8 * 4];
    /// let (loss, _) = model.train_on_batch(&x, &[0u32, 2][..])?;
    /// assert!(loss.is_finite());
    /// # Ok(()) }
    /// ```
    pub fn new(inputs: &[&SymbolicTensor], outputs: &[&SymbolicTensor]) -> Result<Model> {
        ensure!(
            inputs.len() == 1 && outputs.len() == 1,
            "Model::new takes one input and one output for now (got {} and {})",
            inputs.len(),
            outputs.len()
        );
        for t in inputs {
            ensure!(
                matches!(t.0.layer, Layer::Input(_)),
                "Model::new: {t:?} is not an input; make inputs with input(&[..])"
            );
        }
        // Every symbol the outputs depend on.
        let mut seen: HashMap<*const Symbol, SymbolicTensor> = HashMap::new();
        let mut stack: Vec<SymbolicTensor> = outputs.iter().map(|&t| t.clone()).collect();
        while let Some(t) = stack.pop() {
            if seen.contains_key(&t.id()) {
                continue;
            }
            if matches!(t.0.layer, Layer::Input(_)) && !inputs.iter().any(|i| i.id() == t.id()) {
                bail!("Model::new: the outputs depend on an input that is not among the inputs");
            }
            stack.extend(t.0.inputs.iter().cloned());
            seen.insert(t.id(), t);
        }
        let mut symbols: Vec<SymbolicTensor> = seen.into_values().collect();
        // Names in the order the layers were applied (Keras' per-stem counters).
        symbols.sort_by_key(|t| t.0.seq);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let names: HashMap<*const Symbol, String> = symbols
            .iter()
            .map(|t| {
                let stem = t.0.layer.name_stem();
                let n = counts.entry(stem).or_default();
                let name = if *n == 0 {
                    stem.to_string()
                } else {
                    format!("{stem}_{n}")
                };
                *n += 1;
                (t.id(), name)
            })
            .collect();
        // Keras' layer order (`model.layers`, the summary's rows): by depth from the
        // outputs, deepest first, ties in the order a depth-first walk from the outputs
        // meets them. Every input comes before its readers.
        let mut depth: HashMap<*const Symbol, usize> =
            outputs.iter().map(|t| (t.id(), 0)).collect();
        for t in symbols.iter().rev() {
            let d = depth.get(&t.id()).copied().unwrap_or(0);
            for i in &t.0.inputs {
                let e = depth.entry(i.id()).or_default();
                *e = (*e).max(d + 1);
            }
        }
        let mut walk: HashMap<*const Symbol, usize> = HashMap::new();
        let mut stack: Vec<SymbolicTensor> = outputs.iter().rev().map(|&t| t.clone()).collect();
        while let Some(t) = stack.pop() {
            if walk.contains_key(&t.id()) {
                continue;
            }
            walk.insert(t.id(), walk.len());
            stack.extend(t.0.inputs.iter().rev().cloned());
        }
        symbols.sort_by_key(|t| (std::cmp::Reverse(depth[&t.id()]), walk[&t.id()]));
        let mut graph = Graph::default();
        let mut index: HashMap<*const Symbol, usize> = HashMap::new();
        for t in &symbols {
            let reads = t.0.inputs.iter().map(|i| index[&i.id()]).collect();
            let name = names[&t.id()].clone();
            let i = graph.push(t.0.layer.clone(), reads, Some(name))?;
            index.insert(t.id(), i);
        }
        graph.outputs = outputs.iter().map(|t| index[&t.id()]).collect();
        Ok(Model::from_graph("functional", true, graph))
    }
}
