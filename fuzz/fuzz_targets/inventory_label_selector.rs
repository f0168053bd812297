//! Label selectors from config: never panic, and what parses prints back to the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use youwatch_agent::inventory::labels;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = labels::parse(text) {
        let printed = selector.to_string();
        let again = labels::parse(&printed).expect("a printed selector parses");
        assert_eq!(again, selector, "{text:?} -> {printed:?}");
    }
});
