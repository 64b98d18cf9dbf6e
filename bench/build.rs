//! Generates the tonic client and server of `proto/bench.proto`, with the
//! vendored `protoc` so that no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        // `bytes` fields as `bytes::Bytes`: no copy of echoed payloads.
        .bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/bench.proto"],
        &["proto"],
    )?;
    Ok(())
}
