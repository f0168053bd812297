//! The scenarios of issue 15, each a writer rate, a rotation schedule and a restart policy.

use std::time::Duration;

use super::{
    Restarts, Scenario,
    agent::Stop,
    rotator::{Rotation::*, step},
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every scenario, writing `rate` entries/s for `secs` seconds each (backlogs scale with it).
pub fn all(rate: u64, secs: u64) -> Vec<Scenario> {
    let d = Duration::from_secs(secs);
    let s = |name: &str| Scenario::new(name, rate, d);
    let restarts = |stops: Vec<Stop>, every: (u64, u64)| Restarts {
        every: (ms(every.0), ms(every.1)),
        stops,
        down: ms(200),
    };
    vec![
        Scenario {
            backlog: rate * 10,
            ..s("backlog (default queue)")
        },
        Scenario {
            backlog: rate * 10,
            restarts: Some(restarts(vec![Stop::Term], (500, 2500))),
            ..s("backlog + SIGTERM")
        },
        Scenario {
            restarts: Some(restarts(vec![Stop::Term], (700, 2500))),
            ..s("SIGTERM while writing")
        },
        Scenario {
            restarts: Some(restarts(vec![Stop::Kill], (700, 2500))),
            ..s("kill -9 while writing")
        },
        Scenario {
            schedule: vec![step(3000, Rename)],
            ..s("rename")
        },
        Scenario {
            schedule: vec![step(3000, CopyTruncate)],
            ..s("copytruncate")
        },
        Scenario {
            schedule: vec![step(3000, Delete)],
            ..s("delete-and-recreate")
        },
        Scenario {
            symlinked: true,
            schedule: vec![step(3000, SymlinkSwap)],
            ..s("symlink swap")
        },
        Scenario {
            schedule: vec![step(1500, Rename), step(500, CopyTruncate)],
            ..s("rename, copytruncate 0.5s later")
        },
        Scenario {
            schedule: vec![
                step(2000, Rename),
                step(670, CopyTruncate),
                step(670, Delete),
                step(670, Rename),
            ],
            ..s("rename/cpt/delete/rename 0.67s")
        },
        Scenario {
            schedule: vec![step(900, Rename), step(700, CopyTruncate)],
            restarts: Some(restarts(vec![Stop::Kill, Stop::Term], (700, 2500))),
            ..s("rename+cpt, kill -9 & SIGTERM")
        },
        Scenario {
            symlinked: true,
            schedule: vec![step(1100, SymlinkSwap)],
            restarts: Some(restarts(vec![Stop::Kill, Stop::Term], (700, 2500))),
            ..s("symlink, kill -9 & SIGTERM")
        },
    ]
}

/// The scenario named `name` in [`all`].
pub fn named(name: &str, rate: u64, secs: u64) -> Scenario {
    all(rate, secs)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"))
}
