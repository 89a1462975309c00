//! The hot path allocates nothing: a counting allocator watches the
//! component's thread through a hundred thousand notifications.

use std::time::Duration;

use hangwatch::{ComponentId, Monitor, Timeouts};

#[test]
fn notifications_never_allocate() {
    let Monitor { register, .. } = Monitor::builder().start().unwrap();
    let handle = register
        .register_component(
            ComponentId::new("counted", 1),
            Timeouts::new(Duration::from_millis(50), Duration::from_secs(1)),
            None,
        )
        .unwrap();
    let labels = ["parse", "layout", "paint", "script", "timers"];
    // First use of each label interns it (and may allocate), once.
    for label in labels {
        handle.notify_activity(label);
        handle.notify_wait();
    }
    let counted = allocation_counter::measure(|| {
        for i in 0..100_000 {
            let _task = handle.activity(labels[i % labels.len()]);
            handle.notify_activity(labels[(i + 1) % labels.len()]);
        }
        // Past a timeout too, so that the rare paths run: the wake-up, and
        // the end of a hang the monitor alerted on.
        handle.notify_activity("parse");
        std::thread::sleep(Duration::from_millis(120));
        handle.notify_wait();
    });
    assert_eq!(counted.count_total, 0, "{counted:?}");
}
