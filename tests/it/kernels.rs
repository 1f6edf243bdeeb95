//! Every kernel against its CPU reference, on the adapter gpugate picks, at several shapes —
//! including sizes that are not multiples of the 256-wide workgroup or of any kernel tile — in the
//! default trusted mode (no runtime bounds checks) and, at each odd shape, in checked mode too.

use gpugate::device::{AdapterChoice, Gpu, ShaderChecks};
use gpugate::runner;
use gpugate::workload::{self, Params};
use proptest::prelude::ProptestConfig;
use proptest::test_runner::{RngAlgorithm, RngSeed, TestRunner};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn gpu() -> Gpu {
    Gpu::open(&AdapterChoice::default()).expect("tests need an adapter (CI installs lavapipe)")
}

/// Prepare with two buffer sets, optionally run once, and verify.
fn verify(gpu: &Gpu, kernel: &str, params: Params, run: bool) -> workload::Verification {
    let kernel = workload::find(kernel).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let prepared = gpu
        .scoped(kernel.name(), || kernel.prepare(gpu, &params, 2, &mut rng))
        .unwrap();
    if run {
        runner::execute_once(gpu, prepared.as_ref(), 2).unwrap();
    }
    prepared.verify(gpu).unwrap()
}

fn shapes() -> Vec<(&'static str, Params)> {
    let n = |n| Params::new([("n", n)]);
    let mnk = |m, nn, k| Params::new([("m", m), ("n", nn), ("k", k)]);
    let rc = |rows, cols| Params::new([("rows", rows), ("cols", cols)]);
    let conv = |n, c, k, h, w| Params::new([("n", n), ("c", c), ("k", k), ("h", h), ("w", w)]);
    let attn =
        |b, h, s, causal| Params::new([("batch", b), ("heads", h), ("seq", s), ("causal", causal)]);
    let lat = |dim, size| Params::new([("dim", dim), ("size", size)]);
    let dist = |m, nn, dim, size| Params::new([("m", m), ("n", nn), ("dim", dim), ("size", size)]);
    vec![
        // The pattern the probe picks on this adapter (every pattern is checked at these and more
        // sizes by `workload::peak`'s unit tests). Over 5 rounds of the strided read's 1024
        // workgroups and 1281 blocks of the blocked ones: the wrapped rounds and the tails run.
        ("peak_bandwidth", n(4)),
        ("peak_bandwidth", n(4 * (1024 * 256 * 5 + 77))),
        ("peak_fma", Params::new([("groups", 1), ("iters", 1)])),
        ("peak_fma", Params::new([("groups", 3), ("iters", 1000)])),
        // One round of four steps and a tail of three.
        ("peak_fma", Params::new([("groups", 1), ("iters", 7)])),
        // The default suite's step count, where the chains sit closest to their limit and the CPU
        // replays 128 of the 512 invocations.
        ("peak_fma", Params::new([("groups", 2), ("iters", 4096)])),
        ("triad", n(4)),
        ("triad", n(4 * 1001)),
        ("gelu", n(4)),
        ("gelu", n(4 * 1001)),
        // The minimum and maximum sit in the final vec4, which the wrapping shapes read in the
        // grid-stride loop's last round through the guarded tail (see `reduce::reference::inputs`).
        // Each invocation reads 4 vec4s of a 1024-vec4 block: n = 4…20 and 4·1001 leave most
        // invocations short of their four; 4·(1024·256 + 77) wraps on a CPU adapter (≤ 256
        // workgroups), 4·(1024·1027 + 77) on a GPU too (≤ 1024), where the exact partials also see
        // every element kept over several rounds.
        ("reduce_min", n(4)),
        ("reduce_min", n(8)),
        ("reduce_min", n(12)),
        ("reduce_min", n(16)),
        ("reduce_min", n(20)),
        ("reduce_min", n(4 * 1001)),
        ("reduce_min", n(1 << 18)),
        ("reduce_min", n(4 * (1024 * 256 + 77))),
        ("reduce_min", n(4 * (1024 * 1027 + 77))),
        ("reduce_max", n(4)),
        ("reduce_max", n(8)),
        ("reduce_max", n(12)),
        ("reduce_max", n(16)),
        ("reduce_max", n(20)),
        ("reduce_max", n(4 * 1001)),
        ("reduce_max", n(1 << 18)),
        ("reduce_max", n(4 * (1024 * 256 + 77))),
        ("reduce_max", n(4 * (1024 * 1027 + 77))),
        // softmax and layernorm hold rows of up to 8192 columns in registers, loaded as vec4s when
        // cols % 4 == 0 and as scalars otherwise; longer rows take the re-reading sweep.
        ("softmax", rc(1, 1)),
        ("softmax", rc(1, 7)),
        ("softmax", rc(1, 1000)),
        ("softmax", rc(37, 300)),
        ("softmax", rc(37, 1000)),
        ("softmax", rc(3, 8192)),
        ("softmax", rc(2, 4099)),
        ("softmax", rc(2, 8193)),
        ("softmax", rc(2, 8197)),
        // More rows than the 65535 workgroups: a workgroup takes a second row without a barrier
        // between them (the scalar path here, the vec4 path for layernorm).
        ("softmax", rc(65541, 3)),
        ("softmax", rc(2, 8196)),
        ("layernorm", rc(1, 1)),
        ("layernorm", rc(1, 7)),
        ("layernorm", rc(1, 1000)),
        ("layernorm", rc(37, 300)),
        ("layernorm", rc(37, 1000)),
        ("layernorm", rc(3, 8192)),
        ("layernorm", rc(2, 4099)),
        ("layernorm", rc(2, 8193)),
        ("layernorm", rc(2, 8197)),
        ("layernorm", rc(2, 8196)),
        ("layernorm", rc(65541, 4)),
        ("transpose", rc(1, 1)),
        ("transpose", rc(33, 65)),
        ("transpose", rc(100, 7)),
        ("attention", attn(1, 1, 1, 0)),
        ("attention", attn(1, 2, 100, 0)),
        ("attention", attn(2, 1, 70, 1)),
        // 128 query rows per workgroup, 16-key tiles: a partial tile, a second workgroup, causal
        // rows whose later tiles are wholly masked.
        ("attention", attn(1, 1, 65, 1)),
        ("attention", attn(1, 1, 129, 0)),
        ("attention", attn(1, 2, 300, 1)),
        ("lattice_bfs", lat(1, 1)),
        ("lattice_bfs", lat(1, 100)),
        ("lattice_bfs", lat(2, 33)),
        ("lattice_bfs", lat(3, 17)),
        ("lattice_bfs", lat(4, 6)),
        // Frontiers of up to ~1300 vertices: many subgroups reserve slots in one level.
        ("lattice_bfs", lat(3, 30)),
        ("lattice_distance", dist(1, 1, 1, 2)),
        ("lattice_distance", dist(33, 17, 3, 100)),
        ("lattice_distance", dist(40, 70, 8, 1000)),
        // One whole 64×64 tile; then partial tiles past both edges; then a single column.
        ("lattice_distance", dist(64, 64, 2, 10)),
        ("lattice_distance", dist(65, 129, 5, 50)),
        ("lattice_distance", dist(130, 1, 1, 3)),
        ("sgemm_subgroup", mnk(1, 1, 1)),
        ("sgemm_subgroup", mnk(65, 33, 17)),
        ("sgemm_subgroup", mnk(128, 64, 128)),
        ("hgemm", mnk(1, 1, 1)),
        ("hgemm", mnk(65, 33, 17)),
        ("hgemm", mnk(128, 128, 256)),
        // hgemm_coop (128×256 blocks; m, n multiples of 32, k of 16): one partial block; partial
        // blocks in both dimensions over three K stages; ten block-rows, so the grouped block
        // order (groups of 8 block-rows) ends in a partial group.
        ("hgemm_coop", mnk(32, 32, 16)),
        ("hgemm_coop", mnk(64, 96, 48)),
        ("hgemm_coop", mnk(288, 544, 48)),
        ("hgemm_coop", mnk(1184, 288, 32)),
        ("conv2d", conv(1, 1, 1, 1, 1)),
        ("conv2d", conv(2, 3, 9, 17, 19)),
        ("conv2d", conv(1, 4, 8, 32, 16)),
        // Below one invocation's four vec4s, a block with a tail, whole blocks, and (on a CPU
        // adapter, ≤ 256 workgroups) a wrapping grid-stride loop ending in a tail block.
        ("copy", n(4)),
        ("copy", n(8)),
        ("copy", n(12)),
        ("copy", n(16)),
        ("copy", n(20)),
        ("copy", n(4 * 1001)),
        ("copy", n(1 << 18)),
        ("copy", n(4 * (1024 * 256 + 77))),
        ("reduce_sum", n(4)),
        ("reduce_sum", n(8)),
        ("reduce_sum", n(12)),
        ("reduce_sum", n(16)),
        ("reduce_sum", n(20)),
        ("reduce_sum", n(4 * 1001)),
        ("reduce_sum", n(1 << 18)),
        // 257 blocks: the grid-stride loop wraps on a CPU adapter and the last block is a tail.
        // The inputs are sixteenths, so the sum is exact here (tolerance 0).
        ("reduce_sum", n(4 * (1024 * 256 + 77))),
        // sgemm (128×128 blocks, K steps of 8, vec4 pieces along K of A and N of B): single
        // elements; odd sizes inside one block; exactly one block; rows of odd length; one row
        // past a block with k under one step; n = 1 with several steps; k = 1; several blocks in
        // both dimensions with a partial last K step.
        ("sgemm", mnk(1, 1, 1)),
        ("sgemm", mnk(65, 33, 17)),
        ("sgemm", mnk(128, 128, 128)),
        ("sgemm", mnk(100, 70, 130)),
        ("sgemm", mnk(129, 257, 9)),
        ("sgemm", mnk(255, 1, 300)),
        ("sgemm", mnk(3, 130, 1)),
        ("sgemm", mnk(260, 390, 203)),
        ("xor_transform", n(4)),
        ("xor_transform", n(8)),
        ("xor_transform", n(12)),
        ("xor_transform", n(16)),
        ("xor_transform", n(20)),
        ("xor_transform", n(4 * 1001)),
        ("xor_transform", n(1 << 16)),
        ("xor_transform", n(1 << 18)),
        ("xor_transform", n(4 * (1024 * 256 + 77))),
    ]
}

