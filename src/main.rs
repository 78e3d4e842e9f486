//! protector's entry point: everything happens in `cli`.

fn main() -> std::process::ExitCode {
    protector::cli::main()
}
