//! The `lain` binary.

fn main() -> std::process::ExitCode {
    lain::cli::main()
}
