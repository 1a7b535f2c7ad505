//! `koopman`: DMD of your snapshot files, the papers' reproductions and performance runs (see
//! [`koopman_bench::cli`]). Install with `cargo install --path koopman-bench`.

fn main() {
    koopman_bench::cli::main("koopman");
}
