//! The supervisor's configuration: command-line options written by the
//! module from nginx's configuration, in the master. Nothing here ever
//! comes from a worker.

use std::path::PathBuf;
use std::time::Duration;

/// What the supervisor enforces.
#[derive(Debug, Clone)]
pub struct Config {
    /// This generation's directory: `sockets/` (`supervisor.sock`, runner
    /// sockets; root:worker group 0710) and `tmp/<uid>/` (each owner's
    /// private temporary directory, 0700).
    pub dir: PathBuf,
    /// The nginx worker user and group: the only peers accepted.
    pub worker_uid: u32,
    pub worker_gid: u32,
    /// `tenant_min_uid` / `tenant_min_gid`.
    pub min_uid: u32,
    pub min_gid: u32,
    /// `tenant_max_runners`.
    pub max_runners: usize,
    /// `tenant_max_runners_per_owner`.
    pub max_per_owner: usize,
    /// `tenant_max_requests` (0: unlimited).
    pub max_requests: u64,
    /// `tenant_idle_timeout`.
    pub idle_timeout: Duration,
    /// `tenant_queue_timeout`.
    pub queue_timeout: Duration,
    /// `tenant_interpreter <ext> <path>`: kind name (the extension) to program.
    pub interpreters: Vec<(String, PathBuf)>,
    /// `tenant_writable`: paths below the document root a runner may write.
    pub writable: Vec<PathBuf>,
    /// `tenant_max_processes`: RLIMIT_NPROC of a runner (per owner uid).
    pub max_processes: u64,
    /// `tenant_max_memory`: RLIMIT_AS of a runner, bytes (0: unlimited).
    pub max_memory: u64,
    /// This program, exec'd again as the CGI and Ruby runners.
    pub self_exe: PathBuf,
    /// nginx's error log file (our fd 2), followed across `nginx -s reopen`.
    pub error_log: Option<PathBuf>,
    /// How to find this nginx's master, whose children alone may connect.
    pub master: Option<crate::peers::MasterSource>,
    /// `tenant_cgroup`: the cgroup path runners are placed under.
    pub cgroup_path: Option<String>,
    /// This generation's cgroup tree, once the keeper has created it: the
    /// owners' groups (`tenant_cgroup`'s, or `tenant_resource_class`'s).
    pub cgroups: Option<cgroupfs::Tree>,
    /// `resource_cgroup_root`: the sub-tree of the classes' groups.
    pub resource_root: Option<String>,
    /// `resource_class`, in order.
    pub resource_classes: Vec<resource_policy::class::ClassSpec>,
    /// `tenant_resource_class`: the class whose limits every owner's group gets.
    pub tenant_class: Option<String>,
    /// This generation's class tree (`resource_cgroup_root`), once created.
    pub classes: Option<crate::classes::Classes>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::new(),
            worker_uid: u32::MAX,
            worker_gid: u32::MAX,
            min_uid: 1000,
            min_gid: 1000,
            max_runners: 64,
            max_per_owner: 4,
            max_requests: 1000,
            idle_timeout: Duration::from_secs(60),
            queue_timeout: Duration::from_secs(5),
            interpreters: Vec::new(),
            writable: Vec::new(),
            max_processes: 64,
            max_memory: 0,
            self_exe: PathBuf::new(),
            error_log: None,
            master: None,
            cgroup_path: None,
            cgroups: None,
            resource_root: None,
            resource_classes: Vec::new(),
            tenant_class: None,
            classes: None,
        }
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("invalid value \"{value}\" for --{name}"))
}

