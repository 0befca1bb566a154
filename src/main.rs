//! The `opshub` binary: all behaviour lives in the library; see `cli.rs`.

/// mimalloc instead of glibc's malloc: under webhook load glibc's allocator (arena locks,
/// chunk consolidation) took about a quarter of opshub's CPU time (`perf`, see
/// docs/webhooks.md, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(opshub::cli::main());
}
