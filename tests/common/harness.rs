//! The command line `cargo test` (or `cargo nextest`) gives a
//! `harness = false` test binary, read the way libtest reads it: a free
//! argument filters test names by substring (an exact name with
//! `--exact`); `--list` lists them in libtest's terse format (no case here
//! is `--ignored`). Other flags (`--nocapture`, `--test-threads N`, ...)
//! are accepted and ignored. Included by path by `tests/pool.rs` and
//! `tests/transport.rs`.

/// What the command line asks of a `harness = false` test binary.
pub struct HarnessArgs {
    args: Vec<String>,
    filter: Option<String>,
    exact: bool,
}

impl HarnessArgs {
    /// This process's arguments.
    pub fn from_env() -> HarnessArgs {
        let args: Vec<String> = std::env::args().skip(1).collect();
        // libtest's options that take a value: their value is not a filter.
        let takes_value = |a: &str| {
            [
                "--format",
                "--test-threads",
                "--skip",
                "--color",
                "--logfile",
                "-Z",
            ]
            .contains(&a)
        };
        let filter = args
            .iter()
            .enumerate()
            .find(|&(i, a)| !a.starts_with('-') && (i == 0 || !takes_value(&args[i - 1])))
            .map(|(_, a)| a.clone());
        let exact = args.iter().any(|a| a == "--exact");
        HarnessArgs {
            args,
            filter,
            exact,
        }
    }

    /// Whether a filter was given (so not every test runs).
    pub fn filtered(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether `flag` was given.
    pub fn flag(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// Whether the test called `name` is selected by the filter.
    pub fn selected(&self, name: &str) -> bool {
        match &self.filter {
            None => true,
            Some(f) if self.exact => name == f,
            Some(f) => name.contains(f.as_str()),
        }
    }

    /// With `--list`: prints `name` in libtest's terse format (nothing
    /// under `--ignored`: no case is ignored) and returns true, so the
    /// caller does not run it.
    pub fn listed(&self, name: &str) -> bool {
        if !self.flag("--list") {
            return false;
        }
        if !self.flag("--ignored") {
            println!("{name}: test");
        }
        true
    }
}