impl Config {
    /// Parses `--name value` pairs.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let mut config = Config::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument \"{flag}\""))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            match name {
                "dir" => config.dir = PathBuf::from(value),
                "worker-uid" => config.worker_uid = parse_num(name, value)?,
                "worker-gid" => config.worker_gid = parse_num(name, value)?,
                "min-uid" => config.min_uid = parse_num(name, value)?,
                "min-gid" => config.min_gid = parse_num(name, value)?,
                "max-runners" => config.max_runners = parse_num(name, value)?,
                "max-per-owner" => config.max_per_owner = parse_num(name, value)?,
                "max-requests" => config.max_requests = parse_num(name, value)?,
                "idle-timeout-ms" => config.idle_timeout = Duration::from_millis(parse_num(name, value)?),
                "queue-timeout-ms" => config.queue_timeout = Duration::from_millis(parse_num(name, value)?),
                "max-processes" => config.max_processes = parse_num(name, value)?,
                "max-memory" => config.max_memory = parse_num(name, value)?,
                "interpreter" => {
                    let (ext, path) = value.split_once('=').ok_or("--interpreter takes <ext>=<path>")?;
                    config.interpreters.push((ext.to_string(), PathBuf::from(path)));
                }
                "writable" => config.writable.push(PathBuf::from(value)),
                "error-log" => config.error_log = Some(PathBuf::from(value)),
                "master-pid" => config.master = Some(crate::peers::MasterSource::Pid(parse_num(name, value)?)),
                "master-pid-file" => {
                    config.master = Some(crate::peers::MasterSource::PidFile(PathBuf::from(value)));
                }
                "cgroup" => {
                    cgroupfs::check_path_syntax(value)?;
                    config.cgroup_path = Some(value.clone());
                }
                "resource-root" => {
                    cgroupfs::check_path_syntax(value)?;
                    config.resource_root = Some(value.clone());
                }
                "resource-class" => {
                    let args: Vec<&str> = value.split_whitespace().collect();
                    let spec = resource_policy::class::ClassSpec::parse(&args)
                        .map_err(|e| format!("--resource-class \"{value}\": {e}"))?;
                    config.resource_classes.push(spec);
                }
                "tenant-class" => config.tenant_class = Some(value.clone()),
                _ => return Err(format!("unknown option --{name}")),
            }
        }
        if config.dir.as_os_str().is_empty() || !config.dir.is_absolute() {
            return Err(String::from("--dir must be an absolute path"));
        }
        if config.worker_uid == u32::MAX || config.worker_gid == u32::MAX {
            return Err(String::from("--worker-uid and --worker-gid are required"));
        }
        if config.master.is_none() {
            return Err(String::from("--master-pid or --master-pid-file is required"));
        }
        if config.max_runners == 0 || config.max_per_owner == 0 {
            return Err(String::from("--max-runners and --max-per-owner must be at least 1"));
        }
        if let Some(name) = &config.tenant_class {
            if config.resource_root.is_none() || config.class(name).is_none() {
                return Err(format!(
                    "--tenant-class \"{name}\" needs --resource-root and a --resource-class of that name"
                ));
            }
        }
        config.self_exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        Ok(config)
    }

    /// The declared class `name`.
    pub fn class(&self, name: &str) -> Option<&resource_policy::class::ClassSpec> {
        self.resource_classes.iter().find(|c| c.name == name)
    }

    /// Where the supervisor and runner sockets are.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sockets")
    }

    /// Where owners' private temporary directories are.
    pub fn tmp_root(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// This generation's name: the last component of `dir`.
    pub fn generation(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The private temporary directory of `uid`.
    pub fn tmp_dir(&self, uid: u32) -> PathBuf {
        self.tmp_root().join(uid.to_string())
    }

    /// The program a runner of `kind` executes, if the kind is configured.
    pub fn program(&self, kind: &str) -> Option<RunnerProgram> {
        match kind {
            "cgi" => Some(RunnerProgram::Cgi),
            "ruby" => Some(RunnerProgram::Ruby),
            _ => self.interpreters.iter().find(|(ext, _)| ext == kind).map(|(_, p)| RunnerProgram::FastCgi(p.clone())),
        }
    }
}

/// What a runner execs once it is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerProgram {
    /// A FastCGI interpreter started on the listening socket (php-cgi).
    FastCgi(PathBuf),
    /// This program's CGI runner: forks and execs each requested program.
    Cgi,
    /// This program's Ruby runner: one mruby VM for the runner's life.
    Ruby,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let c = Config::from_args(&args(&[
            "--dir",
            "/run/t/1",
            "--worker-uid",
            "65534",
            "--worker-gid",
            "65534",
            "--master-pid",
            "1234",
            "--interpreter",
            ".php=/usr/bin/php-cgi",
            "--writable",
            "tmp",
            "--queue-timeout-ms",
            "250",
        ]))
        .unwrap();
        assert_eq!(c.worker_uid, 65534);
        assert_eq!(c.program(".php"), Some(RunnerProgram::FastCgi(PathBuf::from("/usr/bin/php-cgi"))));
        assert_eq!(c.program("cgi"), Some(RunnerProgram::Cgi));
        assert_eq!(c.program("ruby"), Some(RunnerProgram::Ruby));
        assert_eq!(c.program(".py"), None);
        assert_eq!(c.queue_timeout, Duration::from_millis(250));
    }

    #[test]
    fn refuses_bad_options() {
        assert!(Config::from_args(&args(&["--dir", "rel", "--worker-uid", "1", "--worker-gid", "1"])).is_err());
        assert!(Config::from_args(&args(&["--dir", "/a"])).is_err());
        assert!(Config::from_args(&args(&["--dir", "/a", "--worker-uid", "1", "--worker-gid", "1"])).is_err());
        assert!(Config::from_args(&args(&["--dir", "/a", "--worker-uid", "x", "--worker-gid", "1"])).is_err());
        assert!(Config::from_args(&args(&["--bogus", "1"])).is_err());
    }
}