/// Kernels an adapter is known to lack a feature for, keyed by adapter: lavapipe has SHADER_F16
/// and SUBGROUP but no cooperative matrices. Other adapters run whatever they report support for.
fn expected_unsupported(gpu: &Gpu) -> Option<Vec<&'static str>> {
    gpu.fingerprint
        .name
        .starts_with("llvmpipe")
        .then(|| vec!["hgemm_coop"])
}

#[test]
fn every_kernel_matches_its_cpu_reference() {
    let _lock = crate::shared_lock();
    let gpu = gpu();
    assert_eq!(gpu.shader_checks, ShaderChecks::Trusted, "the default mode");
    let mut unsupported = vec![];
    for (kernel, params) in shapes() {
        if let Some(reason) = workload::find(kernel).unwrap().unsupported(&gpu) {
            assert!(reason.starts_with("needs"), "{kernel}: {reason}");
            unsupported.push(kernel);
            continue;
        }
        let v = verify(&gpu, kernel, params.clone(), true);
        assert!(v.ok, "{kernel}[{params}]: {}", v.detail);
        assert!(v.checked > 0, "{kernel}[{params}] checked nothing");
    }
    unsupported.dedup();
    if let Some(expected) = expected_unsupported(&gpu) {
        assert_eq!(
            unsupported, expected,
            "unsupported kernels on {}",
            gpu.fingerprint.name
        );
    }
    // Every registered kernel is covered at two shapes at least.
    for k in workload::all() {
        let count = shapes()
            .iter()
            .filter(|(name, _)| *name == k.name())
            .count();
        assert!(count >= 2, "{} is tested at {count} shape(s)", k.name());
    }
}

