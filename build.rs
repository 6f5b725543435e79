//! Tells the code which nginx it is compiled against (`make module` builds
//! it against other nginx sources than the vendored one).
//!
//! nginx-sys exports the version and the configure features of that source
//! to its direct dependents (`DEP_NGINX_*`); they become cfgs:
//! * `ngx_feature = "..."`: as in the `ngx` crate (`http_ssl`, `http_v2`, ...);
//! * `nginx_header_lists` (nginx >= 1.23.0): header lines carry a `next`
//!   pointer and repeated headers in `headers_in` are lists of elements
//!   (before, `cookies` and `x_forwarded_for` were arrays of pointers);
//! * `nginx_listen_type` (nginx >= 1.25.0, with HTTP/3): `ngx_http_listen_opt_t`
//!   has a socket `type`;
//! * `nginx_stream_add_listen` (nginx >= 1.25.5, virtual servers in stream):
//!   `ngx_stream_add_listen` and `ngx_stream_listen_opt_t`, which
//!   `Nginx::Stream.add_listener` needs (before, it raises).
//!
//! The oldest nginx supported is 1.22.1 (README, "Supported nginx versions");
//! `make module` refuses older sources with that message.

/// (first version with it, cfg name)
const VERSION_CFGS: &[(u64, &str)] =
    &[(1_023_000, "nginx_header_lists"), (1_025_000, "nginx_listen_type"), (1_025_005, "nginx_stream_add_listen")];

fn main() {
    for (_, name) in VERSION_CFGS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let version: u64 = std::env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .expect("nginx-sys did not export the nginx version (DEP_NGINX_VERSION_NUMBER)");
    for (since, name) in VERSION_CFGS {
        if version >= *since {
            println!("cargo::rustc-cfg={name}");
        }
    }

    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        std::env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".into())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }
}
