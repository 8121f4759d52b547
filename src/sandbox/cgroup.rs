//! The kernel's own accounting of one step: its CPU time (user + system, every process) and its
//! peak memory, read from a cgroup of ours when the step has ended.
//!
//! Each step's container is started with `--cgroup-parent` set to a fresh parent cgroup of its own
//! (`/takehome/<job><n>` with the cgroupfs driver, `takehome-<job><n>.slice` with systemd). The
//! container's own cgroup goes away when it stops, but the kernel charges CPU time and memory to
//! every ancestor as it happens, so the parent keeps the step's totals: `cpuacct.usage` and
//! `memory.max_usage_in_bytes` on cgroup v1, `cpu.stat`'s `usage_usec` and `memory.peak` on v2.
//! Exact for a step of 50 ms as for one of an hour, and out of the candidate's reach: nothing the
//! step prints or writes feeds these numbers (its container sees no host cgroup files it could
//! write). Where the files cannot be read (no cgroupfs, no permission), the caller falls back to
//! the engine's sampled stats and says so in the report.

use std::path::{Path, PathBuf};

/// Where the cgroups live and how the engine names a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub version: u8,
    pub systemd: bool,
}

/// A step parent younger than this is never swept (its job may have started after the sweep
/// listed the live ones).
pub const SWEEP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The letters and digits of a job id: how it appears in a cgroup's name.
fn alphanumeric(job_id: &str) -> String {
    job_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// What a finished step cost, as the kernel counted it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_nanos: u64,
    pub peak_bytes: Option<u64>,
}

impl Layout {
    /// From the engine's `CgroupVersion` ("1" or "2") and `CgroupDriver` ("cgroupfs" or "systemd").
    pub fn from_engine(version: Option<&str>, driver: Option<&str>) -> Layout {
        Layout { root: PathBuf::from("/sys/fs/cgroup"), version: if version == Some("2") { 2 } else { 1 }, systemd: driver == Some("systemd") }
    }

    /// The parent cgroup of one step, named from a job id and a step number (letters and digits only).
    pub fn step(&self, job_id: &str, n: usize) -> StepCgroup {
        let name = format!("{}s{n}", alphanumeric(job_id));
        let (parent, relative) = if self.systemd {
            (format!("takehome-{name}.slice"), PathBuf::from("takehome.slice").join(format!("takehome-{name}.slice")))
        } else {
            (format!("/takehome/{name}"), PathBuf::from("takehome").join(&name))
        };
        StepCgroup { layout: self.clone(), parent, relative }
    }

