//! Compiles the protocol with the vendored protoc (no protoc needed on the machine) and writes the descriptor
//! set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/trundle/v1/common.proto",
        "proto/trundle/v1/orders.proto",
        "proto/trundle/v1/robots.proto",
        "proto/trundle/v1/ops.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("trundle_descriptor.bin")).compile_with_config(
        config,
        &files,
        &["proto"],
    )?;
    // etcd's API, for the etcd store: clients only, and kept out of the descriptor set reflection serves.
    let etcd = "proto/etcd/kv.proto";
    println!("cargo:rerun-if-changed={etcd}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().build_server(false).compile_with_config(config, &[etcd], &["proto"])?;
    Ok(())
}
