//! `koopman-bench`: the same command line as `koopman` (see [`koopman_bench::cli`]), kept under
//! this name for `cargo run -p koopman-bench -- reproduce`.

fn main() {
    koopman_bench::cli::main("koopman-bench");
}
