//! Our own seccomp profile for steps (x86_64): every system call of the kernel's table is allowed
//! except those a step never needs — the ones that need privileges we never grant (mounts,
//! modules, clocks, swap, reboot, namespaces), and those that reach into other processes or the
//! kernel's internals (`ptrace`, `process_vm_*`, `kcmp`, `bpf`, `perf_event_open`, `userfaultfd`,
//! key rings, `io_uring`). Denied calls fail with EPERM; a call the table does not know (a newer
//! kernel's) fails with ENOSYS, so that libc falls back to an older one. `clone` may not create
//! namespaces, and `clone3` (whose flags a filter cannot read) answers ENOSYS, so glibc uses
//! `clone`. Only x86_64 calls pass: a 32-bit call (`int 0x80`) is refused.
//!
//! Docker's own default profile is an allow-list of the same kind, but it allows `ptrace`,
//! `process_vm_readv` and others a step has no use for, and a profile replaces it rather than
//! extending it: so this one is complete on its own. On other architectures steps keep Docker's.

use std::sync::OnceLock;

/// The x86_64 system call table, one name a line (generated from the kernel's uapi header).
const TABLE: &str = include_str!("syscalls_x86_64.txt");

/// Never needed by a step: denied with EPERM.
pub const DENIED: &[&str] = &[
    // Other processes and the kernel's insides.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",
    "add_key",
    "request_key",
    "keyctl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "pidfd_getfd",
    "process_madvise",
    // Namespaces, mounts and file handles.
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "fanotify_init",
    // The machine's own state.
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "vhangup",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "afs_syscall",
    "tuxcall",
    "security",
    "vserver",
    "putpmsg",
    "getpmsg",
    // Memory placement across NUMA nodes (Docker denies these without CAP_SYS_NICE too).
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    "set_mempolicy_home_node",
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
const CLONE_NAMESPACES: u64 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The names of the table that a step may call (everything but [`DENIED`] and the two with
/// rules of their own).
pub fn allowed() -> Vec<&'static str> {
    TABLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|name| !DENIED.contains(name) && *name != "clone" && *name != "clone3" && *name != "personality")
        .collect()
}

/// The profile as the engine takes it (`--security-opt seccomp=<json>`), or `None` where it
/// does not apply (not x86_64).
pub fn profile() -> Option<&'static str> {
    static PROFILE: OnceLock<Option<String>> = OnceLock::new();
    PROFILE
        .get_or_init(|| {
            if std::env::consts::ARCH != "x86_64" {
                return None;
            }
            let rule = |names: &[&str], action: &str, errno: Option<u32>, args: serde_json::Value| {
                let mut rule = serde_json::json!({ "names": names, "action": action, "args": args });
                if let Some(errno) = errno {
                    rule["errnoRet"] = errno.into();
                }
                rule
            };
            let mut syscalls = vec![
                rule(&allowed(), "SCMP_ACT_ALLOW", None, serde_json::json!([])),
                // clone without namespace flags.
                rule(
                    &["clone"],
                    "SCMP_ACT_ALLOW",
                    None,
                    serde_json::json!([{ "index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }]),
                ),
                rule(&["clone3"], "SCMP_ACT_ERRNO", Some(ENOSYS), serde_json::json!([])),
            ];
            // personality: asking (0xffffffff) and the plain Linux personalities only.
            for persona in [0x0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
                syscalls.push(rule(&["personality"], "SCMP_ACT_ALLOW", None, serde_json::json!([{ "index": 0, "value": persona, "op": "SCMP_CMP_EQ" }])));
            }
            syscalls.push(rule(DENIED, "SCMP_ACT_ERRNO", Some(EPERM), serde_json::json!([])));
            let profile = serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": ENOSYS,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": syscalls,
            });
            Some(profile.to_string())
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_allows_the_table_but_the_denied() {
        let allowed = allowed();
        assert!(allowed.len() > 250, "{}", allowed.len());
        for needed in ["read", "write", "openat", "mmap", "futex", "execve", "wait4", "statx", "getrandom", "rseq", "epoll_pwait2"] {
            assert!(allowed.contains(&needed), "{needed} must be allowed");
        }
        for denied in ["ptrace", "mount", "unshare", "bpf", "keyctl"] {
            assert!(!allowed.contains(&denied), "{denied} must not be allowed");
        }
        // Every denied name is a real call of the table (a typo would deny nothing).
        let table: Vec<&str> = TABLE.lines().collect();
        let unknown: Vec<&&str> = DENIED.iter().filter(|name| !table.contains(name)).collect();
        assert!(unknown.is_empty(), "not in the table: {unknown:?}");
        if std::env::consts::ARCH == "x86_64" {
            let profile: serde_json::Value = serde_json::from_str(profile().unwrap()).unwrap();
            assert_eq!(profile["defaultErrnoRet"], 38);
        }
    }
}
