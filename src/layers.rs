//! Keras-style layer descriptions. A layer here is only configuration; `Sequential::add`
//! resolves it against its input shape (checking that it fits) into a [`Node`], which the
//! GPU graph and the CPU path both execute.

use crate::ops::Padding;
use crate::ops::activation::Act;
use crate::ops::conv2d::Conv2dShape;
use crate::ops::pool2d::Pool2dShape;
use anyhow::{Result, bail, ensure};

/// Activation functions, as in Keras' `activation=` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    /// Row-wise softmax; supported as the model's last activation, where it is fused with
    /// the cross-entropy loss.
    Softmax,
}

impl Activation {
    /// The element-wise kernel for this activation (softmax is not element-wise).
    pub(crate) fn elementwise(self) -> Option<Act> {
        match self {
            Activation::Linear => Some(Act::Linear),
            Activation::Relu => Some(Act::Relu),
            Activation::Sigmoid => Some(Act::Sigmoid),
            Activation::Tanh => Some(Act::Tanh),
            Activation::Softmax => None,
        }
    }
}

/// `Conv2D(filters, kernel_size, strides=1, padding='valid', activation=None)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
    pub activation: Activation,
    pub input_shape: Option<Vec<usize>>,
}

impl Conv2D {
    /// `filters` square `kernel × kernel` filters, stride 1, 'valid', linear.
    pub fn new(filters: usize, kernel: usize) -> Conv2D {
        Conv2D {
            filters,
            kernel_size: (kernel, kernel),
            strides: (1, 1),
            padding: Padding::Valid,
            activation: Activation::Linear,
            input_shape: None,
        }
    }
    pub fn kernel_size(mut self, h: usize, w: usize) -> Self {
        self.kernel_size = (h, w);
        self
    }
    pub fn strides(mut self, h: usize, w: usize) -> Self {
        self.strides = (h, w);
        self
    }
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// `(height, width, channels)` of the model input, on the first layer.
    pub fn input_shape(mut self, shape: [usize; 3]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }
}

/// Pooling configuration shared by max and average pooling.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooling {
    pub pool_size: (usize, usize),
    /// Keras' default (None) is the pool size.
    pub strides: Option<(usize, usize)>,
    pub padding: Padding,
}

impl Pooling {
    pub fn strides(mut self, h: usize, w: usize) -> Self {
        self.strides = Some((h, w));
        self
    }
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
}

/// `MaxPooling2D(pool_size)`.
#[allow(non_snake_case)]
pub fn MaxPooling2D(pool: usize) -> Layer {
    Layer::MaxPooling2D(Pooling {
        pool_size: (pool, pool),
        strides: None,
        padding: Padding::Valid,
    })
}

/// `AveragePooling2D(pool_size)`.
#[allow(non_snake_case)]
pub fn AveragePooling2D(pool: usize) -> Layer {
    Layer::AveragePooling2D(Pooling {
        pool_size: (pool, pool),
        strides: None,
        padding: Padding::Valid,
    })
}

/// `Dense(units, activation=None)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub units: usize,
    pub activation: Activation,
    pub input_shape: Option<Vec<usize>>,
}

impl Dense {
    pub fn new(units: usize) -> Dense {
        Dense {
            units,
            activation: Activation::Linear,
            input_shape: None,
        }
    }
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Input shape on the first layer, e.g. `[784]`.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }
}

/// Every layer `Sequential::add` accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv2D(Conv2D),
    MaxPooling2D(Pooling),
    AveragePooling2D(Pooling),
    /// Flatten, optionally with the model's input shape (Keras' `Flatten(input_shape=…)`).
    Flatten(Option<Vec<usize>>),
    Dense(Dense),
    Activation(Activation),
    Dropout(f32),
}

