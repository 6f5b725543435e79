//! nginx-sys (feature `vendored`) configures and builds nginx from nginx-src
//! with `--with-compat --with-threads --with-http_ssl_module --with-stream ...`
//! plus `NGX_CONFIGURE_ARGS` (`--with-debug`, see .cargo/config.toml). It
//! exports the build directory to dependents; hand it to the binary.
fn main() {
    let build_dir = std::env::var("DEP_NGINX_BUILD_DIR").expect("nginx-sys did not export build_dir");
    println!("cargo:rustc-env=NGINX_BUILD_DIR={build_dir}");
    println!("cargo:rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
}
