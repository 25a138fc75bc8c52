//! Arbitrary bytes, decoded whole under every policy: no panic, no hang, and
//! the raw decoder (fed exactly what it asks for) agrees with the pump.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff::Config;
use rbdiff_tests::{assert_same, decode_raw, decode_whole};

fuzz_target!(|data: &[u8]| {
    for cfg in [Config::new(), Config::rbd_compatible(), Config::strict()] {
        let whole = decode_whole(data, cfg);
        assert_same(&decode_raw(data, cfg), &whole, "raw vs pump");
    }
});
