//! The result tree: [`Check`]s with a [`Status`], a detail line and a one-line fix, and its two
//! renderings (a readable indented tree, and JSON).

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but deserves attention (a repaired PEM paste, a certificate in its last third).
    Warn,
    /// Broken: the agent or server will fail because of this.
    Fail,
    /// Not run, because something it needs failed first (the detail says what).
    Skip,
}

impl Status {
    /// The lower-case name used in both renderings.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    /// How bad it is, for "the worst child decides": skip < ok < warn < fail.
    fn rank(self) -> u8 {
        match self {
            Status::Skip => 0,
            Status::Ok => 1,
            Status::Warn => 2,
            Status::Fail => 3,
        }
    }
}

/// One check, or a group of checks (then `children` is not empty and `status` is the worst of
/// them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable, dotted identifier (`agent.mtls.key_matches_cert`), for scripts and tests.
    pub id: String,
    /// What is checked, in a few words (often the config field).
    pub title: String,
    /// The outcome.
    pub status: Status,
    /// What was found: the fact for `ok`, the problem for `warn`/`fail`, the reason for `skip`.
    /// Never key material, a token or a secret value.
    pub detail: String,
    /// One line saying what to do (for `warn` and `fail`).
    pub fix: Option<String>,
    /// Sub-checks, in the order they ran.
    pub children: Vec<Check>,
}

impl Check {
    fn leaf(id: &str, title: &str, status: Status, detail: String, fix: Option<String>) -> Check {
        Check {
            id: id.to_owned(),
            title: title.to_owned(),
            status,
            detail,
            fix,
            children: Vec::new(),
        }
    }

    /// A passed check.
    pub fn ok(id: &str, title: &str, detail: impl Into<String>) -> Check {
        Self::leaf(id, title, Status::Ok, detail.into(), None)
    }

    /// A warning with its fix.
    pub fn warn(id: &str, title: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Self::leaf(id, title, Status::Warn, detail.into(), Some(fix.into()))
    }

    /// A failure with its fix.
    pub fn fail(id: &str, title: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Self::leaf(id, title, Status::Fail, detail.into(), Some(fix.into()))
    }

    /// A check that did not run, and why.
    pub fn skip(id: &str, title: &str, reason: impl Into<String>) -> Check {
        Self::leaf(id, title, Status::Skip, reason.into(), None)
    }

    /// A group: its status is the worst of its children's (all skipped: skip), its detail a
    /// count of what went wrong.
    pub fn group(id: &str, title: &str, children: Vec<Check>) -> Check {
        let status = children
            .iter()
            .map(|c| c.status)
            .max_by_key(|s| s.rank())
            .unwrap_or(Status::Skip);
        let count = |s: Status| children.iter().filter(|c| c.status == s).count();
        let detail = match status {
            Status::Fail => plural(count(Status::Fail), "check failed", "checks failed"),
            Status::Warn => plural(count(Status::Warn), "warning", "warnings"),
            Status::Ok if count(Status::Skip) > 0 => format!(
                "no problem found; {} not checked",
                plural(count(Status::Skip), "check", "checks")
            ),
            Status::Ok => "all good".to_owned(),
            Status::Skip => children
                .first()
                .map(|c| c.detail.clone())
                .unwrap_or_else(|| "nothing to check".to_owned()),
        };
        Check {
            id: id.to_owned(),
            title: title.to_owned(),
            status,
            detail,
            fix: None,
            children,
        }
    }

