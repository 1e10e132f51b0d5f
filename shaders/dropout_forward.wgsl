// Inverted dropout: y = x / (1 − rate) where hash(seed, i) keeps the element, else 0.
// The mask is never stored: the backward pass recomputes it from the same seed.

struct Params {
    n: u32,
    rate: f32,
    seed: u32,
    // Global index of element 0 (a rank's shard of a batch draws the masks that one
    // process would draw for the same samples).
    offset: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// PCG hash (Jarzynski & Olano 2020); the CPU reference computes the same bits.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&y)) {
        return;
    }
    let u = f32(pcg((i + p.offset) ^ pcg(p.seed)) >> 8u) * (1.0 / 16777216.0);
    y[i] = select(0.0, x[i] / (1.0 - p.rate), u >= p.rate);
}
