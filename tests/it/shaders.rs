//! Every shader parses, validates and translates to SPIR-V with naga, and the bindings gpugate derives from it are the
//! ones its workload binds.

use gpugate::workload;

#[test]
fn every_shader_validates_with_naga() {
    let _lock = crate::shared_lock();
    for kernel in workload::all() {
        let source = kernel.shader();
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| {
            panic!(
                "shaders/{}.wgsl: {}",
                kernel.name(),
                e.emit_to_string(source)
            )
        });
        // Every capability: which features a kernel needs is the kernel's `unsupported` check.
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl does not validate: {e:?}", kernel.name()));
        // The SPIR-V a Vulkan driver will get is written here too, so a writer failure (as seen
        // with cooperative matrices) shows up on machines without the feature.
        naga::back::spv::write_vec(&module, &info, &Default::default(), None).unwrap_or_else(|e| {
            panic!(
                "shaders/{}.wgsl does not translate to SPIR-V: {e}",
                kernel.name()
            )
        });
        assert!(
            !module.entry_points.is_empty(),
            "shaders/{}.wgsl has no entry point",
            kernel.name()
        );
    }
}

#[test]
fn shader_files_and_kernels_share_one_name() {
    let _lock = crate::shared_lock();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = workload::all()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    names.sort();
    assert_eq!(
        files, names,
        "each shaders/<name>.wgsl must be a registered kernel and vice versa"
    );
    for kernel in workload::all() {
        let on_disk = std::fs::read_to_string(dir.join(format!("{}.wgsl", kernel.name()))).unwrap();
        assert_eq!(
            on_disk,
            kernel.shader(),
            "{} embeds its own shader file",
            kernel.name()
        );
    }
}

#[test]
fn reflected_bindings_are_dense_and_writable_outputs_are_read_write() {
    let _lock = crate::shared_lock();
    use wgpu::{BindingType, BufferBindingType};
    for kernel in workload::all() {
        let entries = workload::bind_group_entries(kernel.shader()).unwrap();
        let bindings: Vec<u32> = entries.iter().map(|e| e.binding).collect();
        let dense: Vec<u32> = (0..entries.len() as u32).collect();
        assert_eq!(
            bindings,
            dense,
            "{}: bindings must be 0..n in order",
            kernel.name()
        );
        let writable = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.ty,
                    BindingType::Buffer {
                        ty: BufferBindingType::Storage { read_only: false },
                        ..
                    }
                )
            })
            .count();
        assert!(
            writable >= 1,
            "{}: a kernel must write an output",
            kernel.name()
        );
    }
}