/// The checked path (`--shader-checks checked`: wgpu's runtime bounds checks, zeroed workgroup
/// memory) computes what the trusted one does: every kernel at its second shape, the odd one.
#[test]
fn every_kernel_matches_its_cpu_reference_in_checked_mode_too() {
    let _lock = crate::shared_lock();
    let gpu = Gpu::open(&AdapterChoice {
        shader_checks: ShaderChecks::Checked,
        ..AdapterChoice::default()
    })
    .unwrap();
    let mut seen: Vec<&str> = vec![];
    for (kernel, params) in shapes() {
        seen.push(kernel);
        if seen.iter().filter(|k| **k == kernel).count() != 2
            || workload::find(kernel).unwrap().unsupported(&gpu).is_some()
        {
            continue;
        }
        let v = verify(&gpu, kernel, params.clone(), true);
        assert!(v.ok, "{kernel}[{params}] checked: {}", v.detail);
    }
}

#[test]
fn a_kernel_that_did_not_run_fails_verification() {
    let _lock = crate::shared_lock();
    // Outputs start poisoned (all bits set), so skipping the dispatch cannot pass.
    let gpu = gpu();
    for (kernel, params) in shapes()
        .into_iter()
        .filter(|(k, _)| workload::find(k).unwrap().unsupported(&gpu).is_none())
    {
        let v = verify(&gpu, kernel, params.clone(), false);
        assert!(
            !v.ok,
            "{kernel}[{params}] passed without running: {}",
            v.detail
        );
    }
}

#[test]
fn sizes_beyond_the_binding_limit_are_a_clear_error() {
    let _lock = crate::shared_lock();
    let gpu = gpu();
    let too_big = gpu.max_binding_bytes() / 4 + 4;
    let kernel = workload::find("copy").unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let err = kernel
        .prepare(
            &gpu,
            &Params::new([("n", too_big - too_big % 4)]),
            1,
            &mut rng,
        )
        .err()
        .expect("an over-limit buffer must be refused");
    let text = err.to_string();
    assert!(
        text.contains("copy[n=") && text.contains("binding limit"),
        "{text}"
    );
}