impl Layer {
    /// Pooling builders, on an already-made pooling layer.
    pub fn strides(self, h: usize, w: usize) -> Layer {
        match self {
            Layer::MaxPooling2D(p) => Layer::MaxPooling2D(p.strides(h, w)),
            Layer::AveragePooling2D(p) => Layer::AveragePooling2D(p.strides(h, w)),
            other => other,
        }
    }
    pub fn padding(self, padding: Padding) -> Layer {
        match self {
            Layer::MaxPooling2D(p) => Layer::MaxPooling2D(p.padding(padding)),
            Layer::AveragePooling2D(p) => Layer::AveragePooling2D(p.padding(padding)),
            Layer::Conv2D(c) => Layer::Conv2D(c.padding(padding)),
            other => other,
        }
    }
    pub(crate) fn input_shape(&self) -> Option<&[usize]> {
        match self {
            Layer::Conv2D(c) => c.input_shape.as_deref(),
            Layer::Dense(d) => d.input_shape.as_deref(),
            Layer::Flatten(s) => s.as_deref(),
            _ => None,
        }
    }
    fn keras_type(&self) -> &'static str {
        match self {
            Layer::Conv2D(_) => "Conv2D",
            Layer::MaxPooling2D(_) => "MaxPooling2D",
            Layer::AveragePooling2D(_) => "AveragePooling2D",
            Layer::Flatten(_) => "Flatten",
            Layer::Dense(_) => "Dense",
            Layer::Activation(_) => "Activation",
            Layer::Dropout(_) => "Dropout",
        }
    }
    /// Keras' automatic name stem: `conv2d`, `max_pooling2d`, …
    fn name_stem(&self) -> &'static str {
        match self {
            Layer::Conv2D(_) => "conv2d",
            Layer::MaxPooling2D(_) => "max_pooling2d",
            Layer::AveragePooling2D(_) => "average_pooling2d",
            Layer::Flatten(_) => "flatten",
            Layer::Dense(_) => "dense",
            Layer::Activation(_) => "activation",
            Layer::Dropout(_) => "dropout",
        }
    }
}

impl From<Conv2D> for Layer {
    fn from(c: Conv2D) -> Layer {
        Layer::Conv2D(c)
    }
}
impl From<Dense> for Layer {
    fn from(d: Dense) -> Layer {
        Layer::Dense(d)
    }
}

/// `Flatten()`.
#[allow(non_snake_case)]
pub fn Flatten() -> Layer {
    Layer::Flatten(None)
}

/// `Dropout(rate)`.
#[allow(non_snake_case)]
pub fn Dropout(rate: f32) -> Layer {
    Layer::Dropout(rate)
}

/// A layer resolved against its input: what the engine runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Shapes per sample (batch set at run time).
    Conv {
        in_hwc: [usize; 3],
        filters: usize,
        kernel: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    },
    MaxPool {
        in_hwc: [usize; 3],
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    },
    AvgPool {
        in_hwc: [usize; 3],
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    },
    Flatten,
    Dense {
        n_in: usize,
        units: usize,
    },
    Activation,
    Dropout {
        rate: f32,
    },
}

impl Op {
    /// The conv2d shapes of this op at `batch` (None unless it is a convolution).
    pub fn conv_shape(&self, batch: usize) -> Option<Conv2dShape> {
        match *self {
            Op::Conv {
                in_hwc,
                filters,
                kernel,
                strides,
                padding,
            } => Some(Conv2dShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                in_c: in_hwc[2],
                out_c: filters,
                k_h: kernel.0,
                k_w: kernel.1,
                stride_h: strides.0,
                stride_w: strides.1,
                padding,
            }),
            _ => None,
        }
    }

    /// The pooling shapes of this op at `batch` (None unless it is a pooling layer).
    pub fn pool_shape(&self, batch: usize) -> Option<Pool2dShape> {
        match *self {
            Op::MaxPool {
                in_hwc,
                pool,
                strides,
                padding,
            }
            | Op::AvgPool {
                in_hwc,
                pool,
                strides,
                padding,
            } => Some(Pool2dShape {
                batch,
                in_h: in_hwc[0],
                in_w: in_hwc[1],
                c: in_hwc[2],
                pool_h: pool.0,
                pool_w: pool.1,
                stride_h: strides.0,
                stride_w: strides.1,
                padding,
            }),
            _ => None,
        }
    }
}

