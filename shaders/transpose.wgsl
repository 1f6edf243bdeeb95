// transpose: out (cols × rows) = inᵀ for a row-major f32 rows × cols matrix (layout changes
// between attention heads and GEMMs). 32×32 tiles staged through workgroup memory so both the
// read and the write are coalesced; the tile row is padded by one to avoid bank conflicts.

struct Dims { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const TILE: u32 = 32u;
var<workgroup> tile: array<array<f32, 33>, 32>;

@compute @workgroup_size(32, 8)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = wid.x * TILE + lid.x;
    for (var j = lid.y; j < TILE; j += 8u) {
        let row = wid.y * TILE + j;
        if row < dims.rows && col < dims.cols {
            tile[j][lid.x] = src[row * dims.cols + col];
        }
    }
    workgroupBarrier();
    // Output row = input column: this workgroup writes rows wid.x·32… of dst.
    let out_col = wid.y * TILE + lid.x;
    for (var j = lid.y; j < TILE; j += 8u) {
        let out_row = wid.x * TILE + j;
        if out_row < dims.cols && out_col < dims.rows {
            dst[out_row * dims.rows + out_col] = tile[lid.x][j];
        }
    }
}