#[test]
fn bad_parameters_name_the_kernel_and_parameter() {
    let _lock = crate::shared_lock();
    let gpu = gpu();
    let mut rng = StdRng::seed_from_u64(1);
    let sgemm = workload::find("sgemm").unwrap();
    let err = sgemm
        .prepare(&gpu, &Params::new([("m", 4), ("n", 4)]), 1, &mut rng)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("sgemm: missing parameter k"),
        "{err}"
    );
    let copy = workload::find("copy").unwrap();
    let err = copy
        .prepare(&gpu, &Params::new([("n", 6)]), 1, &mut rng)
        .err()
        .unwrap();
    assert!(err.to_string().contains("multiple of 4"), "{err}");
}

/// One device for the property tests' many small cases.
fn shared_gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(gpu)
}

/// The property tests' configuration: 16 cases drawn from a fixed seed with a fixed algorithm,
/// so every run (and every machine) covers the same shapes and a failure reproduces as it is,
/// with no regressions file; `PROPTEST_RNG_SEED` and `PROPTEST_RNG_ALGORITHM` do not change it.
fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 16,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(7),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn property_tests_draw_the_same_cases_on_every_run() {
    use proptest::strategy::{Strategy, ValueTree};
    let cases = || {
        let mut runner = TestRunner::new(proptest_config());
        (0..16)
            .map(|_| {
                (1u64..40, 1u64..700)
                    .new_tree(&mut runner)
                    .unwrap()
                    .current()
            })
            .collect::<Vec<_>>()
    };
    let first = cases();
    assert_eq!(first, cases());
    // And they are spread out, not one case repeated.
    assert!(first.iter().any(|&case| case != first[0]), "{first:?}");
}

proptest::proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn softmax_matches_its_reference_on_random_shapes(rows in 1u64..40, cols in 1u64..700) {
        let _lock = crate::shared_lock();
        let params = Params::new([("rows", rows), ("cols", cols)]);
        let v = verify(shared_gpu(), "softmax", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn layernorm_matches_its_reference_on_random_shapes(rows in 1u64..40, cols in 1u64..700) {
        let _lock = crate::shared_lock();
        let params = Params::new([("rows", rows), ("cols", cols)]);
        let v = verify(shared_gpu(), "layernorm", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn attention_matches_its_reference_on_random_shapes(
        batch in 1u64..3,
        heads in 1u64..3,
        seq in 1u64..200,
        causal in 0u64..=1,
    ) {
        let _lock = crate::shared_lock();
        let params =
            Params::new([("batch", batch), ("heads", heads), ("seq", seq), ("causal", causal)]);
        let v = verify(shared_gpu(), "attention", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn lattice_bfs_matches_a_cpu_bfs_on_random_lattices(dim in 1u64..=5, size in 1u64..=12) {
        let _lock = crate::shared_lock();
        let params = Params::new([("dim", dim), ("size", size)]);
        let v = verify(shared_gpu(), "lattice_bfs", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn lattice_distance_matches_its_reference_on_random_shapes(
        m in 1u64..200,
        n in 1u64..200,
        dim in 1u64..=8,
        size in 1u64..=1000,
    ) {
        let _lock = crate::shared_lock();
        let params = Params::new([("m", m), ("n", n), ("dim", dim), ("size", size)]);
        let v = verify(shared_gpu(), "lattice_distance", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn sgemm_matches_its_reference_on_random_shapes(m in 1u64..200, n in 1u64..200, k in 1u64..200) {
        let _lock = crate::shared_lock();
        let params = Params::new([("m", m), ("n", n), ("k", k)]);
        let v = verify(shared_gpu(), "sgemm", params, true);
        proptest::prop_assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn softmax_and_layernorm_match_around_the_register_cap(
        rows in 1u64..3,
        cols in 8185u64..8200,
    ) {
        let _lock = crate::shared_lock();
        for kernel in ["softmax", "layernorm"] {
            let params = Params::new([("rows", rows), ("cols", cols)]);
            let v = verify(shared_gpu(), kernel, params, true);
            proptest::prop_assert!(v.ok, "{kernel}: {}", v.detail);
        }
    }

    #[test]
    fn streaming_kernels_match_their_references_at_any_multiple_of_4(
        vec4s in 1u64..3000,
        which in 0usize..5,
    ) {
        // Any tail of a 1024-vec4 block, and (on a CPU adapter, ≤ 256 workgroups) no wrap.
        let _lock = crate::shared_lock();
        let kernel = ["copy", "reduce_sum", "reduce_min", "reduce_max", "xor_transform"][which];
        let v = verify(shared_gpu(), kernel, Params::new([("n", 4 * vec4s)]), true);
        proptest::prop_assert!(v.ok, "{kernel}[n={}]: {}", 4 * vec4s, v.detail);
    }
}
