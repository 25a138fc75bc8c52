//! `diff`: list the extents that differ, in rbd's output formats.

use super::{Target, open_input};
use crate::dev::Dev;
use crate::errors::{EINVAL, Fail, errstr, io_errno};
use crate::objmap::{self, MapDev};
use crate::store::Store;
use rbdiff::ErrorKind;
use rbdiff::export::{ExportOptions, export_diff};
use rbdiff::{
    Config, DecodeError, Decoder, DiffHeader, Encoder, Event, EventReader, Format, FormatSet, Pump,
    PumpError, ReadError, Sink,
};
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  rbdiff diff vm1@tue --from-snap mon
  rbdiff diff --format json --pretty-format vm1
  rbdiff diff --whole-object rbd/vm1@mon
  rbdiff diff tue.diff                         # the extents a diff file holds
  rbdiff diff --format xml ./disk.raw          # allocated (non-zero) extents of a raw file

Output is rbd's: a plain table (Offset, Length, Type data|zero; nothing at all
when there are no extents), or JSON/XML arrays of {offset, length, exists}
with exists as the string \"true\"/\"false\". For a diff file, 'w' records are
data and 'z' records are zero.";

/// Print extents that differ since a previous snap, or image creation.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Image or snapshot ([pool/]image[@snap]), a raw file, or a diff file ('-' = stdin diff).
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    #[command(flatten)]
    pub names: super::RbdNames,
    /// Snapshot starting point.
    #[arg(long)]
    pub from_snap: Option<String>,
    /// Snapshot name.
    #[arg(long)]
    pub snap: Option<String>,
    /// Compare whole objects.
    #[arg(long)]
    pub whole_object: bool,
    /// Output format (plain, json, or xml).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json", "xml"])]
    pub format: String,
    /// Pretty formatting (json and xml).
    #[arg(long)]
    pub pretty_format: bool,
    /// Object size for raw files, in B/K/M [default: 4M].
    #[arg(long, value_parser = crate::size::bytes)]
    pub object_size: Option<u64>,
}

/// One listed extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
    pub exists: bool,
}

/// Render extents as rbd diff does.
pub fn render(ext: &[Extent], format: &str, pretty: bool) -> String {
    let mut s = String::new();
    match format {
        "json" => {
            if ext.is_empty() {
                s.push_str("[]\n");
            } else if pretty {
                s.push_str("[\n");
                for (i, e) in ext.iter().enumerate() {
                    s.push_str(&format!(
                        "    {{\n        \"offset\": {},\n        \"length\": {},\n        \"exists\": \"{}\"\n    }}{}\n",
                        e.offset,
                        e.length,
                        e.exists,
                        if i + 1 < ext.len() { "," } else { "" }
                    ));
                }
                s.push_str("]\n");
            } else {
                s.push('[');
                for (i, e) in ext.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&format!(
                        "{{\"offset\":{},\"length\":{},\"exists\":\"{}\"}}",
                        e.offset, e.length, e.exists
                    ));
                }
                s.push_str("]\n");
            }
        }
        "xml" => {
            if pretty {
                s.push_str("<extents>\n");
                for e in ext {
                    s.push_str(&format!(
                        " <extent>\n  <offset>{}</offset>\n  <length>{}</length>\n  <exists>{}</exists>\n </extent>\n",
                        e.offset, e.length, e.exists
                    ));
                }
                s.push_str("</extents>\n\n");
            } else {
                s.push_str("<extents>");
                for e in ext {
                    s.push_str(&format!(
                        "<extent><offset>{}</offset><length>{}</length><exists>{}</exists></extent>",
                        e.offset, e.length, e.exists
                    ));
                }
                s.push_str("</extents>\n");
            }
        }
        _ => {
            if ext.is_empty() {
                return s;
            }
            let rows: Vec<[String; 3]> = ext
                .iter()
                .map(|e| {
                    [
                        e.offset.to_string(),
                        e.length.to_string(),
                        if e.exists { "data" } else { "zero" }.to_string(),
                    ]
                })
                .collect();
            let head = ["Offset", "Length", "Type"];
            let mut w = [0usize; 3];
            for i in 0..3 {
                w[i] = rows
                    .iter()
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
                    .max(head[i].len());
            }
            let line = |c: [&str; 3]| {
                format!(
                    "{:<w0$}  {:<w1$}  {:<w2$}\n",
                    c[0],
                    c[1],
                    c[2],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2]
                )
            };
            s.push_str(&line(head));
            for r in &rows {
                s.push_str(&line([&r[0], &r[1], &r[2]]));
            }
        }
    }
    s
}

/// A [`Sink`] that decodes what an encoder writes and keeps the extents.
struct Collect {
    pump: Pump,
    ext: Vec<Extent>,
}

impl Sink for Collect {
    type Error = DecodeError;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let ext = &mut self.ext;
        self.pump
            .feed(bytes, false, |_, ev| {
                push_extent(ext, &ev);
                Ok::<(), ()>(())
            })
            .map(|_| ())
            .map_err(|e| match e {
                PumpError::Decode(d) => d,
                PumpError::Handler(()) => DecodeError::new(0, ErrorKind::TrailingBytes),
            })
    }
}

fn push_extent(ext: &mut Vec<Extent>, ev: &Event<'_>) {
    match *ev {
        Event::Write { offset, len } => ext.push(Extent {
            offset,
            length: len,
            exists: true,
        }),
        Event::Zero { offset, len } => ext.push(Extent {
            offset,
            length: len,
            exists: false,
        }),
        _ => {}
    }
}

