fn main() {
    gst_plugin_version_helper::info();

    // torch-sys adds an rpath only for its own artefacts; give the plugin, the render
    // command and the test binaries one to libtorch so that gst-inspect-1.0, gst-launch-1.0
    // and the tests need no LD_LIBRARY_PATH.
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    // rustc links with --as-needed, which drops libtorch_cuda.so (nothing references it
    // by symbol; it registers the CUDA backend from static initialisers).
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
