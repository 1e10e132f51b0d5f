// Shared by the pooling kernels. NHWC; Keras padding ('same' pads split floor/ceil, and
// padded positions are ignored: max skips them, average divides by the valid count).

struct Pool {
    batch: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    pool_h: u32,
    pool_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32, // 1: accumulate into dx (backward)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Pool;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Pool;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

// Channels handled by one invocation: 4 (one vec4) when C % 4 == 0, else 1. The host
// sizes the grid with the same rule (Pool2dShape::lanes).
fn lanes() -> u32 {
    return select(1u, 4u, (p.c & 3u) == 0u);
}

// (n, row, col, first channel) of the `i`-th invocation over a [batch, h, w, c] tensor.
fn coords(i: u32, h: u32, w: u32) -> vec4<u32> {
    let groups = p.c / lanes();
    let pix_g = divmod(i, groups);
    let n_row_col = divmod(pix_g.x, w);
    let n_row = divmod(n_row_col.x, h);
    return vec4<u32>(n_row.x, n_row.y, n_row_col.y, pix_g.y * lanes());
}

// Valid input rows [start, end) of output row `o` along one axis.
fn window(o: u32, stride: u32, pad: u32, size: u32, len: u32) -> vec2<u32> {
    let start = i32(o * stride) - i32(pad);
    let lo = u32(max(start, 0));
    let hi = u32(clamp(start + i32(size), 0, i32(len)));
    return vec2<u32>(lo, max(hi, lo));
}

// Output rows [first, last] along one axis whose window contains input row `i`.
fn windows_of(i: u32, stride: u32, pad: u32, size: u32, out_len: u32) -> vec2<u32> {
    let t = i + pad; // position in padded coordinates
    var first = 0u;
    if (t + 1u > size) {
        first = divmod(t + 1u - size + stride - 1u, stride).x;
    }
    let last = min(divmod(t, stride).x, out_len - 1u);
    return vec2<u32>(first, last);
}
