// Shared by the three conv2d passes. Layout is NHWC for activations and HWIO
// ([kh][kw][cin][cout], Keras' kernel layout) for weights, so the forward pass is the GEMM
// im2col(X)[B·OH·OW, KH·KW·CI] · W[KH·KW·CI, CO] without ever building im2col.

struct Conv {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    flags: u32, // 1: relu (forward), 2: accumulate into the output (backward), 4: write split-K partials
    k_chunk: u32, // K range of one workgroup (see the GEMM core)
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Conv;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Conv;

// Element (row, col) of the virtual im2col matrix: row = output pixel (n, oh, ow),
// col = kernel tap (kh, kw, ci). Returns (index into x, 1), or (0, 0) when the tap falls
// in the padding or past the last column. When in_c % 4 == 0 and col % 4 == 0 the four
// columns col..col+3 are four consecutive channels of one tap: one aligned vec4.
fn im2col(x_len: u32, row: u32, col: u32) -> vec2<u32> {
    let hw = p.out_h * p.out_w;
    let n_r = divmod(row, hw);
    let oh_ow = divmod(n_r.y, p.out_w);
    let kh_rem = divmod(col, p.k_w * p.in_c);
    let kw_ci = divmod(kh_rem.y, p.in_c);
    let n = n_r.x;
    let oh = oh_ow.x;
    let ow = oh_ow.y;
    let kh = kh_rem.x;
    let kw = kw_ci.x;
    let ci = kw_ci.y;
    let ih = i32(oh * p.stride_h + kh) - i32(p.pad_top);
    let iw = i32(ow * p.stride_w + kw) - i32(p.pad_left);
    if (kh >= p.k_h || ih < 0 || iw < 0 || ih >= i32(p.in_h) || iw >= i32(p.in_w)) {
        return vec2<u32>(0u, 0u);
    }
    let i = ((n * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + ci;
    return vec2<u32>(i, select(0u, 1u, i < x_len));
}

fn gemm_k_chunk() -> u32 {
    return p.k_chunk;
}
