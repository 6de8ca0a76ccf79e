//! `lain-shim DIR`: the supervisor of one process-runtime instance (see
//! `lain::runtime::process::shim`).

fn main() -> std::process::ExitCode {
    lain::runtime::process::shim::main()
}
