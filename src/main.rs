//! The `portcullis` binary: a thin shell over the library.

/// mimalloc instead of glibc's malloc: a decision builds and drops many small
/// values, and glibc's allocator was a sixth of the decision's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::run()
}
