//! Binds Debian's libmruby-dev 3.1: runs bindgen over its headers with the
//! same `-D` defines `mruby-config --cflags` prints, compiles the C shim for
//! the API's macros and inline functions, and links `libmruby.a` statically.
use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The `-D` flags mruby was built with; a mismatch would change struct layouts.
fn mruby_defines() -> Vec<String> {
    let output = Command::new("mruby-config")
        .arg("--cflags")
        .output()
        .expect("mruby-config not found: install Debian's libmruby-dev (make setup)");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter(|flag| flag.starts_with("-D"))
        .map(str::to_owned)
        .collect()
}

fn main() {
    let defines = mruby_defines();
    let include_dir = env::var("MRUBY_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    let lib_dir = env::var("MRUBY_LIB_DIR").unwrap_or_else(|_| "/usr/lib".into());
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=MRUBY_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=MRUBY_LIB_DIR");

    let mut shim = cc::Build::new();
    shim.file("shim.c").include(&include_dir).include(".").flag("-fPIC");
    for define in &defines {
        let define = define.trim_start_matches("-D");
        match define.split_once('=') {
            Some((name, value)) => shim.define(name, value),
            None => shim.define(define, None),
        };
    }
    shim.compile("mruby_sys_shim");

    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=static=mruby");
    println!("cargo:rustc-link-lib=m");
    println!("cargo:defines={}", defines.join(" "));

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg(format!("-I{include_dir}"))
        .clang_arg("-I.")
        .clang_args(&defines)
        .allowlist_function("mrb_.*|mrbc_.*|mrbsys_.*")
        .allowlist_type("mrb_.*|mrbc_.*|R[A-Z][a-zA-Z]*")
        .allowlist_var("MRB_.*|E_.*")
        .derive_default(true)
        .enable_function_attribute_detection()
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over the mruby headers failed");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}
