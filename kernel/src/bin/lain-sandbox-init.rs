//! `lain-sandbox-init [--status-fd N] -- PROGRAM ARGS...`: pid 1 of every process-runtime
//! sandbox (see `lain::runtime::process::sandbox::init`).

fn main() -> std::process::ExitCode {
    lain::runtime::process::sandbox::init::main()
}
