//! A store image's `meta.json` loaded from arbitrary bytes: never a panic;
//! what loads is within rbd's limits (its arithmetic cannot overflow) and
//! survives a save/load round trip unchanged (names kept as exact bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff_cli::meta::{FEATURES_ALL, ImageMeta, MAX_SIZE, ORDERS};

fuzz_target!(|input: &[u8]| {
    let Ok(m) = ImageMeta::parse(input) else {
        return;
    };
    assert!(ORDERS.contains(&m.order));
    assert!(m.size <= MAX_SIZE && m.features & !FEATURES_ALL == 0);
    assert!(m.object_size().is_multiple_of(m.stripe_unit));
    let _ = m.size.div_ceil(m.object_size());
    for s in &m.snapshots {
        assert!(s.id < m.next_snap_id && s.size <= MAX_SIZE);
    }
    let again = ImageMeta::parse(&m.to_json()).expect("a loaded meta.json saves loadable");
    assert_eq!(again, m);
});
