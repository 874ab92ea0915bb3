//! The seed corpora, generated at run time (`make_seeds`, called by `scripts/fuzz.sh`) from
//! the committed fixtures and from small graphs made here, so that no large seed is
//! committed. One folder per target under the output folder.

use mnc_ir::Graph;
use mnc_targets::Target;
use std::path::{Path, PathBuf};

/// How many random graphs (`mnc_tests::graphgen`) become ONNX and artifact seeds.
const RANDOM_GRAPHS: u64 = 24;

/// Writes every target's seeds under `out/<target>/`; returns the number of files written.
pub fn write_all(out: &Path) -> Result<usize, String> {
    let mut n = 0;
    n += onnx(&dir(out, "onnx_compile")?)?;
    n += artifact(&dir(out, "artifact")?)?;
    n += npy(&dir(out, "npy")?)?;
    n += image(&dir(out, "image")?)?;
    Ok(n)
}

fn dir(out: &Path, target: &str) -> Result<PathBuf, String> {
    let d = out.join(target);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<usize, String> {
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(1)
}

/// The small graphs seeds are made from: the three sample blocks and random graphs.
fn graphs() -> Vec<(String, Graph)> {
    let mut v: Vec<(String, Graph)> = mnc_tests::sample_blocks()
        .into_iter()
        .map(|(n, g)| (n.to_string(), g))
        .collect();
    for seed in 0..RANDOM_GRAPHS {
        v.push((
            format!("random{seed}"),
            mnc_tests::graphgen::random_graph(seed),
        ));
    }
    v
}

/// ONNX: the small graphs exported, and every committed fixture's `model.onnx` (those with
/// external data are refused by the fuzz target, which reads no other file).
fn onnx(d: &Path) -> Result<usize, String> {
    let mut n = 0;
    for (name, g) in graphs() {
        mnc::export::write_onnx(&g, &d.join(format!("{name}.onnx"))).map_err(|e| e.to_string())?;
        n += 1;
    }
    for f in mnc_tests::fixtures() {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let bytes = std::fs::read(f.join("model.onnx")).map_err(|e| e.to_string())?;
        n += write(d.join(format!("{name}.onnx")), &bytes)?;
    }
    Ok(n)
}

/// Artifacts: the small graphs optimized for the reference and every JIT target.
fn artifact(d: &Path) -> Result<usize, String> {
    let mut n = 0;
    for (name, g) in graphs() {
        let batch = g.node(g.inputs[0]).ty.shape[0];
        for t in std::iter::once(Target::Reference).chain(Target::JIT.iter().copied()) {
            let opt = mnc::exec::optimized(g.clone(), t).map_err(|e| format!("{name}: {e:#}"))?;
            let bytes = mnc::artifact::encode(&opt, t, batch, "seed")
                .map_err(|e| format!("{name}: {e}"))?;
            n += write(d.join(format!("{name}-{t}.mnc")), &bytes)?;
        }
    }
    Ok(n)
}

/// `.npy`: the fixtures' inputs and outputs, and small files of every accepted kind (f32,
/// f64, Fortran order, 0-d, format versions 1-3).
fn npy(d: &Path) -> Result<usize, String> {
    let mut n = 0;
    for f in mnc_tests::fixtures() {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        for file in ["input.npy", "output.npy"] {
            if let Ok(bytes) = std::fs::read(f.join(file)) {
                n += write(d.join(format!("{name}-{file}")), &bytes)?;
            }
        }
    }
    let header = |version: u8, dict: &str| {
        let mut b = b"\x93NUMPY".to_vec();
        b.extend_from_slice(&[version, 0]);
        let h = format!("{dict}\n");
        if version == 1 {
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(h.as_bytes());
        b
    };
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f64 * 0.5).to_le_bytes())
        .collect();
    let cases: [(&str, u8, &str, &[u8]); 5] = [
        (
            "f32",
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &f32s,
        ),
        (
            "f64",
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
            &f64s,
        ),
        (
            "fortran",
            2,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2, 3), }",
            &f32s,
        ),
        (
            "scalar",
            3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            &f32s[..4],
        ),
        (
            "empty",
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }",
            &[],
        ),
    ];
    for (name, version, dict, data) in cases {
        let mut b = header(version, dict);
        b.extend_from_slice(data);
        n += write(d.join(format!("{name}.npy")), &b)?;
    }
    Ok(n)
}

/// Images: the bundled example photo and tiny PNGs and JPEGs of several pixel formats and
/// aspect ratios.
fn image(d: &Path) -> Result<usize, String> {
    let mut n = 0;
    let cat = mnc_tests::repo_root().join("compiler/data/cat.jpg");
    if let Ok(bytes) = std::fs::read(&cat) {
        n += write(d.join("cat.jpg"), &bytes)?;
    }
    let rgb = |w: u32, h: u32| {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 40) as u8, 128])
        })
    };
    let encode = |img: image::DynamicImage, fmt: image::ImageFormat| {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, fmt)
            .map(|_| buf.into_inner())
            .map_err(|e| e.to_string())
    };
    let imgs: Vec<(&str, image::DynamicImage)> = vec![
        ("rgb4x4", rgb(4, 4).into()),
        ("rgb1x7", rgb(1, 7).into()),
        ("rgb9x2", rgb(9, 2).into()),
        (
            "gray3x3",
            image::DynamicImage::ImageRgb8(rgb(3, 3)).grayscale(),
        ),
        (
            "rgba2x2",
            image::DynamicImage::ImageRgb8(rgb(2, 2)).to_rgba8().into(),
        ),
        (
            "rgb16_2x3",
            image::DynamicImage::ImageRgb8(rgb(2, 3)).to_rgb16().into(),
        ),
    ];
    for (name, img) in imgs {
        n += write(
            d.join(format!("{name}.png")),
            &encode(img.clone(), image::ImageFormat::Png)?,
        )?;
        if matches!(img, image::DynamicImage::ImageRgb8(_)) {
            n += write(
                d.join(format!("{name}.jpg")),
                &encode(img, image::ImageFormat::Jpeg)?,
            )?;
        }
    }
    Ok(n)
}