/// One resolved layer: its Keras name, the op, the activation that follows it, and the
/// per-sample output shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub keras_type: &'static str,
    pub op: Op,
    pub activation: Activation,
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
}

impl Node {
    /// Trainable parameter tensors: (suffix, shape) — `kernel` then `bias`.
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        match &self.op {
            Op::Conv {
                in_hwc,
                filters,
                kernel,
                ..
            } => {
                vec![
                    ("kernel", vec![kernel.0, kernel.1, in_hwc[2], *filters]),
                    ("bias", vec![*filters]),
                ]
            }
            Op::Dense { n_in, units } => {
                vec![("kernel", vec![*n_in, *units]), ("bias", vec![*units])]
            }
            _ => Vec::new(),
        }
    }
    pub fn param_count(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
    /// Fan-in and fan-out of the kernel, for Glorot initialisation.
    pub fn fans(&self) -> (usize, usize) {
        match &self.op {
            Op::Conv {
                in_hwc,
                filters,
                kernel,
                ..
            } => (
                kernel.0 * kernel.1 * in_hwc[2],
                kernel.0 * kernel.1 * filters,
            ),
            Op::Dense { n_in, units } => (*n_in, *units),
            _ => (0, 0),
        }
    }
}

fn shape_str(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("(None, {})", dims.join(", "))
}

/// Resolves `layer` against the per-sample input shape `input`, naming it `name`.
pub(crate) fn resolve(layer: &Layer, input: &[usize], name: String) -> Result<Node> {
    let fail = |why: String| -> Result<Node> {
        bail!(
            "layer '{name}' ({}) does not fit its input {}: {why}",
            layer.keras_type(),
            shape_str(input)
        )
    };
    let image = |what: &str| -> Result<[usize; 3]> {
        match input {
            [h, w, c] => Ok([*h, *w, *c]),
            _ => bail!(
                "layer '{name}' ({what}) needs a 3-D input (height, width, channels) but gets {}",
                shape_str(input)
            ),
        }
    };
    ensure!(
        input.iter().all(|&d| d > 0),
        "layer '{name}': input shape {} has a zero dimension",
        shape_str(input)
    );
    let (op, activation, out_shape) = match layer {
        Layer::Conv2D(c) => {
            let in_hwc = image("Conv2D")?;
            if c.filters == 0
                || c.kernel_size.0 == 0
                || c.kernel_size.1 == 0
                || c.strides.0 == 0
                || c.strides.1 == 0
            {
                return fail("filters, kernel size and strides must be positive".into());
            }
            let oh = c.padding.out_len(in_hwc[0], c.kernel_size.0, c.strides.0);
            let ow = c.padding.out_len(in_hwc[1], c.kernel_size.1, c.strides.1);
            let (oh, ow) = match (oh, ow) {
                (Ok(h), Ok(w)) => (h, w),
                (Err(e), _) | (_, Err(e)) => return fail(format!("{e}")),
            };
            let op = Op::Conv {
                in_hwc,
                filters: c.filters,
                kernel: c.kernel_size,
                strides: c.strides,
                padding: c.padding,
            };
            (op, c.activation, vec![oh, ow, c.filters])
        }
        Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => {
            let in_hwc = image(layer.keras_type())?;
            let strides = p.strides.unwrap_or(p.pool_size);
            let oh = p.padding.out_len(in_hwc[0], p.pool_size.0, strides.0);
            let ow = p.padding.out_len(in_hwc[1], p.pool_size.1, strides.1);
            let (oh, ow) = match (oh, ow) {
                (Ok(h), Ok(w)) => (h, w),
                (Err(e), _) | (_, Err(e)) => return fail(format!("{e}")),
            };
            let op = if matches!(layer, Layer::MaxPooling2D(_)) {
                Op::MaxPool {
                    in_hwc,
                    pool: p.pool_size,
                    strides,
                    padding: p.padding,
                }
            } else {
                Op::AvgPool {
                    in_hwc,
                    pool: p.pool_size,
                    strides,
                    padding: p.padding,
                }
            };
            (op, Activation::Linear, vec![oh, ow, in_hwc[2]])
        }
        Layer::Flatten(_) => (
            Op::Flatten,
            Activation::Linear,
            vec![input.iter().product()],
        ),
        Layer::Dense(d) => {
            let [n_in] = input else {
                return fail("Dense takes a 1-D input; add Flatten() before it".into());
            };
            if d.units == 0 {
                return fail("units must be positive".into());
            }
            (
                Op::Dense {
                    n_in: *n_in,
                    units: d.units,
                },
                d.activation,
                vec![d.units],
            )
        }
        Layer::Activation(a) => (Op::Activation, *a, input.to_vec()),
        Layer::Dropout(rate) => {
            if !(0.0..1.0).contains(rate) {
                return fail(format!("rate {rate} must be in [0, 1)"));
            }
            (
                Op::Dropout { rate: *rate },
                Activation::Linear,
                input.to_vec(),
            )
        }
    };
    Ok(Node {
        name,
        keras_type: layer.keras_type(),
        op,
        activation,
        in_shape: input.to_vec(),
        out_shape,
    })
}

