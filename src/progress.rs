//! Progress on stderr for long work: which fresh process of how many, which kernel of how many,
//! elapsed time and an ETA. Drawn only where a person watches: [`enable`] turns bars on when
//! stderr is a terminal and the command asked for them (`cli` leaves them off under `--quiet`,
//! `--log-format json` and `serve`). Nothing here ever writes to stdout.
//!
//! Kernels run in measurement children (`gpugate measure-child`), so the parent learns their
//! progress over the child's stderr: it sets [`CHILD_ENV`], the child then writes one line per
//! kernel started, [`LINE_PREFIX`] and a JSON [`KernelStart`], and the parent reads the child's
//! stderr on a thread ([`forward_child_stderr`]), turning those lines into bar updates and
//! passing every other line on to its own stderr, above the bars.
//!
//! Everything is a no-op while off: the runner calls the same API in every mode.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// Set by a parent that draws bars on the measurement children it starts: "write progress
/// lines to stderr".
pub const CHILD_ENV: &str = "GPUGATE_PROGRESS_LINES";

/// What starts a progress line on a child's stderr: versioned, and unlike any log line.
pub const LINE_PREFIX: &str = "gpugate-progress/1 ";

/// The one event a child reports: kernel `index` (1-based) of `of` starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStart {
    pub index: usize,
    pub of: usize,
    pub key: String,
}

/// The bars of this process, when it draws them.
#[derive(Clone)]
struct Bars {
    multi: MultiProgress,
    colour: bool,
}

static BARS: Mutex<Option<Bars>> = Mutex::new(None);
/// This process is a measurement child whose parent asked for progress lines.
static LINES: AtomicBool = AtomicBool::new(false);

/// Draw progress bars on stderr from now on if `wanted` and stderr is a terminal.
pub fn enable(wanted: bool) {
    let stderr = io::stderr();
    let bars = (wanted && stderr.is_terminal()).then(|| Bars {
        multi: MultiProgress::new(),
        colour: crate::report::colour_allowed(true),
    });
    *BARS.lock().unwrap_or_else(|e| e.into_inner()) = bars;
}

/// In a measurement child: report kernels to the parent when it asked for it ([`CHILD_ENV`]).
pub fn lines_for_parent() {
    LINES.store(std::env::var_os(CHILD_ENV).is_some(), Ordering::SeqCst);
}

