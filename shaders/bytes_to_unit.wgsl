// Bytes to floats: out[i] = table[byte i of `packed`], where `packed` holds four bytes per
// u32, little-endian, and `table` the 256 values the host computes for a byte (b / 255),
// so the GPU's inputs equal the host's bit for bit. Lets a batch travel as bytes, a
// quarter of its floats. One invocation per element.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&out)) {
        return;
    }
    let byte = (packed[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
    out[i] = table[byte];
}
