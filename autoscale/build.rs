//! Compiles KEDA's external scaler contract (server for the gateway, client for the tests and
//! the local scaler) with a vendored protoc, so no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/externalscaler.proto"],
        &["proto"],
    )?;
    Ok(())
}
