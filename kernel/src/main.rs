//! The `lain` binary.

/// mimalloc: the router allocates per request (hyper's headers and buffers); measured with
/// `cargo bench -p lain --bench router`, see the README.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lain::cli::main()
}
