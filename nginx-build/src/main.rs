//! `nginx-build <dest>`: copies the nginx binary that nginx-sys built (the one
//! the module's bindings were generated from) to `<dest>`.
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dest) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: nginx-build <destination of the nginx binary>");
        return ExitCode::FAILURE;
    };
    let source = PathBuf::from(env!("NGINX_BUILD_DIR")).join("nginx");
    if let Some(parent) = dest.parent() {
        if let Err(err) = std::fs::create_dir_all(parent) {
            eprintln!("nginx-build: cannot create {}: {err}", parent.display());
            return ExitCode::FAILURE;
        }
    }
    // Copy to a temporary name and rename, so a running nginx keeps its inode.
    let tmp = dest.with_extension("tmp");
    match std::fs::copy(&source, &tmp).and_then(|_| std::fs::rename(&tmp, &dest)) {
        Ok(()) => {
            println!("nginx-build: {} -> {}", source.display(), dest.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nginx-build: copy {} -> {}: {err}", source.display(), dest.display());
            ExitCode::FAILURE
        }
    }
}
