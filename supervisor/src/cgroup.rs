//! `ngx-mruby-supervisor check-cgroup <path>`: the cgroup code itself is
//! the `cgroupfs` crate (shared with the module).

/// `ngx-mruby-supervisor check-cgroup <path>`: what `nginx -t` runs for
/// `tenant_cgroup`. Prints the layout, or the reason the path cannot work.
pub fn check_command(args: &[String]) -> ! {
    let result = match args {
        [path] => cgroupfs::check_path_syntax(path).and_then(|()| {
            let layout = cgroupfs::Layout::detect()?;
            let tree = cgroupfs::Tree::new(layout, path, "check");
            tree.check()?;
            let dirs: Vec<String> =
                tree.layout.hierarchies.iter().map(|h| tree.root_dir(h).display().to_string()).collect();
            Ok(format!("{}: {}", tree.layout.describe(), dirs.join(" ")))
        }),
        _ => Err(String::from("usage: ngx-mruby-supervisor check-cgroup <path>")),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            std::process::exit(0)
        }
        Err(e) => {
            println!("{e}");
            std::process::exit(1)
        }
    }
}
