//! The live view: one line per child with the state of each of its event
//! loops and its alerts so far, redrawn in place on a terminal (indicatif);
//! alerts are printed above it as they come. Without a terminal, only the
//! alert lines are printed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use hangwatch::AlertKind;
use hangwatch_hub::{ChildAlert, ChildInfo};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::LOOPS;

/// What the view knows of one child.
struct ChildView {
    name: String,
    pid: u32,
    bar: ProgressBar,
    /// Each loop's hang, if one is under way: its level and when it began.
    hung: BTreeMap<String, (AlertKind, Instant)>,
    alerts: usize,
    gone: Option<&'static str>,
}

/// The view of every child of the demo.
pub struct View {
    started: Instant,
    bars: MultiProgress,
    terminal: bool,
    children: Vec<ChildView>,
}

impl View {
    /// A view with no child yet, drawn only on a terminal.
    pub fn new() -> View {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        View {
            started: Instant::now(),
            bars: MultiProgress::with_draw_target(target),
            terminal,
            children: Vec::new(),
        }
    }

    /// Prints a line above the bars.
    pub fn say(&self, line: &str) {
        let line = format!("[{:>6.3} s] {line}", self.started.elapsed().as_secs_f64());
        if self.terminal {
            let _ = self.bars.println(line);
        } else {
            println!("{line}");
        }
    }

    /// A child connected: a line of its own.
    pub fn connected(&mut self, child: &ChildInfo) {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        self.children.push(ChildView {
            name: child.name.clone(),
            pid: child.pid,
            bar,
            hung: BTreeMap::new(),
            alerts: 0,
            gone: None,
        });
        self.redraw();
    }

    /// Prints an alert, and follows its loop's hang.
    pub fn alert(&mut self, alert: &ChildAlert) {
        self.say(&alert.to_string());
        if let Some(child) = self.children.iter_mut().find(|c| c.pid == alert.child.pid) {
            child.alerts += 1;
            let loop_name = alert.alert.component.name.to_string();
            match alert.alert.kind {
                AlertKind::Transient => {
                    child
                        .hung
                        .insert(loop_name, (AlertKind::Transient, Instant::now()));
                }
                AlertKind::Permanent => {
                    if let Some(hang) = child.hung.get_mut(&loop_name) {
                        hang.0 = AlertKind::Permanent;
                    }
                }
                AlertKind::Ended { .. } | AlertKind::ThreadExited => {
                    child.hung.remove(&loop_name);
                }
                // A stack that followed its alert, or a kind newer than
                // this view: no change to what is hung.
                _ => {}
            }
        }
        self.redraw();
    }

    /// Child `pid` left or died (`how`).
    pub fn gone(&mut self, pid: u32, how: &'static str) {
        if let Some(child) = self.children.iter_mut().find(|c| c.pid == pid) {
            child.gone = Some(how);
            child.hung.clear();
        }
        self.redraw();
    }

    /// Redraws every child's line.
    pub fn redraw(&self) {
        for child in &self.children {
            let loops: Vec<String> = LOOPS
                .iter()
                .map(|name| match child.hung.get(*name) {
                    Some((AlertKind::Permanent, since)) => {
                        format!("{name} HUNG {:.1}s", since.elapsed().as_secs_f64())
                    }
                    Some((_, since)) => {
                        format!("{name} slow {:.1}s", since.elapsed().as_secs_f64())
                    }
                    None => format!("{name} ok"),
                })
                .collect();
            let state = child.gone.unwrap_or("running");
            child.bar.set_message(format!(
                "{} (pid {}, {state}): {} | {} alerts",
                child.name,
                child.pid,
                loops.join(", "),
                child.alerts
            ));
        }
    }

    /// Leaves the lines as they are.
    pub fn finish(&self) {
        for child in &self.children {
            child.bar.finish();
        }
    }
}
