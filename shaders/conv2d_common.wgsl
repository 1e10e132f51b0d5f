// Shared by the conv2d kernels. Layout is NHWC for activations and HWIO
// ([kh][kw][cin][cout], Keras' kernel layout) for weights, so the forward pass is the GEMM
// im2col(X)[B·OH·OW, KH·KW·CI] · W[KH·KW·CI, CO] without ever building im2col.
//
// The im2col gather is general enough for the input gradient too (conv2d.rs): output
// pixel (y, x) and tap (kh, kw) read source pixel
//     (y·stride_h + kh·tap_h + off_h, x·stride_w + kw·tap_w + off_w)
// where tap_* is the dilation (negative: the kernel is walked flipped) and off_* minus
// the padding; the output pixel lands at (y·step_h + phase_h, x·step_w + phase_w) of a
// store_h × store_w grid (one phase of a strided convolution's input gradient).

struct Conv {
    batch: u32,
    in_h: u32, // the source grid (x; dY for the input gradient)
    in_w: u32,
    in_c: u32,
    out_h: u32, // the output pixels this dispatch computes (M = batch·out_h·out_w)
    out_w: u32,
    out_c: u32,
    k_h: u32, // taps (K = k_h·k_w·in_c)
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    tap_h: i32,
    tap_w: i32,
    off_h: i32,
    off_w: i32,
    flags: u32, // 1: relu (forward), 2: accumulate into the output, 4: write split-K partials
    k_chunk: u32, // K range of one workgroup (see the GEMM core)
    w_offset: u32, // first texel of the kernel in operand 2 (a phase's sub-kernel)
    store_h: u32, // the output tensor's grid
    store_w: u32,
    step_h: u32,
    step_w: u32,
    phase_h: u32,
    phase_w: u32,
}

@group(0) @binding(0) var<storage, read> params: Conv;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Conv;

// The GEMM axes of a conv are a pixel axis (n, y, x) and a tap axis (kh, kw, c). A loader
// that needs four consecutive elements along one of them splits the first index and steps
// to the next three (next_pixel, next_tap) instead of splitting all four: the divides
// were most of those loaders' code, and of their compile time on lavapipe.

// (n, y, x) of pixel `row` on an [N, h, w] pixel axis.
fn pixel_of(row: u32, h: u32, w: u32) -> vec3<u32> {
    let n_r = divmod(row, h * w);
    let y_x = divmod(n_r.y, w);
    return vec3<u32>(n_r.x, y_x.x, y_x.y);
}

// The pixel after `q`: x, rolling over into y, then n.
fn next_pixel(q: vec3<u32>, h: u32, w: u32) -> vec3<u32> {
    let x = q.z + 1u;
    let y = q.y + select(0u, 1u, x == w);
    return vec3<u32>(q.x + select(0u, 1u, y == h), select(y, 0u, y == h), select(x, 0u, x == w));
}

// (kh, kw, c) of column `col` on a [KH, KW, channels] tap axis.
fn tap_of(col: u32, channels: u32) -> vec3<u32> {
    let kh_rem = divmod(col, p.k_w * channels);
    let kw_c = divmod(kh_rem.y, channels);
    return vec3<u32>(kh_rem.x, kw_c.x, kw_c.y);
}

// The tap after `t`: the channel, rolling over into kw, then kh (past the last kh the
// tap is outside the kernel, which x_index treats as zero).
fn next_tap(t: vec3<u32>, channels: u32) -> vec3<u32> {
    let c = t.z + 1u;
    let kw = t.y + select(0u, 1u, c == channels);
    return vec3<u32>(t.x + select(0u, 1u, kw == p.k_w), select(kw, 0u, kw == p.k_w), select(c, 0u, c == channels));
}

// Index into x of output pixel `o` = (n, oh, ow) and tap `t` = (kh, kw, ci): (index, 1),
// or (0, 0) when the tap falls in the padding or outside the kernel. When in_c % 4 == 0 and
// ci % 4 == 0 the four channels ci..ci+3 of one tap are one aligned vec4.
fn x_index(x_len: u32, o: vec3<u32>, t: vec3<u32>) -> vec2<u32> {
    let ih = i32(o.y * p.stride_h) + i32(t.x) * p.tap_h + p.off_h;
    let iw = i32(o.z * p.stride_w) + i32(t.y) * p.tap_w + p.off_w;
    if (t.x >= p.k_h || ih < 0 || iw < 0 || ih >= i32(p.in_h) || iw >= i32(p.in_w)) {
        return vec2<u32>(0u, 0u);
    }
    let i = ((o.x * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + t.z;
    return vec2<u32>(i, select(0u, 1u, i < x_len));
}

// Element (row, col) of the virtual im2col matrix: row = output pixel, col = tap.
fn im2col(x_len: u32, row: u32, col: u32) -> vec2<u32> {
    return x_index(x_len, pixel_of(row, p.out_h, p.out_w), tap_of(col, p.in_c));
}

// x[i] for an x_index result, zero where it is not valid (x is operand 1 of every kernel
// that reads it).
fn x_elem(t: vec2<u32>) -> f32 {
    return select(0.0, input1_elem(t.x), t.y != 0u);
}

fn gemm_k_chunk() -> u32 {
    return p.k_chunk;
}
