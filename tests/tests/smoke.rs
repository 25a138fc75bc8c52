use rbdiff::{Config, Event, Pump, Decoder};
use std::path::Path;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

#[test]
fn smoke_decode_all() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rbd-16.2.15");
    let mut files = vec![];
    walk(&root, &mut files);
    files.sort();
    for f in files {
        let name = f.to_string_lossy();
        if !(name.ends_with(".diff") || name.ends_with(".v2") || name.contains("image.v2") || name.ends_with(".v2diff")) { continue }
        let data = std::fs::read(&f).unwrap();
        let mut pump = Pump::new(Decoder::new(Config::rbd_compatible()));
        let mut n = 0usize; let mut warn = vec![];
        let r = pump.feed::<(), _>(&data, true, |_o, ev| { n += 1; if let Event::Warning(k) = ev { warn.push(k.to_string()) }; Ok(()) });
        println!("{:80} {:?} events={} warns={:?}", name.rsplit("rbd-16.2.15/").next().unwrap(), r.map_err(|e| match e { rbdiff::PumpError::Decode(d) => d.to_string(), _ => String::new() }), n, warn.iter().take(2).collect::<Vec<_>>());
    }
}
