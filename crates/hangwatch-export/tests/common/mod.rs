//! Test data built by hand: alerts with stacks, and a profile of three
//! threads. Each test file uses part of it.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangwatch::{
    Alert, AlertKind, ComponentId, Frame, HangLevel, HangMarker, Profile, ProfileSample,
    ProfiledThread, Stack,
};

/// Where layout hangs: on a lock, inside its reflow. Innermost first.
pub const LAYOUT_STACK: &[&str] = &[
    "syscall",
    "std::sys::sync::mutex::futex::Mutex::lock_contended",
    "std::sync::poison::mutex::Mutex<T>::lock",
    "myapp::layout::reflow",
    "myapp::layout::run",
    "std::sys::backtrace::__rust_begin_short_backtrace",
    "start_thread",
    "clone3",
];

/// Where layout hangs while painting: a drop impl (a name with `<`, `>` and
/// spaces), an inlined call, an unsymbolicated frame and a bare address.
pub const PAINT_STACK: &[&str] = &[
    "<myapp::dom::Node as core::ops::drop::Drop>::drop",
    "myapp::paint::blend",
    "myapp::paint::draw",
    "libmyapp_gfx.so+0x1f00",
    "0xdeadbeef",
];

/// Where script hangs.
pub const SCRIPT_STACK: &[&str] = &[
    "myapp::script::eval",
    "myapp::script::run",
    "crossbeam_channel::channel::Receiver<T>::recv",
    "start_thread",
];

/// A frame named `name` the way the symbolizer would give it: function
/// names, `module+0xoffset` for unsymbolicated frames, bare addresses.
pub fn frame(name: &str) -> Frame {
    let mut frame = Frame {
        address: 0x5555_0000_0000 + name.len() as u64,
        ..Frame::default()
    };
    if let Some(address) = name.strip_prefix("0x") {
        frame.address = u64::from_str_radix(address, 16).unwrap();
    } else if let Some((module, offset)) = name.split_once("+0x") {
        frame.module = Some(module.into());
        frame.module_offset = Some(u64::from_str_radix(offset, 16).unwrap());
    } else {
        frame.module = Some("myapp".into());
        frame.function = Some(name.into());
        frame.file = Some(format!("src/{}.rs", name.len()));
        frame.line = Some(42);
        // The blend call is inlined into draw.
        frame.inlined = name == "myapp::paint::blend";
    }
    frame
}

/// A stack of `innermost_first` frames.
pub fn stack(innermost_first: &[&str]) -> Stack {
    Stack {
        frames: innermost_first.iter().map(|name| frame(name)).collect(),
        truncated: false,
        ..Stack::default()
    }
}

/// When the test data starts.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn layout() -> ComponentId {
    ComponentId::new("layout", 1)
}

pub fn script() -> ComponentId {
    ComponentId::new("script", 1)
}

pub fn network() -> ComponentId {
    ComponentId::new("network", 1)
}

/// An alert `at_ms` after [`t0`].
pub fn alert(
    component: ComponentId,
    kind: AlertKind,
    at_ms: u64,
    duration_ms: u64,
    annotation: &'static str,
    stack_names: Option<&[&str]>,
) -> Alert {
    let thread = Some(component.name.as_ref().into());
    let mut alert = Alert::new(component, kind, ms(duration_ms), t0() + ms(at_ms));
    alert.thread = thread;
    alert.annotation = Some(annotation.into());
    alert.stack = stack_names.map(stack);
    alert
}

pub const ENDED_PERMANENT: AlertKind = AlertKind::Ended {
    worst: HangLevel::Permanent,
};
pub const ENDED_TRANSIENT: AlertKind = AlertKind::Ended {
    worst: HangLevel::Transient,
};

/// The alerts of a run, in the order the monitor raises them:
///
/// - layout#1: two permanent hangs in "reflow" on a lock (1.6 s and 1.4 s),
///   then one in "paint" that is still going (permanent, no `ended`);
/// - script#1: a transient hang without a stack (300 ms), then a permanent
///   one in "eval" (1.5 s);
/// - network#1: its thread exits without unregistering.
///
/// Every hang that reached permanent has exactly one alert with a stack.
pub fn alerts() -> Vec<Alert> {
    use AlertKind::{Permanent, ThreadExited, Transient};
    let (l, s) = (layout(), script());
    vec![
        alert(l.clone(), Transient, 1150, 150, "reflow", None),
        alert(
            l.clone(),
            Permanent,
            2000,
            1000,
            "reflow",
            Some(LAYOUT_STACK),
        ),
        alert(s.clone(), Transient, 3230, 230, "eval", None),
        alert(l.clone(), ENDED_PERMANENT, 2600, 1600, "reflow", None),
        alert(s.clone(), ENDED_TRANSIENT, 3300, 300, "eval", None),
        alert(s.clone(), Transient, 4150, 150, "eval", None),
        alert(s.clone(), Permanent, 5000, 1000, "eval", Some(SCRIPT_STACK)),
        alert(l.clone(), Transient, 5150, 150, "reflow", None),
        alert(s.clone(), ENDED_PERMANENT, 5500, 1500, "eval", None),
        alert(
            l.clone(),
            Permanent,
            6000,
            1000,
            "reflow",
            Some(LAYOUT_STACK),
        ),
        alert(l.clone(), ENDED_PERMANENT, 6400, 1400, "reflow", None),
        alert(network(), ThreadExited, 7000, 0, "fetch", None),
        alert(l.clone(), Transient, 8150, 150, "paint", None),
        alert(l, Permanent, 9000, 1000, "paint", Some(PAINT_STACK)),
    ]
}

/// A profile of three threads sampled every 10 ms, with hang markers:
/// script#1 in [`SCRIPT_STACK`] (4 samples), layout#1 in [`LAYOUT_STACK`]
/// then [`PAINT_STACK`] (3 and 2 samples), network#1 with no samples.
pub fn profile() -> Profile {
    let mut profile = Profile::new(t0() + ms(500), ms(10));
    profile.duration = ms(3000);
    let mut samples = |stacks: &[&[&str]]| -> Vec<ProfileSample> {
        stacks
            .iter()
            .enumerate()
            .map(|(i, names)| profile.sample(ms(10 * i as u64 + 5), &stack(names)))
            .collect()
    };
    let threads = vec![
        ProfiledThread {
            component: script(),
            thread: Some("script".into()),
            tid: 101,
            samples: samples(&[SCRIPT_STACK; 4]),
            hangs: vec![HangMarker {
                start: ms(0),
                duration: ms(230),
                level: HangLevel::Transient,
                annotation: None,
                ended: false,
            }],
        },
        ProfiledThread {
            component: layout(),
            thread: Some("layout".into()),
            tid: 102,
            samples: samples(&[
                LAYOUT_STACK,
                LAYOUT_STACK,
                LAYOUT_STACK,
                PAINT_STACK,
                PAINT_STACK,
            ]),
            hangs: vec![HangMarker {
                start: ms(100),
                duration: ms(1600),
                level: HangLevel::Permanent,
                annotation: Some("reflow".into()),
                ended: true,
            }],
        },
        ProfiledThread {
            component: network(),
            thread: None,
            tid: 103,
            samples: Vec::new(),
            hangs: Vec::new(),
        },
    ];
    profile.threads = threads;
    profile
}
