//! The shell scripts behind the README's two commands. `scripts/ensure-rust` runs for real under
//! bash on a stub machine: a temp directory first on PATH holding `cargo`, `apt-get`, `apt-cache`,
//! `dpkg-query`, `rustup`, `sudo` and `id` stubs, a temp HOME, and otherwise only symlinks to
//! `/usr/bin` and `/bin` without any Rust toolchain or apt, so neither this machine's Rust (rustup's
//! or Debian's) nor its apt is ever used. The stubs
//! behave as the real tools do where the script depends on it: installing `cargo-web` puts a
//! cargo 1.96.0 on PATH, `rust-web-clippy` / `rustfmt-web` or `rustup component add` make
//! `cargo clippy` / `cargo fmt` run, and `sudo` drops the environment. Every script passes
//! shellcheck.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the stub machine's real tools (bash, coreutils, sed, env, readlink) come from.
const SYSTEM_PATH: [&str; 2] = ["/usr/bin", "/bin"];

/// Debian 12's bookworm-security candidate, and bookworm main's (too old for rust-version 1.87).
const SECURITY_CANDIDATE: &str = "1.96.0+dfsg1-1~deb12u2";
const MAIN_CANDIDATE: &str = "1.85.0+dfsg3-1~deb12u3";

/// `cargo --version` of a rustup toolchain, and of Debian 12's own `cargo` package.
const RUSTUP_CARGO: &str = "cargo 1.95.0 (f2d3ce0bd 2026-03-21)";
const DEBIAN_CARGO: &str = "cargo 0.66.0";

/// A cargo stub: `--version` prints the line in `$D/version`; `clippy` and `fmt` run only once
/// their marker exists (installed by the apt-get or rustup stub).
const CARGO: &str = r#"
case "$1" in
  --version) cat "$D/version" ;;
  clippy) [ -e "$D/has-clippy" ] || { echo "error: no such command: \`clippy\`" >&2; exit 101; }; echo "clippy 0.1.96" ;;
  fmt) [ -e "$D/has-fmt" ] || { echo "error: no such command: \`fmt\`" >&2; exit 101; }; echo "rustfmt 1.9.0" ;;
  *) echo "cargo stub: unexpected $*" >&2; exit 101 ;;
esac
"#;

/// apt-get: logs its arguments; refuses to run interactively (sudo drops an exported
/// DEBIAN_FRONTEND); `install` of a package does what installing it would.
const APT_GET: &str = r#"
echo "apt-get $*" >>"$D/log"
[ "${DEBIAN_FRONTEND:-}" = noninteractive ] || { echo "apt-get ran without DEBIAN_FRONTEND=noninteractive" >>"$D/log"; exit 100; }
[ "$1" = install ] || exit 0
for p in "$@"; do
  case "$p" in
    cargo-web) echo "cargo 1.96.0" >"$D/version"; cp "$D/cargo.pkg" "$D/bin/cargo"; touch "$D/cargo-web" ;;
    rust-web-clippy) touch "$D/has-clippy" ;;
    rustfmt-web) touch "$D/has-fmt" ;;
  esac
done
"#;

/// apt-cache: `policy cargo-web` answers with the candidate in `$D/candidate`, as apt does; nothing
/// for a package apt does not know.
const APT_CACHE: &str = r#"
echo "apt-cache $*" >>"$D/log"
[ "$1" = policy ] && [ -e "$D/candidate" ] || exit 0
c=$(cat "$D/candidate")
printf '%s:\n  Installed: (none)\n  Candidate: %s\n  Version table:\n     %s 500\n        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n' "$2" "$c" "$c"
"#;

/// dpkg-query -S FILE: cargo-web owns every cargo once installed, nothing before.
const DPKG_QUERY: &str = r#"
echo "dpkg-query $*" >>"$D/log"
if [ "$1" = -S ] && [ -e "$D/cargo-web" ]; then echo "cargo-web: $2"; exit 0; fi
echo "dpkg-query: no path found matching pattern $2" >&2
exit 1
"#;

