//! The `takehome` binary: tracing set-up, `cli::run`, exit code. Everything else is in the library.

fn main() -> std::process::ExitCode {
    takehome::cli::main()
}
