//! Builds mruby 3.3.0 from Debian's source package (fetched into
//! `vendor/` by `make setup`) with `build_config.rb`, after applying
//! `patches/*.patch`; then runs bindgen over its headers with the same `-D`
//! defines the build used, compiles the C shim for the API's macros and
//! inline functions, and links `libmruby.a` statically.
//!
//! mruby is built once per clean cargo build: a stamp in `OUT_DIR` records
//! the inputs (source version, config, patches), and an unchanged stamp
//! skips the build when this script reruns for another reason.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `make setup` unpacks `apt-get source mruby` (see the Makefile).
const VENDORED_SOURCE: &str = "vendor/mruby-3.3.0";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let source =
        env::var_os("MRUBY_SOURCE_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join(VENDORED_SOURCE));
    println!("cargo:rerun-if-env-changed=MRUBY_SOURCE_DIR");
    for input in ["wrapper.h", "shim.h", "shim.c", "build_config.rb", "patches"] {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-changed={}", source.join("include").display());
    println!("cargo:rerun-if-changed={}", source.join("src").display());
    if !source.join("Rakefile").exists() {
        panic!(
            "mruby source not found at {}: run `make setup` (it fetches Debian's mruby 3.3.0 source package)",
            source.display()
        );
    }

    let build_dir = out.join("mruby-build");
    let host = build_mruby(&manifest_dir, &source, &out, &build_dir);
    let flags = build_flags(&host);
    let defines: Vec<String> = flags.iter().filter(|f| f.starts_with("-D")).cloned().collect();
    let includes: Vec<String> = flags.iter().filter(|f| f.starts_with("-I")).cloned().collect();

    let mut shim = cc::Build::new();
    shim.file("shim.c").include(".").flag("-fPIC");
    for flag in defines.iter().chain(&includes) {
        shim.flag(flag);
    }
    shim.compile("mruby_sys_shim");

    println!("cargo:rustc-link-search=native={}", host.join("lib").display());
    println!("cargo:rustc-link-lib=static=mruby");
    println!("cargo:rustc-link-lib=m");
    println!("cargo:defines={}", defines.join(" "));

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg("-I.")
        .clang_args(&includes)
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
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}

/// Copies the source into `OUT_DIR`, applies our patches and runs mruby's
/// rake build there; returns the build directory (lib/, include/).
fn build_mruby(manifest_dir: &Path, source: &Path, out: &Path, build_dir: &Path) -> PathBuf {
    let host = build_dir.to_path_buf();
    let config = manifest_dir.join("build_config.rb");
    let mut patches: Vec<PathBuf> = fs::read_dir(manifest_dir.join("patches"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "patch"))
                .collect()
        })
        .unwrap_or_default();
    patches.sort();

    let mut stamp = String::new();
    stamp += &fs::read_to_string(source.join("include/mruby/version.h")).unwrap_or_default();
    stamp += &fs::read_to_string(&config).expect("read build_config.rb");
    for patch in &patches {
        stamp += &fs::read_to_string(patch).expect("read patch");
    }
    let stamp_file = out.join("mruby-build.stamp");
    if host.join("lib/libmruby.a").exists() && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return host;
    }

    let tree = out.join("mruby-src");
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_dir_all(build_dir);
    run(Command::new("cp").arg("-a").arg(source).arg(&tree));
    for patch in &patches {
        run(Command::new("patch").arg("-p1").arg("-s").arg("-d").arg(&tree).arg("-i").arg(patch));
    }
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(Command::new("rake")
        .current_dir(&tree)
        .arg("-m")
        .arg(format!("-j{jobs}"))
        .arg(format!("MRUBY_CONFIG={}", config.display()))
        .arg("gensym")
        .arg("build")
        .arg(build_dir.join("lib/libmruby.flags.mak"))
        .env("MRUBY_SYS_BUILD_DIR", build_dir)
        .env_remove("CFLAGS")
        .env_remove("LDFLAGS"));
    fs::write(&stamp_file, stamp).expect("write stamp");
    host
}

/// The compiler flags mruby's build records for users of `libmruby.a`
/// (its include paths are relative to `$(MRUBY_PACKAGE_DIR)`, the build dir).
fn build_flags(build_dir: &Path) -> Vec<String> {
    let mak = fs::read_to_string(build_dir.join("lib/libmruby.flags.mak")).expect("read libmruby.flags.mak");
    let package_dir = build_dir.display().to_string();
    mak.lines()
        .find_map(|line| line.strip_prefix("MRUBY_CFLAGS = "))
        .expect("MRUBY_CFLAGS in libmruby.flags.mak")
        .split_whitespace()
        .map(|flag| flag.replace('"', "").replace("$(MRUBY_PACKAGE_DIR)", &package_dir))
        .filter(|flag| flag.starts_with("-D") || flag.starts_with("-I"))
        .collect()
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|err| panic!("{command:?}: {err} (run `make setup`)"));
    assert!(status.success(), "{command:?} failed: {status}");
}
