// Bytes to floats: out[i] = table[byte], where `packed` holds four bytes per u32,
// little-endian, and `table` the 256 values the host computes for a byte (b / 255), so the
// GPU's inputs equal the host's bit for bit. Lets a batch travel as bytes, a quarter of
// its floats. With `augment` set, each image (h × w × c, channels last) is read flipped
// left-right and shifted as `draws[image]` = (flip, dy, dx, _) says, what comes in from
// outside filled per `fill` (0 zeros, 1 nearest edge, 2 reflect): the host's flips and
// shifts, moved into the step. One invocation per output element.

struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    augment: u32,
    fill: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> draws: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn byte_at(i: u32) -> u32 {
    return (packed[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

// The source index along an axis of n for output i shifted by d, or -1 for a zero fill.
fn source(i: u32, d: i32, n: u32) -> i32 {
    let s = i32(i) - d;
    let m = i32(n);
    if (s >= 0 && s < m) {
        return s;
    }
    if (p.fill == 0u) {
        return -1;
    }
    if (p.fill == 1u) {
        return clamp(s, 0, m - 1);
    }
    let period = 2 * m;
    let r = ((s % period) + period) % period;
    return select(period - 1 - r, r, r < m);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&out)) {
        return;
    }
    if (p.augment == 0u) {
        out[i] = table[byte_at(i)];
        return;
    }
    let image = p.h * p.w * p.c;
    let s = i / image;
    let r = i - s * image;
    let ch = r % p.c;
    let x = (r / p.c) % p.w;
    let y = r / (p.w * p.c);
    let d = draws[s];
    let sy = source(y, d.y, p.h);
    var sx = source(x, d.z, p.w);
    // Mirrored first, then shifted (the host's order): the shifted pixel of the mirror.
    if (sx >= 0 && d.x != 0) {
        sx = i32(p.w) - 1 - sx;
    }
    var v = 0u;
    if (sy >= 0 && sx >= 0) {
        v = byte_at(s * image + (u32(sy) * p.w + u32(sx)) * p.c + ch);
    }
    out[i] = table[v];
}