/// rustup: `component add` makes the named components run.
const RUSTUP: &str = r#"
echo "rustup $*" >>"$D/log"
[ "$1 $2" = "component add" ] || exit 0
shift 2
for c in "$@"; do
  case "$c" in clippy) touch "$D/has-clippy" ;; rustfmt) touch "$D/has-fmt" ;; esac
done
"#;

/// sudo: logs, then runs the command with an environment reset as the real one does.
const SUDO: &str = r#"
echo "sudo $*" >>"$D/log"
exec env -i PATH="$PATH" "$@"
"#;

/// A machine for `scripts/ensure-rust` with nothing on it but stubs.
struct Machine {
    dir: tempfile::TempDir,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    log: String,
}

impl Run {
    /// What apt-get was asked to do, in order.
    fn apt_get(&self) -> Vec<&str> {
        self.log
            .lines()
            .filter_map(|l| l.strip_prefix("apt-get "))
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stderr\n{}--- stdout\n{}--- log\n{}",
            self.code, self.stderr, self.stdout, self.log
        )
    }
}

impl Machine {
    /// A non-root user with apt (whose cargo-web candidate is set by `candidate`) and no cargo.
    fn new() -> Self {
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(m.bin()).unwrap();
        std::fs::create_dir(m.home()).unwrap();
        m.stub(&m.dir.path().join("cargo.pkg"), CARGO);
        for (name, body) in [
            ("apt-get", APT_GET),
            ("apt-cache", APT_CACHE),
            ("dpkg-query", DPKG_QUERY),
            ("sudo", SUDO),
            ("id", "[ \"$1\" = -u ] && echo 1000"),
        ] {
            m.stub(&m.bin().join(name), body);
        }
        m
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn stub(&self, path: &Path, body: &str) {
        let text = format!("#!/bin/sh\nD='{}'\n{body}", self.dir.path().display());
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The host's `/usr/bin` and `/bin` as symlinks, minus any Rust toolchain and the tools the
    /// stubs stand in for: a machine whose system Rust (Debian's cargo in /usr/bin, say) can
    /// never leak into a test.
    fn system(&self) -> PathBuf {
        let dir = self.dir.path().join("system");
        if dir.exists() {
            return dir;
        }
        std::fs::create_dir(&dir).unwrap();
        let stubbed = |name: &str| {
            name.starts_with("cargo")
                || name.starts_with("rust")
                || ["apt-get", "apt-cache", "dpkg-query", "sudo"].contains(&name)
        };
        for system in SYSTEM_PATH {
            for entry in std::fs::read_dir(system).unwrap().flatten() {
                let name = entry.file_name();
                let link = dir.join(&name);
                if !stubbed(&name.to_string_lossy()) && !link.exists() {
                    std::os::unix::fs::symlink(entry.path(), link).unwrap();
                }
            }
        }
        dir
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), format!("{text}\n")).unwrap();
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    /// A cargo on PATH whose `--version` prints `line`.
    fn cargo(self, line: &str) -> Self {
        self.write("version", line);
        std::fs::copy(self.dir.path().join("cargo.pkg"), self.bin().join("cargo")).unwrap();
        self
    }

    /// A rustup install in HOME (cargo and rustup in ~/.cargo/bin), not on PATH.
    fn rustup_cargo(self, line: &str) -> Self {
        let dir = self.home().join(".cargo/bin");
        std::fs::create_dir_all(&dir).unwrap();
        self.write("version", line);
        std::fs::copy(self.dir.path().join("cargo.pkg"), dir.join("cargo")).unwrap();
        self.stub(&dir.join("rustup"), RUSTUP);
        self
    }

    /// The cargo present is Debian's cargo-web (dpkg-query says so).
    fn owned_by_cargo_web(self) -> Self {
        self.touch("cargo-web");
        self
    }

    fn candidate(self, version: &str) -> Self {
        self.write("candidate", version);
        self
    }

    fn with_dev_tools(self) -> Self {
        self.touch("has-clippy");
        self.touch("has-fmt");
        self
    }

    fn root(self) -> Self {
        self.stub(&self.bin().join("id"), "[ \"$1\" = -u ] && echo 0");
        self
    }

    fn ensure_rust(&self, args: &[&str]) -> Run {
        let path = format!("{}:{}", self.bin().display(), self.system().display());
        let _lock = crate::shared_lock();
        let out = Command::new("bash")
            .arg(repo().join("scripts/ensure-rust"))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .output()
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            log: std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default(),
        }
    }
}

