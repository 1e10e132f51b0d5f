// Gradients of y = f(a, b) · scale (merge_forward): da = dy·scale·∂f/∂a and
// db = dy·scale·∂f/∂b. Maximum (minimum) sends the gradient to a where a ≥ b (a ≤ b),
// ties included, else to b, as TensorFlow's gradient of tf.maximum does. kind as in
// merge_forward (5 is not differentiated here). One invocation per vec4.

struct Params {
    n: u32,
    kind: u32,
    _pad: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
var<private> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> da: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> db: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&da) || i >= arrayLength(&db)) {
        return;
    }
    let g = dy[i] * p.scale;
    let av = a[i];
    let bv = b[i];
    let zero = vec4<f32>(0.0);
    // Values chosen per kind, then one store each: stores under a per-lane condition
    // are what lavapipe compiles slowly (Mesa 25.0: 300–400 → 93 ms for this kernel).
    var ga = g;
    var gb = g;
    switch p.kind {
        case 1u: { gb = -g; }
        case 2u: { ga = g * bv; gb = g * av; }
        case 3u: {
            let first = av >= bv;
            ga = select(zero, g, first);
            gb = select(g, zero, first);
        }
        case 4u: {
            let first = av <= bv;
            ga = select(zero, g, first);
            gb = select(g, zero, first);
        }
        default: {}
    }
    da[i] = ga;
    db[i] = gb;
}