/// Keras' automatic layer name: the stem, then `_1`, `_2`, … for repeats.
pub(crate) fn auto_name(layer: &Layer, existing: &[Node]) -> String {
    let stem = layer.name_stem();
    let n = existing
        .iter()
        .filter(|n| n.name == stem || n.name.starts_with(&format!("{stem}_")))
        .count();
    if n == 0 {
        stem.to_string()
    } else {
        format!("{stem}_{n}")
    }
}

/// Keras (tf.keras 2.x) `model.summary()` text.
pub fn summary(model_name: &str, nodes: &[Node]) -> String {
    const WIDTH: usize = 65;
    const POS: [usize; 3] = [29, 55, 65];
    // Keras' print_row: each column is cut to its width (minus a 2-space gutter) and the
    // rest wraps onto the next line, breaking early after "),"-like endings.
    fn row(fields: [&str; 3]) -> String {
        let mut left: Vec<Vec<char>> = fields.iter().map(|f| f.chars().collect()).collect();
        let mut lines = Vec::new();
        while left.iter().any(|f| !f.is_empty()) {
            let mut line = String::new();
            for col in 0..3 {
                let start = if col > 0 { POS[col - 1] } else { 0 };
                let space = if col < 2 { 2 } else { 0 };
                let mut cutoff = (POS[col] - start - space).min(left[col].len());
                let fit: String = left[col][..cutoff].iter().collect();
                if let Some(c) = ["),", "},", "],", "',"]
                    .iter()
                    .filter_map(|p| fit.find(p).map(|i| i + p.len()))
                    .min()
                {
                    cutoff = c;
                }
                if col == 0 {
                    line.push(' ');
                }
                line.extend(&left[col][..cutoff]);
                line.push_str(&" ".repeat(space));
                left[col].drain(..cutoff);
                let len = line.chars().count();
                line.push_str(&" ".repeat(POS[col].saturating_sub(len)));
            }
            lines.push(line);
        }
        lines.join("\n")
    }
    let total: usize = nodes.iter().map(Node::param_count).sum();
    let mut out = Vec::new();
    out.push(format!("Model: \"{model_name}\""));
    out.push("_".repeat(WIDTH));
    out.push(row(["Layer (type)", "Output Shape", "Param #"]));
    out.push("=".repeat(WIDTH));
    for n in nodes {
        let name = format!("{} ({})", n.name, n.keras_type);
        out.push(row([
            &name,
            &shape_str(&n.out_shape),
            &n.param_count().to_string(),
        ]));
        out.push(" ".repeat(WIDTH));
    }
    out.push("=".repeat(WIDTH));
    out.push(format!("Total params: {}", thousands(total)));
    out.push(format!("Trainable params: {}", thousands(total)));
    out.push("Non-trainable params: 0".to_string());
    out.push("_".repeat(WIDTH));
    out.join("\n") + "\n"
}

/// 1845354 → "1,845,354".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
