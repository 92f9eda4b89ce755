//! Live reload: the scenario file is watched, and a new version that validates replaces the
//! running scenario atomically; one that does not is refused with `file:line:column` and the
//! last good scenario keeps running.
//!
//! The file is polled (its metadata, then its text when that changed) rather than watched
//! with inotify: polling sees every way a file gets replaced, including the symlink swap
//! Kubernetes uses to update a mounted ConfigMap, at the cost of up to one poll of delay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::control::{Control, ControlError};

/// What one look at the file found.
#[derive(Debug)]
pub enum Reload {
    /// Same text as last time.
    Unchanged,
    /// A new scenario is running.
    Applied { name: String, rules: usize },
    /// The new text did not validate; the running scenario is untouched.
    Refused(ControlError),
}

pub struct Reloader {
    path: PathBuf,
    control: Arc<Control>,
    /// The file's modification time and length when last read.
    stamp: Option<(SystemTime, u64)>,
    /// The text last read, valid or not, so a bad file is reported once, not every poll.
    text: Option<String>,
}

impl Reloader {
    /// Watches `path`, whose current text is already running under `control`.
    pub fn new(path: &Path, control: Arc<Control>) -> Reloader {
        let mut reloader = Reloader {
            path: path.to_owned(),
            control,
            stamp: None,
            text: None,
        };
        reloader.stamp = reloader.stamp_now();
        reloader.text = crate::scenario::read_file(path).ok();
        reloader
    }

    fn stamp_now(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Looks at the file; with `force` (SIGHUP), reads it even if its metadata is unchanged.
    pub fn check(&mut self, force: bool) -> Reload {
        let stamp = self.stamp_now();
        if !force && stamp == self.stamp {
            return Reload::Unchanged;
        }
        self.stamp = stamp;
        let origin = self.path.display().to_string();
        // The same bounded reader as at start: a file grown past the limit is refused, not
        // read whole.
        let text = match crate::scenario::read_file(&self.path) {
            Ok(text) => text,
            Err(e) => return Reload::Refused(ControlError::Invalid(e)),
        };
        if self.text.as_deref() == Some(text.as_str()) {
            return Reload::Unchanged;
        }
        let applied = self.control.apply(&text, &origin);
        self.text = Some(text);
        match applied {
            Ok(()) => {
                let scenario = self.control.engine().scenario();
                Reload::Applied {
                    name: scenario.name().to_owned(),
                    rules: scenario.rules().len(),
                }
            }
            Err(e) => Reload::Refused(e),
        }
    }

    /// Checks and logs the outcome.
    pub fn check_and_log(&mut self, force: bool) {
        match self.check(force) {
            Reload::Unchanged if force => {
                tracing::info!(file = %self.path.display(), "scenario file unchanged; nothing to reload")
            }
            Reload::Unchanged => {}
            Reload::Applied { name, rules } => {
                tracing::info!(file = %self.path.display(), scenario = %name, rules, "scenario reloaded")
            }
            Reload::Refused(e) => tracing::error!(
                "scenario not reloaded: {e} — still running `{}`",
                self.control.engine().scenario().name()
            ),
        }
    }

    /// Polls every `poll` and whenever the returned [`Notify`] is notified (SIGHUP). Each
    /// look (stat, read, parse, compile) runs on a blocking thread: a slow file system or a
    /// large scenario never holds up the threads that serve requests, or shutdown.
    pub fn spawn(mut self, poll: Duration) -> (Arc<Notify>, tokio::task::JoinHandle<()>) {
        let now = Arc::new(Notify::new());
        let trigger = now.clone();
        let task = tokio::spawn(async move {
            loop {
                let forced = tokio::select! {
                    _ = tokio::time::sleep(poll) => false,
                    _ = trigger.notified() => true,
                };
                let looked = tokio::task::spawn_blocking(move || {
                    self.check_and_log(forced);
                    self
                });
                match looked.await {
                    Ok(reloader) => self = reloader,
                    Err(e) => {
                        tracing::error!(error = %e, "the scenario reloader stopped; live reload is off");
                        return;
                    }
                }
            }
        });
        (now, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::engine::Scenario;

    #[test]
    fn valid_replaces_invalid_is_refused_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, "name: a\nrules:\n  - {name: one, fault: reset}\n").unwrap();
        let engine = Arc::new(Engine::new(Scenario::load(&path).unwrap()));
        let text = std::fs::read_to_string(&path).unwrap();
        let control = Arc::new(Control::new(engine.clone(), text, path.display().to_string()));
        let mut reloader = Reloader::new(&path, control);
        assert!(matches!(reloader.check(false), Reload::Unchanged));

        std::fs::write(
            &path,
            "name: a\nrules:\n  - {name: one, fault: reset}\n  - {name: two, fault: reset}\n",
        )
        .unwrap();
        assert!(matches!(reloader.check(true), Reload::Applied { rules: 2, .. }));
        assert_eq!(engine.scenario().rules().len(), 2);

        std::fs::write(&path, "name: a\nrules:\n  - {name: one, fault: {latency: fast}}\n").unwrap();
        match reloader.check(true) {
            Reload::Refused(e) => assert!(e.to_string().starts_with(&format!("{}:3:", path.display())), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            engine.scenario().rules().len(),
            2,
            "the last good scenario keeps running"
        );
        assert!(
            matches!(reloader.check(true), Reload::Unchanged),
            "a bad file is reported once"
        );
    }

    #[test]
    fn a_file_grown_past_the_limit_is_refused_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, "name: a\n").unwrap();
        let engine = Arc::new(Engine::new(Scenario::load(&path).unwrap()));
        let control = Arc::new(Control::new(
            engine.clone(),
            "name: a\n".into(),
            path.display().to_string(),
        ));
        let mut reloader = Reloader::new(&path, control);
        let mut big = String::from("name: a\ndescription: \"");
        big.push_str(&"x".repeat(crate::scenario::MAX_SCENARIO_BYTES + 10));
        big.push_str("\"\n");
        std::fs::write(&path, big).unwrap();
        match reloader.check(true) {
            Reload::Refused(e) => assert!(e.to_string().contains("larger than the limit"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.scenario().name(), "a", "the last good scenario keeps running");
    }
}