const INSTALL: &str = "install -y -qq rustc-web cargo-web";
const INSTALL_DEV: &str = "install -y -qq rustc-web cargo-web rust-web-clippy rustfmt-web";

#[test]
fn a_new_enough_cargo_is_used_as_is() {
    let m = Machine::new()
        .cargo(RUSTUP_CARGO)
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&[]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(run.log, "", "nothing asked of apt:\n{}", run.context());
    assert_eq!(run.stdout, "", "ensure-rust prints nothing on stdout");
}

#[test]
fn an_old_debian_cargo_is_replaced_by_cargo_web() {
    for old in [DEBIAN_CARGO, "cargo 1.63.0"] {
        let m = Machine::new().cargo(old).candidate(SECURITY_CANDIDATE);
        let run = m.ensure_rust(&[]);
        assert_eq!(run.code, Some(0), "{old}: {}", run.context());
        assert_eq!(
            run.apt_get(),
            ["update -qq", INSTALL],
            "{old}: {}",
            run.context()
        );
        assert!(
            run.log
                .contains("sudo env DEBIAN_FRONTEND=noninteractive apt-get install"),
            "a non-root user installs through sudo:\n{}",
            run.context()
        );
    }
}

#[test]
fn no_cargo_at_all_installs_cargo_web() {
    let m = Machine::new().candidate(SECURITY_CANDIDATE).root();
    let run = m.ensure_rust(&[]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(run.apt_get(), ["update -qq", INSTALL], "{}", run.context());
    assert!(
        !run.log.contains("sudo"),
        "root needs no sudo:\n{}",
        run.context()
    );
    assert!(run.stderr.contains("no cargo on PATH"), "{}", run.context());
}

#[test]
fn a_too_old_candidate_stops_with_the_commands_that_would_install_one() {
    let m = Machine::new().cargo(DEBIAN_CARGO).candidate(MAIN_CANDIDATE);
    let run = m.ensure_rust(&[]);
    assert_eq!(run.code, Some(1), "{}", run.context());
    assert_eq!(
        run.apt_get(),
        ["update -qq"],
        "nothing installed:\n{}",
        run.context()
    );
    for needed in [
        "found cargo 0.66.0 at ",
        &format!("apt offers cargo-web {MAIN_CANDIDATE}"),
        "echo 'deb http://deb.debian.org/debian-security bookworm-security main' \
         | sudo tee /etc/apt/sources.list.d/bookworm-security.list\n",
        "  sudo apt-get update && sudo apt-get install rustc-web cargo-web\n",
        "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y\n",
    ] {
        assert!(
            run.stderr.contains(needed),
            "missing {needed:?}:\n{}",
            run.context()
        );
    }

    // As root, with no candidate at all and --dev: the commands to paste carry no sudo, and the
    // development packages.
    let m = Machine::new().root();
    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(1), "{}", run.context());
    for needed in [
        "found no cargo on PATH",
        "apt offers cargo-web (none)",
        "| tee /etc/apt/sources.list.d/bookworm-security.list\n",
        "  apt-get update && apt-get install rustc-web cargo-web rust-web-clippy rustfmt-web\n",
    ] {
        assert!(
            run.stderr.contains(needed),
            "missing {needed:?}:\n{}",
            run.context()
        );
    }
}

