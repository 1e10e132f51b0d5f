// Shared by the fused softmax + categorical cross-entropy passes (class distributions as
// targets: one-hot or soft, Keras' CategoricalCrossentropy), per row of logits z:
//   t' = t·(1 − s) + s/C            (label smoothing s over C classes)
//   loss = −Σ t'·log softmax(z) = Σ t'·(logsumexp(z) − z)
//   ∂loss/∂z = softmax(z)·Σt' − t'
// The metric is Keras' categorical accuracy: argmax p == argmax t (first maximum).

struct Rows {
    rows: u32,
    cols: u32,
    valid: u32,
    _pad: u32,
}

struct Params {
    smoothing: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> shape: Rows;
// Read once into private copies: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
var<private> r: Rows;