fn diff_err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: diff error: {}", errstr(code)))
}

/// Extents of `to` against `from` (zeros when `None`).
fn compute(
    from: Option<&mut MapDev>,
    to: &mut MapDev,
    object_size: u64,
    whole: bool,
) -> Result<Vec<Extent>, Fail> {
    let mut enc = Encoder::diff(
        Collect {
            pump: Pump::new(Decoder::new(Config::new())),
            ext: Vec::new(),
        },
        Format::DiffV1,
    )
    .map_err(|_| diff_err(EINVAL))?;
    let opts = ExportOptions::new()
        .with_object_size(object_size)
        .with_whole_object(whole);
    let header = DiffHeader {
        from: None,
        to: None,
        protected: None,
        size: None,
    };
    export_diff(from, to, &header, &opts, &mut enc, &mut |_, _| {}).map_err(|e| match e {
        rbdiff::export::ExportError::Read(io) => diff_err(io_errno(&io)),
        _ => diff_err(EINVAL),
    })?;
    let sink = enc.finish().map_err(|_| diff_err(EINVAL))?;
    Ok(sink.ext)
}

/// Extents of a diff stream, or `None` if `path` holds no diff banner.
fn from_stream(path: &str) -> Result<Option<Vec<Extent>>, Fail> {
    let input = open_input(path).map_err(|e| diff_err(io_errno(&e)))?;
    let mut r = EventReader::new(
        input,
        Config::rbd_compatible().with_formats(FormatSet::DIFFS),
    );
    let mut ext = Vec::new();
    loop {
        match r.next_event() {
            Ok(Some((_, ev))) => push_extent(&mut ext, &ev),
            Ok(None) => return Ok(Some(ext)),
            Err(ReadError::Decode(e))
                if e.offset == 0
                    && matches!(
                        e.kind,
                        ErrorKind::BadBanner { .. } | ErrorKind::UnexpectedEof { .. }
                    )
                    && path != "-" =>
            {
                return Ok(None);
            }
            Err(ReadError::Decode(e)) => {
                return Err(Fail::new(
                    if e.is_eof() {
                        crate::errors::EBADMSG
                    } else {
                        EINVAL
                    },
                    format!("rbd: diff error: {e}"),
                ));
            }
            Err(ReadError::Io(e)) => return Err(diff_err(io_errno(&e))),
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    if a.pretty_format && a.format == "plain" {
        return Err(Fail::new(
            EINVAL,
            "rbd: --pretty-format only works when --format is json or xml",
        )
        .into());
    }
    let v = a.names.resolve(&[&a.image], &[super::Role::Image])?;
    let image = super::required(v[0].clone(), "image name")?;
    let ext = if image == "-" {
        from_stream("-")?.unwrap_or_default()
    } else if let Some(spec) = crate::cluster::parse(&image)? {
        cluster(&spec, &a)?
    } else {
        match Target::parse(&image)? {
            Target::Raw(p) => {
                let ps = p.to_string_lossy().into_owned();
                match from_stream(&ps)? {
                    Some(e) => e,
                    None => {
                        let to = Dev::open_ro(&p).map_err(|e| diff_err(io_errno(&e)))?;
                        compute(
                            None::<&mut MapDev>,
                            &mut objmap::plain(to),
                            a.object_size.unwrap_or(4 << 20),
                            a.whole_object,
                        )?
                    }
                }
            }
            Target::Store(spec) => {
                let snap = spec.snap.clone().or(a.snap.clone());
                let img = store.open(&spec.head())?;
                let ends = img
                    .endpoints(a.from_snap.as_deref(), snap.as_deref())
                    .map_err(|f| {
                        if f.lines.is_empty() {
                            diff_err(f.code)
                        } else {
                            f
                        }
                    })?;
                let hint =
                    objmap::diff_hint(&img, &spec.head().to_string(), ends.from_idx, ends.to_idx);
                let order = img.meta.order;
                let mut to = objmap::hinted(ends.to, hint.clone(), order);
                let mut from = ends.from.map(|d| objmap::hinted(d, hint.clone(), order));
                compute(
                    from.as_mut(),
                    &mut to,
                    img.meta.object_size(),
                    a.whole_object,
                )?
            }
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(render(&ext, &a.format, a.pretty_format).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The extents of a cluster image (`rbd:pool/image[@snap]`): librbd's
/// `diff_iterate2`, as `rbd diff` lists them.
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args) -> Result<Vec<Extent>, Fail> {
    use crate::cluster::cmds;
    let snap = cmds::snap_of(spec, a.snap.as_deref())?;
    let rados = cmds::connect(spec)?;
    let io = cmds::ioctx(&rados, spec)?;
    let img = cmds::open(&io, spec, snap, true)?;
    let mut ext = Vec::new();
    let size = img.size().map_err(|e| diff_err(cmds::errno(&e)))?;
    img.diff_iterate(a.from_snap.as_deref(), size, a.whole_object, &mut |e| {
        ext.push(Extent {
            offset: e.offset,
            length: e.len,
            exists: e.exists,
        });
        Ok(())
    })
    .map_err(|e| diff_err(cmds::errno(&e)))?;
    Ok(ext)
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args) -> Result<Vec<Extent>, Fail> {
    Err(crate::cluster::unsupported(&spec.image_path()))
}
