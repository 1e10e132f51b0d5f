// Copies a block of columns between two row-major matrices:
// dst[r·dst_stride + dst_offset + j] (+)= src[r·src_stride + src_offset + j] for r < rows,
// j < width. Concatenate's forward (each input into its columns of the output) and
// backward (each input's columns of the output gradient), on any axis: the tensors are
// viewed as [outer, axis·inner]; also a convolution's channel padding (conv2d.rs). One
// invocation per element.

struct Params {
    rows: u32,
    width: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
    accumulate: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
var<private> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.rows * p.width) {
        return;
    }
    let r = i / p.width;
    let j = i - r * p.width;
    let d = r * p.dst_stride + p.dst_offset + j;
    if (d < arrayLength(&dst)) {
        let v = src[r * p.src_stride + p.src_offset + j];
        dst[d] = select(v, v + dst[d], p.accumulate != 0u);
    }
}
