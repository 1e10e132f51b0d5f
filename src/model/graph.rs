//! A model's layer graph: resolved nodes in topological order, each reading the outputs
//! of earlier nodes; its inputs are `Input` nodes and its outputs named nodes. A
//! `Sequential` model is the chain case (every node reads the one before it); a functional
//! `Model` is any directed acyclic graph. Tensor `t` of a step is the output of node `t`.

use crate::layers::{self, ActivationFn, Layer, Node, Op};
use anyhow::{Context, Result, bail, ensure};

/// The nodes of a model, what they were resolved from, and its outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Resolved layers in topological order (every input before its readers).
    pub nodes: Vec<Node>,
    /// The layer each node was resolved from (what model files record).
    pub layers: Vec<Layer>,
    /// The nodes whose outputs the model returns.
    pub outputs: Vec<usize>,
    /// What the loss compares the output with (set at compile).
    pub objective: super::Objective,
}

impl Graph {
    /// Resolves `layer` reading the outputs of `inputs` (earlier nodes), under `name` or
    /// Keras' automatic name, and appends it; returns its index.
    pub fn push(
        &mut self,
        layer: Layer,
        inputs: Vec<usize>,
        name: Option<String>,
    ) -> Result<usize> {
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| {
                self.nodes
                    .get(i)
                    .map(|n| n.out_shape.as_slice())
                    .with_context(|| format!("no node {i} to read"))
            })
            .collect::<Result<_>>()?;
        let name = name.unwrap_or_else(|| layers::auto_name(&layer, &self.nodes));
        let node = layers::resolve(&layer, &shapes, inputs, name)?;
        self.nodes.push(node);
        self.layers.push(layer);
        Ok(self.nodes.len() - 1)
    }

    /// The model's input nodes, in order.
    pub fn inputs(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op == Op::Input)
            .collect()
    }

    /// The one input node (several are not supported yet).
    pub fn input(&self) -> Result<usize> {
        match self.inputs()[..] {
            [i] => Ok(i),
            [] => bail!("the model has no input"),
            _ => bail!("models with several inputs are not supported yet"),
        }
    }

    /// The one output node (several are not supported yet).
    pub fn output(&self) -> Result<usize> {
        match self.outputs[..] {
            [o] => Ok(o),
            [] => bail!("the model has no layers"),
            _ => bail!("models with several outputs are not supported yet"),
        }
    }

    /// The per-sample shape of the one input.
    pub fn input_shape(&self) -> Option<&[usize]> {
        let i = self.input().ok()?;
        Some(&self.nodes[i].out_shape)
    }

    /// The nodes that hold parameters or compute something: every node but the inputs.
    pub fn layer_nodes(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op != Op::Input)
    }

    /// Per tensor, who reads it: (reader node, input slot), in ascending order. A node
    /// that reads a tensor twice (a merge of a tensor with itself) appears twice.
    pub fn readers(&self) -> Vec<Vec<(usize, usize)>> {
        let mut r = vec![Vec::new(); self.nodes.len()];
        for (j, node) in self.nodes.iter().enumerate() {
            for (k, &t) in node.inputs.iter().enumerate() {
                r[t].push((j, k));
            }
        }
        r
    }

    /// Node `i`'s index among the layers, inputs not counted (what dropout masks are
    /// seeded with, so that a chain's masks do not depend on how its input is held).
    pub fn layer_index(&self, i: usize) -> usize {
        i - self.nodes[..i].iter().filter(|n| n.op == Op::Input).count()
    }

    /// Whether each tensor needs a gradient in training: it depends on a trainable
    /// parameter (its producer has one, or one of the producer's inputs needs one).
    /// Inputs never do; a first layer computes no input gradient.
    pub fn needs_grad(&self) -> Vec<bool> {
        let mut need = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            need[i] =
                n.op != Op::Input && (n.trainable_count() > 0 || n.inputs.iter().any(|&t| need[t]));
        }
        need
    }

    /// Checks what training and inference need: one input, one output, every node on a
    /// path to the output, softmax only as the output's activation, and the output read
    /// by no other layer.
    pub fn validate(&self) -> Result<()> {
        self.input()?;
        let out = self.output()?;
        for (i, n) in self.layer_nodes() {
            ensure!(
                i == out || n.activation != ActivationFn::Softmax,
                "layer '{}': softmax is supported only as the output layer's activation (it is fused with the loss)",
                n.name
            );
        }
        ensure!(
            self.readers()[out].is_empty(),
            "the output layer '{}' is also read by another layer; not supported yet",
            self.nodes[out].name
        );
        // Every node on a path to the output (Model::new keeps only those; a model file
        // could hold others, whose gradients nothing would write).
        let mut on_path = vec![false; self.nodes.len()];
        on_path[out] = true;
        for i in (0..self.nodes.len()).rev() {
            if on_path[i] {
                self.nodes[i].inputs.iter().for_each(|&t| on_path[t] = true);
            }
        }
        if let Some(i) = on_path.iter().position(|&p| !p) {
            bail!(
                "layer '{}' is not on a path to the output '{}'",
                self.nodes[i].name,
                self.nodes[out].name
            );
        }
        Ok(())
    }
}
