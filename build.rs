//! Checks, when the server's development headers are installed, that the
//! `UDF_ARGS`/`UDF_INIT` layouts in `src/ffi.rs` match the server's own.
//! A mismatch would corrupt memory inside the database, so it fails the build.

use std::path::Path;

const CANDIDATES: &[&str] = &["/usr/include/mysql/server", "/usr/include/mariadb/server", "/usr/include/mysql"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/layout_check.c");
    println!("cargo:rerun-if-env-changed=DJ_UDF_SERVER_INCLUDE");
    let dir = std::env::var("DJ_UDF_SERVER_INCLUDE")
        .ok()
        .or_else(|| CANDIDATES.iter().find(|d| Path::new(d).join("mysql_com.h").exists() && has_udf_args(d)).map(|d| d.to_string()));
    match dir {
        Some(dir) => {
            cc::Build::new().file("csrc/layout_check.c").include(&dir).cargo_warnings(true).compile("dj_udf_layout_check");
            println!("cargo:rustc-cfg=dj_layout_checked");
        }
        None => println!(
            "cargo:warning=server headers not found: UDF struct layout not checked against them (install libmariadbd-dev or set DJ_UDF_SERVER_INCLUDE)"
        ),
    }
    println!("cargo:rustc-check-cfg=cfg(dj_layout_checked)");
}

fn has_udf_args(dir: &str) -> bool {
    std::fs::read_to_string(Path::new(dir).join("mysql_com.h")).map(|s| s.contains("attribute_lengths")).unwrap_or(false)
}
