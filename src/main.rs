//! The `opshub` binary: all behaviour lives in the library; see `cli.rs`.

fn main() {
    std::process::exit(opshub::cli::main());
}