#[test]
fn dev_installs_debian_clippy_and_rustfmt() {
    // Installing the toolchain: all four packages at once.
    let m = Machine::new()
        .cargo(DEBIAN_CARGO)
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(
        run.apt_get(),
        ["update -qq", INSTALL_DEV],
        "{}",
        run.context()
    );

    // cargo-web already installed, clippy and rustfmt not: just those two.
    let m = Machine::new()
        .cargo("cargo 1.96.0")
        .owned_by_cargo_web()
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(
        run.apt_get(),
        ["update -qq", "install -y -qq rust-web-clippy rustfmt-web"],
        "{}",
        run.context()
    );

    // Both present: nothing to do.
    let m = Machine::new()
        .cargo("cargo 1.96.0")
        .owned_by_cargo_web()
        .with_dev_tools();
    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(run.log, "", "{}", run.context());
}

#[test]
fn a_cargo_of_unknown_origin_without_clippy_stops() {
    // Neither rustup's nor a Debian package's: ensure-rust cannot know how to add clippy to it.
    let m = Machine::new()
        .cargo(RUSTUP_CARGO)
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(1), "{}", run.context());
    assert!(run.apt_get().is_empty(), "{}", run.context());
    assert!(
        run.stderr
            .contains("install clippy and rustfmt for that toolchain"),
        "{}",
        run.context()
    );
}

#[test]
fn rustup_in_home_is_found_and_completed_with_rustup() {
    // A fresh shell after rustup's installer: ~/.cargo/bin is not on PATH yet.
    let m = Machine::new()
        .rustup_cargo(RUSTUP_CARGO)
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&[]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(run.log, "", "{}", run.context());

    let run = m.ensure_rust(&["--dev"]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert_eq!(
        run.log,
        "rustup component add clippy rustfmt\n",
        "rustup, never apt:\n{}",
        run.context()
    );
}

#[test]
fn an_old_rustup_toolchain_is_left_to_rustup() {
    // apt's cargo would land in /usr/bin, behind ~/.cargo/bin: the fix is rustup's.
    let m = Machine::new()
        .rustup_cargo("cargo 1.80.1 (376290515 2024-07-16)")
        .candidate(SECURITY_CANDIDATE);
    let run = m.ensure_rust(&[]);
    assert_eq!(run.code, Some(1), "{}", run.context());
    assert_eq!(run.log, "", "{}", run.context());
    let rustup = m.home().join(".cargo/bin/rustup");
    let fix = format!("{0} update stable && {0} default stable", rustup.display());
    assert!(
        run.stderr.contains(&fix),
        "missing {fix:?}:\n{}",
        run.context()
    );
    assert!(
        run.stderr.contains("found cargo 1.80.1 at "),
        "{}",
        run.context()
    );
}

#[test]
fn versions_compare_as_numbers() {
    // (cargo --version, whether it is enough for rust-version 1.87)
    for (line, enough) in [
        ("cargo 1.100.0 (0123abcde 2030-01-01)", true),
        ("cargo 1.87.0", true),
        ("cargo 2.0.0", true),
        ("cargo 1.95.0-nightly (f2d3ce0bd 2026-03-21)", true),
        ("cargo 1.86.9", false),
        ("cargo 1.9.0", false),
        (DEBIAN_CARGO, false),
        ("something else 1.95.0", false),
    ] {
        let m = Machine::new().cargo(line).candidate(SECURITY_CANDIDATE);
        let run = m.ensure_rust(&[]);
        assert_eq!(run.code, Some(0), "{line}: {}", run.context());
        let expected: &[&str] = if enough {
            &[]
        } else {
            &["update -qq", INSTALL]
        };
        assert_eq!(run.apt_get(), expected, "{line}: {}", run.context());
    }

    // apt's candidate, epoch and Debian revision included.
    for (candidate, enough) in [
        ("1:1.100.0+dfsg1-1", true),
        ("1.87.0+dfsg1-1", true),
        ("1.9.0-1", false),
        ("(none)", false),
    ] {
        let m = Machine::new().candidate(candidate);
        let run = m.ensure_rust(&[]);
        let expected: &[&str] = if enough {
            &["update -qq", INSTALL]
        } else {
            &["update -qq"]
        };
        assert_eq!(run.apt_get(), expected, "{candidate}: {}", run.context());
        assert_eq!(
            run.code,
            Some(if enough { 0 } else { 1 }),
            "{candidate}: {}",
            run.context()
        );
    }
}

#[test]
fn unknown_arguments_are_refused() {
    let run = Machine::new().cargo(RUSTUP_CARGO).ensure_rust(&["--deb"]);
    assert_eq!(run.code, Some(2), "{}", run.context());
    assert!(
        run.stderr.contains("usage: ensure-rust [--dev]"),
        "{}",
        run.context()
    );
}

#[test]
fn every_script_passes_shellcheck() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(repo().join(".ci/run"));
    assert!(files.len() >= 6, "{files:?}");
    let _lock = crate::shared_lock();
    let out = Command::new("shellcheck")
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("shellcheck: {e}: run scripts/test (scripts/ensure-test-tools installs it)")
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `scripts/build-image` with a `docker` stub first on PATH (these machines have the Docker client
/// but no engine): logs its arguments; `info` succeeds only when `$D/engine` exists;
/// `image inspect` answers a registry digest for the image it is given.
fn build_image(args: &[&str], engine: bool) -> (Option<i32>, String, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        r#"#!/bin/sh
echo "docker $*" >>"$D/log"
case "$1" in
  info) [ -e "$D/engine" ] ;;
  image) eval "last=\${$#}"; echo "${last%:*}@sha256:0123abcd" ;;
  *) exit 0 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    if engine {
        std::fs::write(dir.path().join("engine"), "").unwrap();
    }
    let mut path = vec![bin];
    path.extend(SYSTEM_PATH.iter().map(PathBuf::from));
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-image"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("D", dir.path())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        log.lines().map(str::to_string).collect(),
    )
}

