//! Merge layers: several tensors in, one out. `Add`, `Subtract`, `Multiply`, `Average`,
//! `Maximum` and `Minimum` take same-shape inputs (Subtract exactly two) and fold them
//! pairwise, as Keras does; `Concatenate` joins inputs along an axis (channels by
//! default). Applied in a functional model with `apply(&[&a, &b])`.

use super::Layer;
use crate::model::SymbolicTensor;
use crate::ops::merge::MergeOp;
use anyhow::{Result, bail, ensure};

macro_rules! merge_layers {
    ($($t:ident: $doc:literal),*) => {$(
        #[doc = $doc]
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $t {}

        impl $t {
            /// The layer (it takes no arguments).
            pub fn new() -> $t {
                $t {}
            }
            /// Applies the layer to `inputs` in a functional model (Keras'
            /// `layer([a, b])`): checks their shapes and returns the output.
            pub fn apply(self, inputs: &[&SymbolicTensor]) -> Result<SymbolicTensor> {
                crate::model::apply_layer(self.into(), inputs)
            }
        }

        impl From<$t> for Layer {
            fn from(l: $t) -> Layer {
                Layer::$t(l)
            }
        }
    )*};
}
merge_layers!(
    Add: "`Add()`: the element-wise sum of its inputs.",
    Subtract: "`Subtract()`: the first of its two inputs minus the second.",
    Multiply: "`Multiply()`: the element-wise product of its inputs.",
    Average: "`Average()`: the element-wise mean of its inputs.",
    Maximum: "`Maximum()`: the element-wise maximum of its inputs (the gradient goes to the first input that attains it).",
    Minimum: "`Minimum()`: the element-wise minimum of its inputs (the gradient goes to the first input that attains it)."
);

/// `Concatenate(axis=-1)`: its inputs joined along `axis` (of the per-sample shape plus
/// the batch axis, as Keras counts: -1 is the last, 0 the batch axis, which cannot be
/// joined); every other axis must agree.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Concatenate {
    /// The axis joined along, counting the batch axis (Keras' `axis`, -1 by default).
    pub axis: i64,
}

impl Default for Concatenate {
    fn default() -> Self {
        Self::new()
    }
}

impl Concatenate {
    /// Along the last axis (channels).
    pub fn new() -> Concatenate {
        Concatenate { axis: -1 }
    }
    /// Joins along `axis` (Keras' `axis`: -1 is the last, 0 the batch axis, not allowed).
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }
    /// Applies the layer to `inputs` in a functional model: checks their shapes and
    /// returns the output.
    pub fn apply(self, inputs: &[&SymbolicTensor]) -> Result<SymbolicTensor> {
        crate::model::apply_layer(self.into(), inputs)
    }
}

impl From<Concatenate> for Layer {
    fn from(l: Concatenate) -> Layer {
        Layer::Concatenate(l)
    }
}

/// The pairwise function and scale of an element-wise merge layer, or None for another
/// layer.
pub(crate) fn merge_op(layer: &Layer) -> Option<MergeOp> {
    Some(match layer {
        Layer::Add(_) | Layer::Average(_) => MergeOp::Add,
        Layer::Subtract(_) => MergeOp::Subtract,
        Layer::Multiply(_) => MergeOp::Multiply,
        Layer::Maximum(_) => MergeOp::Maximum,
        Layer::Minimum(_) => MergeOp::Minimum,
        _ => return None,
    })
}

/// Checks an element-wise merge's inputs (`name` is the layer's): at least two (exactly
/// two for Subtract), all of one shape. Returns that shape.
pub(crate) fn elementwise_shape(
    layer: &Layer,
    name: &str,
    inputs: &[&[usize]],
) -> Result<Vec<usize>> {
    let kind = layer.keras_type();
    if matches!(layer, Layer::Subtract(_)) {
        ensure!(
            inputs.len() == 2,
            "layer '{name}' (Subtract) takes exactly 2 inputs, got {}",
            inputs.len()
        );
    }
    ensure!(
        inputs.len() >= 2,
        "layer '{name}' ({kind}) merges at least 2 inputs, got {}",
        inputs.len()
    );
    for (i, s) in inputs.iter().enumerate().skip(1) {
        ensure!(
            *s == inputs[0],
            "layer '{name}' ({kind}) needs inputs of one shape, but input 0 is {} and input {i} is {}",
            super::shape_str(inputs[0]),
            super::shape_str(s)
        );
    }
    Ok(inputs[0].to_vec())
}

/// Concatenate's resolved form: the per-sample axis (0-based, batch excluded), the rows
/// per sample (the product of the axes before it) and each input's columns (its length
/// on the axis times the product of the axes after it). Returns it with the output shape.
pub(crate) fn concat_plan(
    c: &Concatenate,
    name: &str,
    inputs: &[&[usize]],
) -> Result<(usize, usize, Vec<usize>, Vec<usize>)> {
    ensure!(
        inputs.len() >= 2,
        "layer '{name}' (Concatenate) joins at least 2 inputs, got {}",
        inputs.len()
    );
    let rank = inputs[0].len();
    // Keras counts the batch axis: -1 is the last per-sample axis, 1 the first.
    let full = rank as i64 + 1;
    let axis = if c.axis < 0 { c.axis + full } else { c.axis };
    if axis <= 0 || axis >= full {
        bail!(
            "layer '{name}' (Concatenate): axis {} does not name a per-sample axis of inputs {}",
            c.axis,
            super::shape_str(inputs[0])
        );
    }
    let a = (axis - 1) as usize;
    for (i, s) in inputs.iter().enumerate().skip(1) {
        let agree = s.len() == rank
            && s.iter()
                .zip(inputs[0])
                .enumerate()
                .all(|(d, (x, y))| d == a || x == y);
        ensure!(
            agree,
            "layer '{name}' (Concatenate) joins along axis {}, so every other axis must agree, \
             but input 0 is {} and input {i} is {}",
            c.axis,
            super::shape_str(inputs[0]),
            super::shape_str(s)
        );
    }
    let outer: usize = inputs[0][..a].iter().product();
    let inner: usize = inputs[0][a + 1..].iter().product();
    let widths: Vec<usize> = inputs.iter().map(|s| s[a] * inner).collect();
    let mut out = inputs[0].to_vec();
    out[a] = inputs.iter().map(|s| s[a]).sum();
    Ok((a, outer, widths, out))
}
