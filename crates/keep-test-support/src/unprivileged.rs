//! Running commands as an ordinary user, the way OpenClaw runs on real hosts.
//!
//! `.ci/run` creates the user and exports `KEEP_TEST_USER=keep-oc`; tests run as root and
//! switch to that user for each command (`Command::uid`/`gid`, which also drops root's
//! supplementary groups). Without `KEEP_TEST_USER` a test prints SKIP, or fails when
//! `KEEP_REQUIRE_PEERS` is set, so CI cannot pass by skipping.

#![allow(clippy::unwrap_used)] // test infrastructure: a failed step should stop the test loudly

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged test user.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl TestUser {
    /// The user named by `KEEP_TEST_USER`, when this test runs as root (which it needs to
    /// switch users). `None` after printing SKIP otherwise; a failure when `KEEP_REQUIRE_PEERS`
    /// is set.
    pub fn from_env() -> Option<TestUser> {
        let required = std::env::var_os("KEEP_REQUIRE_PEERS").is_some();
        let Some(name) = std::env::var("KEEP_TEST_USER")
            .ok()
            .filter(|n| !n.is_empty())
        else {
            assert!(
                !required,
                "KEEP_REQUIRE_PEERS is set but KEEP_TEST_USER is not: .ci/run creates the unprivileged user keep-oc (useradd --create-home keep-oc) and exports KEEP_TEST_USER=keep-oc"
            );
            eprintln!("SKIP: set KEEP_TEST_USER to an unprivileged user (see .ci/run)");
            return None;
        };
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !root {
            assert!(
                !required,
                "KEEP_TEST_USER={name} needs the tests to run as root (to switch to that user)"
            );
            eprintln!("SKIP: KEEP_TEST_USER={name} needs the tests to run as root");
            return None;
        }
        let out = Command::new("id").arg("-u").arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "KEEP_TEST_USER={name}: no such user; create it: useradd --create-home --shell /bin/bash {name}"
        );
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let out = Command::new("id").arg("-g").arg(&name).output().unwrap();
        let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_ne!(
            uid, 0,
            "KEEP_TEST_USER={name} is root; name an ordinary user"
        );
        Some(TestUser { name, uid, gid })
    }

    /// `program` set up to run as this user, with a clean environment: `HOME` = `home`,
    /// `USER`, `LOGNAME`, and `PATH` = `path_prefix` (if any) before the system directories.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        home: &Path,
        path_prefix: Option<&Path>,
    ) -> Command {
        let mut cmd = Command::new(program);
        let path = match path_prefix {
            Some(p) => format!("{}:/usr/local/bin:/usr/bin:/bin", p.display()),
            None => "/usr/local/bin:/usr/bin:/bin".to_owned(),
        };
        cmd.env_clear()
            .env("HOME", home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("PATH", path)
            .env("TMPDIR", home)
            .current_dir(home)
            .uid(self.uid)
            .gid(self.gid);
        cmd
    }

    /// A fresh temporary directory owned by this user, mode 0700, removed on drop.
    pub fn tempdir(&self) -> tempfile::TempDir {
        let dir = crate::tempdir();
        self.give(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// Makes this user the owner of `path`.
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// Makes this user the owner of `path` and everything below it.
    pub fn give_tree(&self, path: &Path) {
        self.give(path);
        if path.is_dir() && !path.is_symlink() {
            for e in std::fs::read_dir(path).unwrap() {
                self.give_tree(&e.unwrap().path());
            }
        }
    }

    /// Copies `src` to `dir/name`, owned by this user, mode 0600; returns the new path.
    pub fn copy_private(&self, src: &Path, dir: &Path, name: &str) -> PathBuf {
        let dst = dir.join(name);
        std::fs::copy(src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.give(&dst);
        dst
    }
}