#[test]
fn build_image_builds_the_cargo_version_and_pushes_only_when_asked() {
    let (code, stdout, stderr, log) = build_image(&[], true);
    assert_eq!(code, Some(0), "{stderr}");
    let image = format!("ghcr.io/gpugate/gpugate:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        log,
        [
            "docker info".to_string(),
            format!("docker build --pull --tag {image} .")
        ]
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("not pushed"), "{stderr}");
}

#[test]
fn build_image_push_prints_the_kustomize_override_pinned_by_digest() {
    let image = "registry.example:5000/me/gpugate:v1";
    let (code, stdout, stderr, log) = build_image(&["--push", image], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        log,
        [
            "docker info".to_string(),
            format!("docker build --pull --tag {image} ."),
            format!("docker push {image}"),
            format!("docker image inspect --format {{{{index .RepoDigests 0}}}} {image}"),
        ]
    );
    // The entry replaces the name the manifests use (tests/it/manifests.rs checks that name).
    assert_eq!(
        stdout,
        "images:\n  - name: ghcr.io/gpugate/gpugate\n    newName: registry.example:5000/me/gpugate\n    digest: sha256:0123abcd\n"
    );
}

#[test]
fn build_image_without_an_engine_or_with_bad_arguments_stops() {
    let (code, _, stderr, log) = build_image(&["--push"], false);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no Docker engine"), "{stderr}");
    assert_eq!(log, ["docker info"]);
    for bad in [&["--tag"][..], &["a", "b"]] {
        let (code, _, stderr, log) = build_image(bad, true);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("usage: build-image"), "{stderr}");
        assert!(log.is_empty(), "{log:?}");
    }
}
