//! ngx-mruby-supervisor: the only process of ngx-mruby-rs that creates
//! processes with another identity. The module execs it from nginx's
//! master (`keeper` mode); it never parses HTTP and never runs tenant code.
//! See `src/tenants/mod.rs` in the module for the whole design.

mod block_devices;
mod cgi;
mod cgroup;
mod classes;
mod config;
mod dirs;
mod fastcgi;
mod keeper;
mod log;
mod owner;
mod peers;
mod ruby;
mod runners;
mod sandbox;
mod server;
mod stale;
mod stderr_budget;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("keeper") => match config::Config::from_args(&args[2..]) {
            Ok(config) => keeper::run(config),
            Err(e) => {
                log_error!("supervisor: {e}");
                std::process::exit(2)
            }
        },
        // exec'd by a confined runner, never by hand
        Some("cgi-runner") => cgi::run(&args[2..]),
        Some("ruby-runner") => ruby::run(&args[2..]),
        // run by the module for `nginx -t` (and every configuration load)
        Some("check-cgroup") => cgroup::check_command(&args[2..]),
        _ => {
            eprintln!("usage: ngx-mruby-supervisor keeper --dir <dir> --worker-uid <uid> --worker-gid <gid> [options]");
            eprintln!("(started by the ngx_http_mruby module; see README, section Tenant runners)");
            std::process::exit(2)
        }
    }
}
