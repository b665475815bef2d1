//! Face analysis per portrait on the CPU: detection plus mesh (what preparing a portrait
//! costs), the parts alone, and a 1080p frame whose small face is found by the tile
//! search. `make bench`; numbers in the README.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gstvasafacegen::face::{self, detect, mesh::MeshModel};
use gstvasafacegen::portrait::Portrait;

fn load(relative: &str) -> Portrait {
    Portrait::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

fn face_analysis(c: &mut Criterion) {
    let mut group = c.benchmark_group("face");
    group.measurement_time(Duration::from_secs(6));
    let portrait = load("assets/astronaut.png");
    group.bench_function("analyze_512_portrait", |b| {
        b.iter(|| face::analyze(&portrait, None).unwrap())
    });
    group.bench_function("detect_512_portrait", |b| {
        b.iter(|| detect::detect_faces(&portrait).unwrap())
    });
    let model = MeshModel::load().unwrap();
    let roi = MeshModel::roi_for(&detect::detect_faces(&portrait).unwrap()[0]);
    group.bench_function("mesh_model_load", |b| b.iter(|| MeshModel::load().unwrap()));
    group.bench_function("mesh_run", |b| {
        b.iter(|| model.run(&portrait, roi).unwrap().unwrap())
    });
    // Detection and mesh on a team of libtorch threads (one per core) against one
    // thread, which `analyze` uses: are the small networks helped by more threads?
    use gstvasafacegen::core::{CpuThreads, use_cpu_threads};
    for (label, threads) in [
        ("all_threads", CpuThreads::All),
        ("one_thread", CpuThreads::One),
    ] {
        use_cpu_threads(tch::Device::Cpu, threads);
        group.bench_function(format!("detect_and_mesh_{label}"), |b| {
            b.iter(|| {
                let face = detect::detect_faces(&portrait).unwrap()[0];
                model
                    .run(&portrait, MeshModel::roi_for(&face))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    use_cpu_threads(tch::Device::Cpu, CpuThreads::All);
    let frame = load("tests/files/faces/astronaut_1080p.png");
    group.sample_size(10);
    group.bench_function("analyze_1080p_small_face_tiles", |b| {
        b.iter(|| face::analyze(&frame, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, face_analysis);
criterion_main!(benches);
