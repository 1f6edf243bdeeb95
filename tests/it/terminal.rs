//! What a person sees: the table on stdout and the progress bars on stderr, through a pipe and
//! through a pseudo-terminal (`script` from util-linux, which runs a command on a new pty and
//! copies everything it writes there to its own stdout).

use std::process::Command;

use crate::gpugate_command;

/// An SGR escape (colour or other character attributes): `ESC [ digits(;digits) m`.
fn has_sgr(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|rest| {
        let Some(params) = rest.strip_prefix('[') else {
            return false;
        };
        let end = params
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(params.len());
        params[end..].starts_with('m')
    })
}

/// What the bars write: the process line (children) and the kernel line (every run).
fn has_progress(text: &str) -> bool {
    text.contains("kernel 1/") || text.contains("process 1/")
}

/// The lines of the kernel table: those drawn with its box characters.
fn table_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
        .collect()
}

/// gpugate (as the tests start it: developer's variables removed, test CPU model, empty
/// directory) with `args`, run by `script` on a fresh pseudo-terminal; `redirect` is shell
/// syntax appended to the command line (e.g. `2>err.txt`). Returns everything the terminal
/// showed and the directory gpugate ran in.
fn on_a_terminal(args: &str, redirect: &str, env: &[(&str, &str)]) -> (String, std::path::PathBuf) {
    let base = gpugate_command();
    let dir = base.get_current_dir().unwrap().to_path_buf();
    let mut cmd = Command::new("script");
    for (name, value) in base.get_envs() {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    // Colour, width and shell are each test's to choose, never the developer's.
    cmd.env_remove("NO_COLOR").env_remove("COLUMNS");
    cmd.env("SHELL", "/bin/sh").envs(env.iter().copied());
    let line = format!(
        "'{}' {args} {redirect}",
        base.get_program().to_str().unwrap()
    );
    let out = cmd
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs: apt-get install bsdutils");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, dir)
}

/// Through a pipe: a complete, aligned table (the quick suite's longest keys whole), no escape
/// of any kind on stdout, and no progress on stderr, only the log line per process.
#[test]
fn a_piped_table_is_whole_aligned_and_plain_and_a_piped_stderr_has_no_progress() {
    let _lock = crate::shared_lock();
    let out = gpugate_command()
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .args([
            "run",
            "--runs",
            "2",
            "--kernel",
            "attention",
            "--kernel",
            "lattice_distance",
            "--max-time",
            "0.2",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains('\x1b'), "escapes in a pipe: {stdout:?}");
    let lines = table_lines(&stdout);
    assert_eq!(lines.len(), 6, "header, rule, two rows, borders: {stdout}");
    let width = lines[0].chars().count();
    let joints = |l: &str| -> Vec<usize> {
        l.chars()
            .enumerate()
            .filter(|(_, c)| "│┆┬┴╪┌┐└┘╞╡".contains(*c))
            .map(|(i, _)| i)
            .collect()
    };
    for line in &lines {
        assert_eq!(line.chars().count(), width, "{line:?}\n{stdout}");
        assert_eq!(joints(line), joints(lines[0]), "{line:?}\n{stdout}");
    }
    for key in [
        "attention[batch=1,causal=0,heads=2,seq=128]",
        "lattice_distance[dim=3,m=256,n=256,size=100]",
    ] {
        assert!(lines.iter().any(|l| l.contains(key)), "{key}: {stdout}");
    }
    // A run has no baseline: no comparison columns; % of peak from the measured ceilings.
    assert!(
        !lines[1].contains("baseline") && lines[1].contains("% peak"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ceilings (% peak): peak_bandwidth["),
        "{stdout}"
    );
    assert!(!has_progress(&stderr) && !stderr.contains('\r'), "{stderr}");
    assert!(!stderr.contains("gpugate-progress/"), "{stderr}");
    assert!(
        stderr.contains("independent run 2/2"),
        "the log line: {stderr}"
    );
}

/// On a terminal: bars for the fresh processes and the kernels, and with `NO_COLOR` no SGR
/// escape at all (neither the table's, the bars' nor the log's); cursor control stays.
#[test]
fn a_terminal_gets_progress_and_no_color_turns_every_colour_off() {
    let _lock = crate::shared_lock();
    let args = "run --runs 2 --kernel copy --max-time 0.2";
    let (text, _) = on_a_terminal(args, "", &[("NO_COLOR", "1")]);
    assert!(text.contains("process 1/2"), "{text:?}");
    assert!(text.contains("process 2/2"), "{text:?}");
    assert!(text.contains("kernel 1/2 copy[n="), "{text:?}");
    assert!(text.contains("elapsed, ETA"), "{text:?}");
    assert!(!has_sgr(&text), "colour under NO_COLOR: {text:?}");
    assert!(
        text.contains("\x1b[2K"),
        "the bars clear their lines: {text:?}"
    );
    assert!(
        !text.contains("gpugate-progress/"),
        "progress lines are the parent's: {text:?}"
    );
    assert_eq!(table_lines(&text).len(), 5, "{text}");

    // In-process (`--runs 1`): the kernel line too, and verdicts in colour without NO_COLOR.
    let (text, _) = on_a_terminal("run --kernel copy --max-time 0.2", "", &[]);
    assert!(text.contains("kernel 1/2 copy[n="), "{text:?}");
    let row = table_lines(&text)
        .into_iter()
        .find(|l| l.contains("copy[n="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(has_sgr(row), "the verdict is coloured: {row:?}");
    // An empty NO_COLOR does not disable colour (no-color.org: only a non-empty value does).
    let (text, _) = on_a_terminal("run --kernel copy --max-time 0.2", "", &[("NO_COLOR", "")]);
    let row = table_lines(&text)
        .into_iter()
        .find(|l| l.contains("copy[n="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(has_sgr(row), "{row:?}");
}

/// No bars with `--quiet`, with JSON logs, or with stderr sent elsewhere (even with stdout on
/// the terminal); with `--format json` the bars stay on stderr and stdout is one JSON document.
#[test]
fn progress_stays_off_when_asked_and_off_stdout() {
    let _lock = crate::shared_lock();
    let run = "run --kernel copy --max-time 0.2";
    for quiet in ["--quiet", "-q", "--log-format json"] {
        let (text, _) = on_a_terminal(&format!("{quiet} {run}"), "", &[]);
        assert!(!has_progress(&text), "{quiet}: {text:?}");
        assert!(text.contains("copy[n="), "{quiet}: {text}");
    }

    let (text, dir) = on_a_terminal(run, "2>err.txt", &[]);
    let err = std::fs::read_to_string(dir.join("err.txt")).unwrap();
    assert!(!has_progress(&err) && !err.contains('\r'), "{err:?}");
    assert!(!has_progress(&text), "{text:?}");
    assert!(
        text.contains("result: "),
        "the table on the terminal: {text}"
    );

    let (text, dir) = on_a_terminal(
        "--format json run --runs 2 --kernel copy --max-time 0.2",
        ">out.json",
        &[],
    );
    assert!(text.contains("process 2/2"), "bars on stderr: {text:?}");
    let json = std::fs::read(dir.join("out.json")).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)));
    assert_eq!(report["command"], "run");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(2));
}
