// Finishes a split-K GEMM: out[m, n] = Σ_s partial[s, m, n] (+ bias[n]) (relu) (+ out).
// GEMMs with few output tiles and a long K (a conv weight gradient, a dense layer with a
// small batch) split K over workgroups so that every core has work.

struct Params {
    m: u32,
    n: u32,
    splits: u32,
    flags: u32, // 4: add bias, 8: relu, 16: accumulate into out, 64: out is [N, M] (matmul's bits)
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    let mn = p.m * p.n;
    let row_col = divmod(i, p.n);
    let o = select(i, row_col.y * p.m + row_col.x, (p.flags & 64u) != 0u);
    if (i >= mn || o >= arrayLength(&out)) {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        v += partial[s * mn + i];
    }
    if ((p.flags & 4u) != 0u) {
        v += bias[row_col.y];
    }
    if ((p.flags & 8u) != 0u) {
        v = max(v, 0.0);
    }
    if ((p.flags & 16u) != 0u) {
        v += out[o];
    }
    out[o] = v;
}
