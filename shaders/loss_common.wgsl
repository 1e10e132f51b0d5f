// Shared by the element-wise losses (Keras 3's formulas; `pred` is the model's output,
// `target` a value of the same shape per element):
//   kind 0 mean squared error   (p − t)²
//        1 mean absolute error  |p − t|
//        2 Huber                ½x² for |x| ≤ δ, δ|x| − ½δ² beyond (x = p − t)
//        3 binary cross-entropy on probabilities: −(t·ln p + (1 − t)·ln(1 − p)), p
//          clipped to [1e-7, 1 − 1e-7] (Keras' epsilon; no gradient where clipped)
//        4 binary cross-entropy on logits z: max(z, 0) − z·t + ln(1 + e^−|z|)
// Binary cross-entropy smooths its targets first: t ← t·(1 − s) + s/2. A sample's loss
// is the mean over its elements, the batch's the mean over its valid samples (Keras'
// reduction: every element and the batch).

struct Params {
    kind: u32,
    metric: u32, // 0 MAE, 1 MSE, 2 binary accuracy (t == (y > threshold), Keras')
    delta: f32, // Huber's δ
    smoothing: f32, // binary cross-entropy's label smoothing
    threshold: f32, // binary accuracy's
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct Rows {
    rows: u32, // samples the batch buffer holds
    cols: u32, // elements per sample
    valid: u32, // real samples this step
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> shape: Rows;
// Read once into private copies: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
var<private> r: Rows;

const EPS: f32 = 1e-7;

fn smoothed(t: f32) -> f32 {
    return t * (1.0 - p.smoothing) + 0.5 * p.smoothing;
}

fn loss(y: f32, t: f32) -> f32 {
    let x = y - t;
    switch p.kind {
        case 0u: { return x * x; }
        case 1u: { return abs(x); }
        case 2u: { return select(p.delta * abs(x) - 0.5 * p.delta * p.delta, 0.5 * x * x, abs(x) <= p.delta); }
        case 3u: {
            let q = clamp(y, EPS, 1.0 - EPS);
            let s = smoothed(t);
            return -(s * log(q) + (1.0 - s) * log(1.0 - q));
        }
        default: { return max(y, 0.0) - y * smoothed(t) + log(1.0 + exp(-abs(y))); }
    }
}

// dloss/dy.
fn slope(y: f32, t: f32) -> f32 {
    let x = y - t;
    switch p.kind {
        case 0u: { return 2.0 * x; }
        case 1u: { return sign(x); }
        case 2u: { return clamp(x, -p.delta, p.delta); }
        case 3u: {
            let s = smoothed(t);
            let inside = y > EPS && y < 1.0 - EPS;
            return select(0.0, (1.0 - s) / (1.0 - y) - s / y, inside);
        }
        default: { return 1.0 / (1.0 + exp(-y)) - smoothed(t); }
    }
}

fn metric(y: f32, t: f32) -> f32 {
    switch p.metric {
        case 0u: { return abs(y - t); }
        case 1u: { return (y - t) * (y - t); }
        // Keras' binary_accuracy: t equals (y > threshold) cast to 0 or 1 (so a target
        // strictly between 0 and 1 never counts).
        default: { return select(0.0, 1.0, t == select(0.0, 1.0, y > p.threshold)); }
    }
}
