// Shared by the LayerNormalization passes: each row of x[rows, cols] (the last axis) is
// normalised on its own, y = (x − mean)·inv·gamma + beta with inv = 1/√(var + ε), the
// biased variance (Keras 3). One invocation per row; saved[2r], saved[2r + 1] keep the
// row's mean and inv for the backward pass.

struct Params {
    rows: u32,
    cols: u32,
    epsilon: f32,
    accumulate: u32, // backward: dx += instead of dx =
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;

fn row_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 64u + lid;
}