/// The bars, cloned out so no lock is held while drawing or logging.
fn bars() -> Option<Bars> {
    BARS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether this process draws bars.
pub fn shown() -> bool {
    bars().is_some()
}

/// Write to stderr above the bars (they are hidden for the write and redrawn after it), or
/// straight to stderr when none are drawn.
pub fn write_stderr(bytes: &[u8]) -> io::Result<()> {
    match bars() {
        Some(b) => b.multi.suspend(|| io::stderr().lock().write_all(bytes)),
        None => io::stderr().lock().write_all(bytes),
    }
}

/// stderr for log lines (`tracing_subscriber`'s `with_writer(gpugate::progress::stderr)`):
/// each line is printed above the bars, so neither garbles the other.
pub fn stderr() -> Stderr {
    Stderr
}

pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_stderr(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// How often bars redraw on their own, so elapsed time and ETA move during a long kernel.
const TICK: Duration = Duration::from_millis(200);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// A bar added to the multi-bar, removed again when dropped.
struct Owned {
    multi: MultiProgress,
    bar: ProgressBar,
}

impl Owned {
    fn new(b: &Bars, bar: ProgressBar) -> Owned {
        let bar = b.multi.add(bar);
        bar.enable_steady_tick(TICK);
        Owned {
            multi: b.multi.clone(),
            bar,
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.multi.remove(&self.bar);
    }
}

/// A counted stage with an ETA, e.g. `calibration check 3/20` or a profile's `point 4/12`:
/// [`Steps::step`] as each step starts. Stages nest: the runner's process and kernel bars draw
/// below any stage open around them.
pub struct Steps {
    what: String,
    total: u64,
    bar: Option<Owned>,
}

/// A stage of `total` steps called `what`; nothing is drawn unless bars are on.
pub fn steps(what: &str, total: usize) -> Steps {
    let total = total as u64;
    let bar = bars().map(|b| {
        let template = if b.colour {
            "{prefix:.bold} [{bar:30.cyan/blue}] {elapsed} elapsed, ETA {eta}"
        } else {
            "{prefix} [{bar:30}] {elapsed} elapsed, ETA {eta}"
        };
        Owned::new(&b, ProgressBar::new(total).with_style(style(template)))
    });
    Steps {
        what: what.to_string(),
        total,
        bar,
    }
}

impl Steps {
    /// Step `index` (1-based) starts: the ones before it are done.
    pub fn step(&self, index: usize) {
        if let Some(o) = &self.bar {
            o.bar
                .set_prefix(format!("{} {index}/{}", self.what, self.total));
            o.bar.set_position(index.saturating_sub(1) as u64);
        }
    }
}

/// One run's kernels, measured in this process or in a child: where each kernel start goes.
#[derive(Clone)]
pub struct Kernels {
    /// The overall bar (position counts kernels over every run) and the kernel line.
    bars: Option<(ProgressBar, ProgressBar)>,
    /// Kernels finished in the runs before this one.
    before: u64,
    /// Write [`KernelStart`] lines for the parent instead (a measurement child).
    lines: bool,
}

impl Kernels {
    /// Kernel `index` (1-based) of `of`, instance `key`, starts.
    pub fn start(&self, index: usize, of: usize, key: &str) {
        if let Some((overall, line)) = &self.bars {
            overall.set_position(self.before + index.saturating_sub(1) as u64);
            line.set_message(format!("kernel {index}/{of} {key}"));
            line.reset_elapsed();
        }
        if self.lines {
            let event = KernelStart {
                index,
                of,
                key: key.to_string(),
            };
            // One write per line, so a log line never splits it.
            let _ = io::stderr()
                .lock()
                .write_all(format_line(&event).as_bytes());
        }
    }

    /// Whether the parent should ask its child for progress lines and read its stderr.
    pub fn wanted(&self) -> bool {
        self.bars.is_some()
    }
}

/// Progress over `runs` runs of `kernels` kernels each: `process j/M` with elapsed time and an
/// ETA over every kernel of every run, and a `kernel i/N <key>` line below it.
pub struct Runs {
    runs: usize,
    kernels: u64,
    bars: Option<(Owned, Owned)>,
}

pub fn runs(runs: usize, kernels: usize) -> Runs {
    let kernels = kernels as u64;
    let bars = bars().map(|b| {
        let (overall, line) = if b.colour {
            (
                "{prefix:.bold} [{bar:30.green/blue}] {elapsed} elapsed, ETA {eta}",
                "{spinner:.green} {wide_msg} {elapsed}",
            )
        } else {
            (
                "{prefix} [{bar:30}] {elapsed} elapsed, ETA {eta}",
                "{spinner} {wide_msg} {elapsed}",
            )
        };
        let total = (runs as u64).saturating_mul(kernels).max(1);
        (
            Owned::new(
                &b,
                ProgressBar::new(total)
                    .with_style(style(overall))
                    .with_prefix(format!("process 1/{runs}")),
            ),
            Owned::new(&b, ProgressBar::new_spinner().with_style(style(line))),
        )
    });
    Runs {
        runs,
        kernels,
        bars,
    }
}

impl Runs {
    /// Run `run` (1-based) starts: the handle its kernel starts go to.
    pub fn start(&self, run: usize) -> Kernels {
        let before = self.kernels * run.saturating_sub(1) as u64;
        if let Some((overall, line)) = &self.bars {
            overall
                .bar
                .set_prefix(format!("process {run}/{}", self.runs));
            overall.bar.set_position(before);
            line.bar.set_message("starting");
            line.bar.reset_elapsed();
        }
        Kernels {
            bars: self
                .bars
                .as_ref()
                .map(|(o, l)| (o.bar.clone(), l.bar.clone())),
            before,
            lines: false,
        }
    }
}

/// A run measured in this process (`run --runs 1`, or a measurement child): bars when this
/// process draws them, lines for the parent in a child that was asked for them.
pub fn this_process(kernels: usize) -> (Runs, Kernels) {
    let runs = runs(1, kernels);
    let mut handle = runs.start(1);
    handle.lines = LINES.load(Ordering::SeqCst);
    (runs, handle)
}

/// A progress line for the parent, newline included.
pub fn format_line(event: &KernelStart) -> String {
    let json = serde_json::to_string(event).expect("a kernel start serialises");
    format!("{LINE_PREFIX}{json}\n")
}

/// The event on a line of a child's stderr, if it is a progress line.
pub fn parse_line(line: &[u8]) -> Option<KernelStart> {
    let line = std::str::from_utf8(line).ok()?;
    let json = line
        .strip_prefix(LINE_PREFIX)?
        .trim_end_matches(['\n', '\r']);
    serde_json::from_str(json).ok()
}

/// Read a child's stderr to its end: progress lines go to `kernels`, every other line (bytes
/// untouched, a last line without newline too) to [`write_stderr`]. Reading goes on after a
/// failed write, so the child never blocks on a full pipe.
pub fn forward_child_stderr(input: impl BufRead, kernels: &Kernels) {
    split_lines(
        input,
        |e| kernels.start(e.index, e.of, &e.key),
        write_stderr,
    );
}

fn split_lines(
    mut input: impl BufRead,
    mut event: impl FnMut(KernelStart),
    mut other: impl FnMut(&[u8]) -> io::Result<()>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => match parse_line(&line) {
                Some(e) => event(e),
                None => {
                    let _ = other(&line);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8]) -> (Vec<KernelStart>, Vec<u8>) {
        let (mut events, mut other) = (vec![], vec![]);
        split_lines(
            input,
            |e| events.push(e),
            |l| {
                other.extend_from_slice(l);
                Ok(())
            },
        );
        (events, other)
    }

    #[test]
    fn a_progress_line_round_trips() {
        let event = KernelStart {
            index: 3,
            of: 12,
            key: "attention[batch=8,causal=0,heads=16,seq=4096] \"odd\" ✓".into(),
        };
        let line = format_line(&event);
        assert!(line.starts_with(LINE_PREFIX) && line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        assert_eq!(parse_line(line.as_bytes()), Some(event.clone()));
        assert_eq!(
            parse_line(line.replace('\n', "\r\n").as_bytes()),
            Some(event)
        );
    }

    #[test]
    fn every_other_line_is_forwarded_untouched() {
        let first = KernelStart {
            index: 1,
            of: 2,
            key: "copy[n=1024]".into(),
        };
        let second = KernelStart {
            index: 2,
            of: 2,
            key: "sgemm[k=64,m=64,n=64]".into(),
        };
        let mut input = Vec::new();
        let garbage: &[&[u8]] = &[
            b"\x1b[2m2026-12-01T16:00:00Z\x1b[0m  INFO gpugate::runner: measuring key=copy\n",
            b"gpugate-progress/1 {not json}\n",
            b"gpugate-progress/1 {\"index\":1}\n",
            b"gpugate-progress/2 {\"index\":1,\"of\":2,\"key\":\"x\"}\n",
            b" gpugate-progress/1 {\"index\":1,\"of\":2,\"key\":\"x\"}\n",
            b"not utf-8: \xff\xfe\n",
            b"\n",
        ];
        input.extend_from_slice(garbage[0]);
        input.extend_from_slice(format_line(&first).as_bytes());
        for g in &garbage[1..] {
            input.extend_from_slice(g);
        }
        input.extend_from_slice(format_line(&second).as_bytes());
        input.extend_from_slice(b"thread 'main' panicked at the end, no newline");
        let (events, other) = split(&input);
        assert_eq!(events, vec![first, second]);
        let mut expected: Vec<u8> = garbage.concat();
        expected.extend_from_slice(b"thread 'main' panicked at the end, no newline");
        assert_eq!(other, expected);
    }

    #[test]
    fn a_failed_write_does_not_stop_the_reading() {
        let input = b"one\ntwo\nthree\n";
        let mut seen = 0;
        split_lines(
            &input[..],
            |_| {},
            |_| {
                seen += 1;
                Err(io::Error::other("stderr closed"))
            },
        );
        assert_eq!(seen, 3);
    }

    #[test]
    fn nothing_is_drawn_or_written_while_off() {
        // Bars are off in a test process (stderr is not a terminal under the harness or the
        // call was never made), and no child lines were asked for.
        let (runs, kernels) = this_process(2);
        assert!(!kernels.wanted());
        kernels.start(1, 2, "copy[n=1]");
        assert!(runs.start(1).bars.is_none());
        steps("check", 3).step(1);
    }
}
