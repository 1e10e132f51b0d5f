// A window of an NHWC image, shifted: out[n, y, x, c] = inp[n, y − top, x − left, c],
// zero where that falls outside inp; or out += … when accumulating. With top, left ≥ 0
// it is ZeroPadding2D (and Cropping2D's gradient); with top, left ≤ 0 it is Cropping2D
// (and ZeroPadding2D's gradient). One invocation per output element.

struct Params {
    n: u32, // output elements
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    top: i32,
    left: i32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&out)) {
        return;
    }
    let pix_c = divmod(i, p.c);
    let row_x = divmod(pix_c.x, p.out_w);
    let n_y = divmod(row_x.x, p.out_h);
    let sy = i32(n_y.y) - p.top;
    let sx = i32(row_x.y) - p.left;
    let inside = sy >= 0 && sx >= 0 && sy < i32(p.in_h) && sx < i32(p.in_w);
    let j = ((n_y.x * p.in_h + u32(max(sy, 0))) * p.in_w + u32(max(sx, 0))) * p.c + pix_c.y;
    var v = select(0.0, inp[min(j, arrayLength(&inp) - 1u)], inside);
    if (p.accumulate != 0u) {
        v += out[i];
    }
    out[i] = v;
}
