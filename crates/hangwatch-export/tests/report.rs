//! The text report: components by hangs, signatures with counts and
//! percentiles, ongoing hangs, alert totals.

mod common;

use common::*;
use hangwatch_export::report::{AlertCounts, Report};

#[test]
fn hangs_are_grouped_by_component_and_signature() {
    let report = Report::from_alerts(&alerts());
    let order: Vec<String> = report
        .components
        .iter()
        .map(|c| c.component.to_string())
        .collect();
    assert_eq!(order, ["layout#1", "script#1", "network#1"]);

    let layout = &report.components[0];
    assert_eq!((layout.hangs, layout.ongoing), (3, 1));
    assert_eq!(
        layout.alerts,
        AlertCounts {
            transient: 3,
            permanent: 3,
            ended: 2,
            thread_exited: 0,
            stacks: 0
        }
    );
    assert_eq!(layout.groups.len(), 2);
    let reflow = &layout.groups[0];
    assert_eq!(
        reflow.signature,
        ["myapp::layout::reflow", "myapp::layout::run"]
    );
    assert_eq!((reflow.hangs, reflow.ongoing), (2, 0));
    assert_eq!(reflow.annotations, ["reflow"]);
    assert_eq!(reflow.durations.p50, ms(1400));
    assert_eq!(reflow.durations.p99, ms(1600));
    assert_eq!(reflow.durations.max, ms(1600));
    let paint = &layout.groups[1];
    assert_eq!(
        paint.signature,
        [
            "<myapp::dom::Node as core::ops::drop::Drop>::drop",
            "myapp::paint::blend",
            "myapp::paint::draw"
        ]
    );
    // Ongoing: counted with its permanent duration.
    assert_eq!((paint.hangs, paint.ongoing), (1, 1));
    assert_eq!(paint.durations.max, ms(1000));

    let script = &report.components[1];
    assert_eq!((script.hangs, script.ongoing), (2, 0));
    assert_eq!(
        script.groups[0].signature,
        ["myapp::script::eval", "myapp::script::run"]
    );
    assert!(script.groups[1].signature.is_empty(), "no stack comes last");
    assert_eq!(script.groups[1].durations.max, ms(300));

    let network = &report.components[2];
    assert_eq!(network.hangs, 0);
    assert_eq!(network.alerts.thread_exited, 1);
    assert_eq!(report.hangs(), 5);
}

#[test]
fn the_text_says_it_all_in_a_fixed_order() {
    let text = Report::from_alerts(&alerts()).to_string();
    let expected = "\
5 hangs in 2 components, 1 ongoing; alerts: 5 transient, 4 permanent, 4 ended, 1 thread exited

layout#1 [thread layout]: 3 hangs, 1 ongoing; alerts: 3 transient, 3 permanent, 2 ended, 0 thread exited
  2 hangs in \"reflow\": p50 1.4s, p99 1.6s, max 1.6s
      myapp::layout::reflow
      myapp::layout::run
  1 hang (1 ongoing) in \"paint\": p50 1.0s, p99 1.0s, max 1.0s
      <myapp::dom::Node as core::ops::drop::Drop>::drop
      myapp::paint::blend
      myapp::paint::draw
script#1 [thread script]: 2 hangs; alerts: 2 transient, 1 permanent, 2 ended, 0 thread exited
  1 hang in \"eval\": p50 1.5s, p99 1.5s, max 1.5s
      myapp::script::eval
      myapp::script::run
  1 hang in \"eval\": p50 300.0ms, p99 300.0ms, max 300.0ms
      (no stack)
network#1 [thread network]: no hangs; alerts: 0 transient, 0 permanent, 0 ended, 1 thread exited
";
    assert_eq!(text, expected);
}

#[test]
fn no_alerts_make_a_short_report() {
    assert_eq!(Report::from_alerts(&[]).to_string(), "no alerts\n");
}