    /// This check and every check below it, depth first.
    pub fn walk(&self) -> Vec<&Check> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }

    /// The check with this id, here or below.
    pub fn find(&self, id: &str) -> Option<&Check> {
        self.walk().into_iter().find(|c| c.id == id)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Everything one `keep doctor` run found: one top-level check per config given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The top-level groups (agent config, server config).
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the exit status is 1 then).
    pub fn failed(&self) -> bool {
        self.leaves().iter().any(|c| c.status == Status::Fail)
    }

    /// The checks that have no children, i.e. the ones actually run (or skipped).
    pub fn leaves(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .flat_map(Check::walk)
            .filter(|c| c.children.is_empty())
            .collect()
    }

    /// `12 ok, 1 warning, 2 failed, 4 skipped`.
    pub fn summary(&self) -> String {
        let leaves = self.leaves();
        let n = |s: Status| leaves.iter().filter(|c| c.status == s).count();
        format!(
            "{} ok, {}, {} failed, {} skipped",
            n(Status::Ok),
            plural(n(Status::Warn), "warning", "warnings"),
            n(Status::Fail),
            n(Status::Skip)
        )
    }

    /// The indented tree: one line per check (`[ok]`, `[warn]`, `[fail]`, `[skip]`, then the
    /// title and the detail), the fix on the line below it, and a summary. `color` adds ANSI
    /// colors to the markers (only for a terminal).
    pub fn render_text(&self, color: bool) -> String {
        let mut out = String::new();
        for c in &self.checks {
            render_check(&mut out, c, 0, color);
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    /// A JSON array of the top-level checks, each `{id, title, status, detail, fix,
    /// children}`.
    pub fn render_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.checks).unwrap_or_else(|_| "[]".into());
        s.push('\n');
        s
    }
}

fn render_check(out: &mut String, c: &Check, depth: usize, color: bool) {
    let indent = "  ".repeat(depth);
    let marker = format!("[{}]", c.status.as_str());
    let painted = if color {
        let code = match c.status {
            Status::Ok => "32",
            Status::Warn => "33",
            Status::Fail => "1;31",
            Status::Skip => "2",
        };
        format!("\x1b[{code}m{marker}\x1b[0m")
    } else {
        marker.clone()
    };
    let pad = " ".repeat(7 - marker.len());
    let _ = writeln!(out, "{indent}{painted}{pad}{}: {}", c.title, c.detail);
    if let Some(fix) = &c.fix {
        let _ = writeln!(out, "{indent}       fix: {fix}");
    }
    for child in &c.children {
        render_check(out, child, depth + 1, color);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            checks: vec![Check::group(
                "agent",
                "agent config a.yaml",
                vec![
                    Check::ok("agent.config", "config", "parses"),
                    Check::group(
                        "agent.files",
                        "files",
                        vec![Check::fail(
                            "agent.files.ca",
                            "ca_cert_file",
                            "/x/roots.crt does not exist",
                            "did you mean /x/root.crt?",
                        )],
                    ),
                    Check::skip("agent.login", "login", "the CA file cannot be read"),
                ],
            )],
        }
    }

    #[test]
    fn groups_take_the_worst_status_and_skips_do_not_count_as_ok() {
        let r = sample();
        assert_eq!(r.checks[0].status, Status::Fail);
        assert!(r.failed());
        let g = Check::group("g", "g", vec![Check::skip("a", "a", "because")]);
        assert_eq!((g.status, g.detail.as_str()), (Status::Skip, "because"));
        let g = Check::group(
            "g",
            "g",
            vec![Check::skip("a", "a", "x"), Check::ok("b", "b", "y")],
        );
        assert_eq!(g.status, Status::Ok);
        assert_eq!(r.summary(), "1 ok, 0 warnings, 1 failed, 1 skipped");
    }

    #[test]
    fn text_is_an_indented_tree_with_the_fix_below() {
        let text = sample().render_text(false);
        let want = "\
[fail] agent config a.yaml: 1 check failed
  [ok]   config: parses
  [fail] files: 1 check failed
    [fail] ca_cert_file: /x/roots.crt does not exist
           fix: did you mean /x/root.crt?
  [skip] login: the CA file cannot be read
";
        assert!(text.starts_with(want), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(
            sample()
                .render_text(true)
                .contains("\x1b[1;31m[fail]\x1b[0m")
        );
    }

    #[test]
    fn json_is_an_array_of_nested_checks() {
        let v: serde_json::Value = serde_json::from_str(&sample().render_json()).unwrap();
        assert_eq!(v[0]["status"], "fail");
        let files = &v[0]["children"][1];
        assert_eq!(files["id"], "agent.files");
        assert_eq!(files["children"][0]["fix"], "did you mean /x/root.crt?");
        assert_eq!(v[0]["children"][0]["fix"], serde_json::Value::Null);
    }
}