    /// Removes the empty step parents left under `takehome/` (by a process that died between a
    /// step and its clean-up), except those of the jobs in `live` (whose containers still exist:
    /// a step that has just ended is read before its container goes) and those made in the last
    /// [`SWEEP_MIN_AGE`] (a job that started after its caller listed the live ones). Running
    /// steps' parents hold a container's cgroup and refuse to go.
    pub fn sweep(&self, live: &[String]) {
        let prefixes: Vec<String> = live.iter().map(|job| format!("{}s", alphanumeric(job))).collect();
        let is_live = |name: &str| {
            prefixes.iter().any(|prefix| name.strip_prefix(prefix.as_str()).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        };
        for dir in self.controller_dirs(Path::new(if self.systemd { "takehome.slice" } else { "takehome" })) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("takehome-").and_then(|n| n.strip_suffix(".slice")).unwrap_or(&name);
                let young = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_none_or(|age| age < SWEEP_MIN_AGE);
                if entry.file_type().is_ok_and(|t| t.is_dir()) && !young && !is_live(step) {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    }

    /// `relative` in every hierarchy: each controller's on v1, the one tree on v2.
    fn controller_dirs(&self, relative: &Path) -> Vec<PathBuf> {
        if self.version == 2 {
            return vec![self.root.join(relative)];
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path().join(relative)).filter(|p| p.is_dir()).collect()
    }
}

/// One step's parent cgroup.
#[derive(Debug, Clone)]
pub struct StepCgroup {
    layout: Layout,
    parent: String,
    relative: PathBuf,
}

/// Why a step's totals cannot be read from its cgroup.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{}: {}", .0.display(), .1)]
    Content(PathBuf, &'static str),
}

impl StepCgroup {
    /// What the engine takes as `CgroupParent`.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The step's totals; call after its container has stopped.
    pub fn read(&self) -> Result<Usage, ReadError> {
        let read = |path: PathBuf| std::fs::read_to_string(&path).map_err(|e| ReadError::Io(path, e));
        if self.layout.version == 2 {
            let dir = self.layout.root.join(&self.relative);
            let stat = read(dir.join("cpu.stat"))?;
            let micros: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ReadError::Content(dir.join("cpu.stat"), "no usage_usec"))?;
            // memory.peak needs Linux 5.19; older kernels have no peak to give.
            let peak = read(dir.join("memory.peak")).ok().and_then(|v| v.trim().parse().ok());
            return Ok(Usage { cpu_nanos: micros * 1000, peak_bytes: peak });
        }
        let cpu_path = self.layout.root.join("cpuacct").join(&self.relative).join("cpuacct.usage");
        let cpu_nanos = read(cpu_path.clone())?.trim().parse().map_err(|_| ReadError::Content(cpu_path, "not a number"))?;
        let peak_path = self.layout.root.join("memory").join(&self.relative).join("memory.max_usage_in_bytes");
        let peak_bytes = Some(read(peak_path.clone())?.trim().parse().map_err(|_| ReadError::Content(peak_path, "not a number"))?);
        Ok(Usage { cpu_nanos, peak_bytes })
    }

    /// Removes the parent in every hierarchy (it is empty once its container has gone). systemd
    /// slices are left to systemd, which stops an empty transient slice itself.
    pub fn remove(&self) {
        if self.layout.systemd {
            return;
        }
        for dir in self.layout.controller_dirs(&self.relative) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_paths() {
        let v1 = Layout::from_engine(Some("1"), Some("cgroupfs"));
        let step = v1.step("ab12-cd", 3);
        assert_eq!(step.parent(), "/takehome/ab12cds3");
        let v2 = Layout::from_engine(Some("2"), Some("systemd"));
        let step = v2.step("ab12", 0);
        assert_eq!(step.parent(), "takehome-ab12s0.slice");
        assert_eq!(step.relative, PathBuf::from("takehome.slice/takehome-ab12s0.slice"));
    }

    #[test]
    fn reads_v2_files() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout { root: root.path().to_path_buf(), version: 2, systemd: false };
        let step = layout.step("j", 1);
        let dir = root.path().join("takehome/js1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n").unwrap();
        std::fs::write(dir.join("memory.peak"), "209715200\n").unwrap();
        assert_eq!(step.read().unwrap(), Usage { cpu_nanos: 1_500_000_000, peak_bytes: Some(200 << 20) });
        std::fs::remove_file(dir.join("cpu.stat")).unwrap();
        std::fs::remove_file(dir.join("memory.peak")).unwrap();
        step.remove();
        assert!(!dir.exists());
    }

    #[test]
    fn the_sweep_keeps_live_jobs_and_young_parents() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout { root: root.path().to_path_buf(), version: 2, systemd: false };
        let old = std::time::SystemTime::now() - SWEEP_MIN_AGE * 2;
        let make = |name: &str, aged: bool| {
            let dir = root.path().join("takehome").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if aged {
                std::fs::File::open(&dir).unwrap().set_modified(old).unwrap();
            }
            dir
        };
        let (gone, live, young, other) = (make("deads0", true), make("s12abcs1", true), make("news0", false), make("s12abcds0", true));
        layout.sweep(&["s12-abc".to_string()]);
        assert!(!gone.exists(), "an old parent of no live job goes");
        assert!(live.exists(), "a live job's parent stays");
        assert!(young.exists(), "a parent made in the last minute stays");
        assert!(!other.exists(), "a job whose id only starts like a live one's is not live");
    }
}
