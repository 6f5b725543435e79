//! `resource_checker cpu_user=<ms> cpu_sys=<ms> memory=<size> [log=<path>];`:
//! which requests are heavy enough to be logged (mod_resource_checker).

use crate::units::{parse_ms, parse_size};

/// What one request cost, as the kernel counted it for the runner that served it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub cpu_user_ms: u64,
    pub cpu_sys_ms: u64,
    pub mem_peak_kb: u64,
}

/// The thresholds (at least one); a request over any of them is logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckerSpec {
    pub cpu_user_ms: Option<u64>,
    pub cpu_sys_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// `log=`: the file for the JSON lines, as written (the module resolves
    /// it against nginx's prefix); `None`: the error log.
    pub log: Option<String>,
}

impl CheckerSpec {
    pub fn parse(params: &[&str]) -> Result<CheckerSpec, String> {
        let mut spec = CheckerSpec::default();
        for param in params {
            let (key, value) = param.split_once('=').ok_or_else(|| format!("invalid parameter \"{param}\""))?;
            let duplicate = match key {
                "cpu_user" => spec.cpu_user_ms.is_some(),
                "cpu_sys" => spec.cpu_sys_ms.is_some(),
                "memory" => spec.memory_bytes.is_some(),
                "log" => spec.log.is_some(),
                _ => {
                    return Err(format!(
                        "unknown parameter \"{param}\", the parameters are cpu_user=, cpu_sys=, memory= and log="
                    ))
                }
            };
            if duplicate {
                return Err(format!("parameter \"{key}=\" is duplicate"));
            }
            match key {
                "cpu_user" | "cpu_sys" => {
                    let ms = parse_ms(value)
                        .ok_or_else(|| format!("invalid value \"{param}\", {key}= is a number of milliseconds"))?;
                    *(if key == "cpu_user" { &mut spec.cpu_user_ms } else { &mut spec.cpu_sys_ms }) = Some(ms);
                }
                "memory" => {
                    let bytes = parse_size(value)
                        .ok_or_else(|| format!("invalid value \"{param}\", memory= is a size (\"64m\")"))?;
                    spec.memory_bytes = Some(bytes);
                }
                _ => {
                    if value.is_empty() || value.chars().any(char::is_control) {
                        return Err(format!("invalid value \"{param}\", log= is a file path"));
                    }
                    spec.log = Some(value.to_string());
                }
            }
        }
        if spec.cpu_user_ms.is_none() && spec.cpu_sys_ms.is_none() && spec.memory_bytes.is_none() {
            return Err(String::from("no threshold: give at least one of cpu_user=, cpu_sys= and memory="));
        }
        Ok(spec)
    }

    /// Whether a request with these figures is logged: it is over at least
    /// one threshold (strictly above: a threshold of 0 logs every request
    /// that used anything).
    pub fn is_over(&self, figures: &Figures) -> bool {
        self.cpu_user_ms.is_some_and(|t| figures.cpu_user_ms > t)
            || self.cpu_sys_ms.is_some_and(|t| figures.cpu_sys_ms > t)
            || self.memory_bytes.is_some_and(|t| figures.mem_peak_kb.saturating_mul(1024) > t)
    }
}

/// One heavy request, as `resource_checker` logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerRecord<'a> {
    /// Seconds since the epoch, with milliseconds.
    pub time_ms: u64,
    pub host: &'a str,
    pub uri: &'a str,
    /// The file the runner ran.
    pub script: &'a str,
    /// The owner's uid (the runner's identity).
    pub owner: u32,
    pub figures: Figures,
    /// The class the request ran in, if any.
    pub class: Option<&'a str>,
}

impl CheckerRecord<'_> {
    /// One JSON line (with its newline): every field, always in this order.
    pub fn json_line(&self) -> String {
        let value = serde_json::json!({
            "time": format!("{}.{:03}", self.time_ms / 1000, self.time_ms % 1000),
            "host": self.host,
            "uri": self.uri,
            "script": self.script,
            "owner": self.owner,
            "cpu_user_ms": self.figures.cpu_user_ms,
            "cpu_sys_ms": self.figures.cpu_sys_ms,
            "mem_peak_kb": self.figures.mem_peak_kb,
            "class": self.class,
        });
        let mut line = value.to_string();
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let spec =
            CheckerSpec::parse(&["cpu_user=200", "cpu_sys=100ms", "memory=64m", "log=logs/heavy.log"]).expect("ok");
        assert_eq!(spec.cpu_user_ms, Some(200));
        assert_eq!(spec.cpu_sys_ms, Some(100));
        assert_eq!(spec.memory_bytes, Some(64 << 20));
        assert_eq!(spec.log.as_deref(), Some("logs/heavy.log"));
        assert_eq!(CheckerSpec::parse(&["memory=1m"]).expect("ok").log, None);
    }

    #[test]
    fn refused_forms() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no threshold"),
            (&["log=/tmp/x"], "no threshold"),
            (&["cpu_user=fast"], "invalid value \"cpu_user=fast\""),
            (&["cpu_sys=-1"], "invalid value \"cpu_sys=-1\""),
            (&["memory=1x"], "invalid value \"memory=1x\""),
            (&["cpu_user=1", "log="], "invalid value \"log=\""),
            (&["cpu_user=1", "cpu_user=2"], "\"cpu_user=\" is duplicate"),
            (&["cpu=1"], "unknown parameter \"cpu=1\""),
            (&["cpu_user"], "invalid parameter \"cpu_user\""),
        ];
        for (args, expected) in cases {
            let error = CheckerSpec::parse(args).expect_err(&format!("{args:?} is refused"));
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn over_any_threshold() {
        let spec = CheckerSpec::parse(&["cpu_user=100", "memory=1m"]).expect("ok");
        let cheap = Figures { cpu_user_ms: 3, cpu_sys_ms: 500, mem_peak_kb: 900 };
        assert!(!spec.is_over(&cheap), "cpu_sys has no threshold here");
        assert!(spec.is_over(&Figures { cpu_user_ms: 101, ..cheap }));
        assert!(!spec.is_over(&Figures { cpu_user_ms: 100, ..cheap }), "at the threshold is not over");
        assert!(spec.is_over(&Figures { mem_peak_kb: 1025, ..cheap }));
        assert!(spec.is_over(&Figures { mem_peak_kb: u64::MAX, ..cheap }), "saturates, no overflow");
    }

    #[test]
    fn json_lines_escape_what_a_client_sends() {
        let record = CheckerRecord {
            time_ms: 1_700_000_000_123,
            host: "a.test",
            uri: "/x\"y\n{z}",
            script: "/srv/a/htdocs/burn.php",
            owner: 1001,
            figures: Figures { cpu_user_ms: 250, cpu_sys_ms: 3, mem_peak_kb: 20480 },
            class: Some("slow"),
        };
        assert_eq!(
            record.json_line(),
            "{\"time\":\"1700000000.123\",\"host\":\"a.test\",\"uri\":\"/x\\\"y\\n{z}\",\"script\":\"/srv/a/htdocs/burn.php\",\"owner\":1001,\"cpu_user_ms\":250,\"cpu_sys_ms\":3,\"mem_peak_kb\":20480,\"class\":\"slow\"}\n"
        );
        let no_class = CheckerRecord { class: None, ..record };
        assert!(no_class.json_line().ends_with(",\"class\":null}\n"));
        assert_eq!(no_class.json_line().lines().count(), 1, "one line, whatever the uri holds");
    }
}
