//! Tensor I/O for the CLI: `.npy` files (through the `npyz` crate) and image preprocessing
//! for ImageNet classifiers (through the `image` crate), plus the bundled ImageNet class names.

use anyhow::{bail, Context, Result};
use mnc_ir::tensor::checked_numel;
use mnc_ir::Tensor;
use npyz::WriterBuilder;
use std::path::Path;

/// Reads a float `.npy` file (f32, or f64 converted to f32; C or Fortran order) as a tensor.
/// Corrupt files, other dtypes and sizes that do not match the file are refused with an error
/// naming the file, before any large allocation.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode_npy(&bytes, path)
}

/// Decodes the bytes of a `.npy` file like [`read_npy`]; `path` only names the file in errors.
pub fn decode_npy(bytes: &[u8], path: &Path) -> Result<Tensor> {
    check_npy_header(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid .npy file: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid .npy file: {e}", path.display()))?;
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{}: dimension too large", path.display()))?;
    let numel = checked_numel(&shape).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dtype = npy.dtype();
    let type_str = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        _ => bail!(
            "{}: structured arrays are not supported; expected float32",
            path.display()
        ),
    };
    let elem = match type_str.as_str() {
        "<f4" | "|f4" => 4,
        "<f8" | "|f8" => 8,
        other => bail!(
            "{}: unsupported dtype '{other}'; expected little-endian float32 ('<f4') or float64",
            path.display()
        ),
    };
    let need = numel.saturating_mul(elem);
    if need > bytes.len() {
        bail!(
            "{}: header declares shape {shape:?} ({need} bytes) but the file has only {} bytes",
            path.display(),
            bytes.len()
        );
    }
    let order = npy.order();
    let mut data: Vec<f32> = if elem == 4 {
        npy.into_vec::<f32>()
            .with_context(|| format!("{}: truncated or corrupt data", path.display()))?
    } else {
        npy.into_vec::<f64>()
            .with_context(|| format!("{}: truncated or corrupt data", path.display()))?
            .into_iter()
            .map(|v| v as f32)
            .collect()
    };
    if data.len() != numel {
        bail!(
            "{}: expected {numel} elements, found {}",
            path.display(),
            data.len()
        );
    }
    if order == npyz::Order::Fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
    }
    Ok(Tensor::from_f32(shape, data)?)
}

/// The longest `.npy` header text accepted, in bytes (numpy's own `np.load` limit).
pub const NPY_MAX_HEADER: usize = 10_000;

/// Checks a `.npy` file's preamble and header text before `npyz` parses them: the magic
/// bytes, a known format version, a header length within the file and at most
/// [`NPY_MAX_HEADER`] bytes, and a flat header: a dict whose values nest brackets at most
/// one level deep (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`). Deeper
/// nesting (structured dtypes, or a crafted header of thousands of brackets, which keeps the
/// Python-literal parser busy for seconds) is refused, as is a header length larger than the
/// file (which `npyz` would allocate, up to 4 GiB, before reading).
fn check_npy_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("bad magic bytes".into());
    }
    let (len, start) = match bytes[MAGIC.len()] {
        1 => (
            bytes
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
            10,
        ),
        2 | 3 => (
            bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            12,
        ),
        v => return Err(format!("unsupported format version {v}")),
    };
    let len = len.ok_or("truncated header")?;
    if len > NPY_MAX_HEADER {
        return Err(format!(
            "the header declares {len} bytes (at most {NPY_MAX_HEADER} are accepted)"
        ));
    }
    let text = bytes
        .get(start..start + len)
        .ok_or_else(|| format!("truncated header ({len} bytes declared)"))?;
    let trimmed = text.trim_ascii();
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        return Err("the header is not a dict".into());
    }
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for &c in trimmed {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), b'\\') => escaped = true,
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b'{' | b'(' | b'[') => {
                depth += 1;
                if depth > 2 {
                    return Err("nested header values are not supported".into());
                }
            }
            (None, b'}' | b')' | b']') => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("unbalanced brackets in the header")?;
            }
            (None, _) => {}
        }
    }
    if depth != 0 || quote.is_some() {
        return Err("unbalanced brackets or quotes in the header".into());
    }
    shape_count_fits(trimmed)
}

/// The header's `shape` tuple holds plain non-negative integers (as numpy writes them; a
/// Python 2 `L` suffix allowed) whose product fits 64 bits: `npyz` multiplies the dimensions
/// unchecked (a debug build panics, a release build wraps), and its literal parser also
/// evaluates sums such as `3+ 14+8` into dimensions. Headers without a `shape` tuple are left
/// to `npyz` to refuse.
fn shape_count_fits(header: &[u8]) -> Result<(), String> {
    let Some(at) = header
        .windows(7)
        .position(|w| w == b"'shape'" || w == b"\"shape\"")
    else {
        return Ok(());
    };
    let rest = &header[at + 7..];
    let Some(open) = rest.iter().position(|&c| c == b'(' || c == b'[') else {
        return Ok(());
    };
    let Some(len) = rest[open..].iter().position(|&c| c == b')' || c == b']') else {
        return Ok(());
    };
    let mut count = 1u64;
    for tok in rest[open + 1..open + len].split(|&c| c == b',') {
        let tok = tok.trim_ascii();
        if tok.is_empty() {
            continue;
        }
        let digits = tok.strip_suffix(b"L").unwrap_or(tok);
        let d = std::str::from_utf8(digits)
            .ok()
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "shape entry '{}' is not a non-negative integer",
                    String::from_utf8_lossy(tok)
                )
            })?;
        count = count
            .checked_mul(d)
            .ok_or("the shape's element count overflows 64 bits")?;
    }
    Ok(())
}

/// Reorders column-major data of `shape` into row-major order.
fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let r = shape.len();
    let mut out = vec![0.0; data.len()];
    let mut idx = vec![0usize; r];
    for (c_pos, slot) in out.iter_mut().enumerate() {
        let mut rem = c_pos;
        for k in (0..r).rev() {
            idx[k] = rem % shape[k];
            rem /= shape[k];
        }
        let mut f_pos = 0;
        for k in (0..r).rev() {
            f_pos = f_pos * shape[k] + idx[k];
        }
        *slot = data[f_pos];
    }
    out
}

/// Writes an f32 tensor as a C-order float32 `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let data = t
        .as_f32()
        .ok_or_else(|| anyhow::anyhow!("only float32 outputs can be written as .npy"))?;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let mut buf = Vec::with_capacity(data.len() * 4 + 128);
    {
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    std::fs::write(path, buf).with_context(|| format!("{}: cannot write", path.display()))
}

/// ImageNet channel means and standard deviations (RGB), as torchvision uses.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The longest side of an image `load_image` decodes (larger ones are refused before
/// decoding; the decoder's default allocation limit of 512 MiB applies too).
pub const MAX_IMAGE_SIDE: u32 = 32768;

/// The most pixels the resized image of `load_image` may have: an extreme aspect ratio (a
/// 1 x 30000 strip scaled so that its short side is 256) is refused instead of becoming a
/// multi-GB buffer.
pub const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Loads an image and applies the standard ImageNet evaluation transform: resize the shorter
/// side to `resize` (bilinear), center-crop `crop` x `crop`, scale to [0, 1], normalize with
/// ImageNet mean/std, NCHW with batch 1. Images wider or taller than [`MAX_IMAGE_SIDE`] and
/// resized images of more than [`MAX_RESIZED_PIXELS`] are refused with an error.
pub fn load_image(path: &Path, resize: u32, crop: u32) -> Result<Tensor> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open image", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read image", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| anyhow::anyhow!("{}: cannot decode image: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        bail!("{}: empty image", path.display());
    }
    let (w64, h64, r64) = (u64::from(w), u64::from(h), u64::from(resize));
    let (nw, nh) = if w <= h {
        (r64, (h64 * r64 / w64).max(1))
    } else {
        ((w64 * r64 / h64).max(1), r64)
    };
    if nw.checked_mul(nh).is_none_or(|px| px > MAX_RESIZED_PIXELS) {
        bail!(
            "{}: a {w}x{h} image resized to {nw}x{nh} would exceed {MAX_RESIZED_PIXELS} pixels (aspect ratio too extreme)",
            path.display()
        );
    }
    // Both fit in u32: their product is at most 2^26.
    let (nw, nh) = (u32::try_from(nw)?, u32::try_from(nh)?);
    if nw < crop || nh < crop {
        bail!("resize {resize} is smaller than the crop {crop}");
    }
    let resized = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((nw - crop) / 2, (nh - crop) / 2);
    let c = crop as usize;
    let mut data = vec![0f32; 3 * c * c];
    for y in 0..crop {
        for x in 0..crop {
            let p = resized.get_pixel(x0 + x, y0 + y);
            let (y, x) = (y as usize, x as usize);
            for ch in 0..3 {
                let v = p[ch] as f32 / 255.0;
                data[ch * c * c + y * c + x] = (v - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
            }
        }
    }
    Ok(Tensor::from_f32(vec![1, 3, c, c], data)?)
}

/// The 1000 ImageNet class names, in class-index order.
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("../data/imagenet_classes.txt")
        .lines()
        .collect()
}

/// Indices and values of the `k` largest entries, largest first (ties by lower index).
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, row[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_fortran_order() {
        let dir = std::env::temp_dir().join(format!("mnc-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let t = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        write_npy(&p, &t).unwrap();
        assert_eq!(read_npy(&p).unwrap(), t);
        // column-major [[1,2,3],[4,5,6]] is stored 1,4,2,5,3,6
        assert_eq!(
            fortran_to_c(&[1., 4., 2., 5., 3., 6.], &[2, 3]),
            vec![1., 2., 3., 4., 5., 6.]
        );
        std::fs::write(&p, b"\x93NUMPY garbage").unwrap();
        assert!(read_npy(&p).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A `.npy` file of format `version` with `header` (padded to 64 bytes like numpy's) and
    /// `data` after it.
    fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let pre = if version == 1 { 10 } else { 12 };
        let mut h = header.as_bytes().to_vec();
        while !(pre + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut b = b"\x93NUMPY".to_vec();
        b.extend_from_slice(&[version, 0]);
        if version == 1 {
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(&h);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn npy_headers_must_be_flat_short_and_inside_the_file() {
        let p = Path::new("h.npy");
        let data: Vec<u8> = [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let flat = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        let want = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
        for v in [1, 2, 3] {
            assert_eq!(decode_npy(&npy_bytes(v, flat, &data), p).unwrap(), want);
        }
        // Brackets inside strings are text, not nesting.
        let quoted = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': '((\\'[[', }";
        assert_eq!(decode_npy(&npy_bytes(1, quoted, &data), p).unwrap(), want);
        let err = |b: Vec<u8>| decode_npy(&b, p).unwrap_err().to_string();
        // Nested brackets are refused up front, also behind an escaped quote. npyz's
        // Python-literal parser backtracks exponentially on unclosed '[': 20 of them took
        // 17 s, the 40 here would take days.
        let deep = format!("{}{}", "(".repeat(2000), ")".repeat(2000));
        for h in [
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {deep}, }}"),
            format!("{{'a': 'x\\'', 'b': [{deep}], 'c': '', }}"),
            "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,), }".into(),
            format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
                "[".repeat(40)
            ),
        ] {
            let e = err(npy_bytes(1, &h, &data));
            assert!(e.contains("nested header values are not supported"), "{e}");
        }
        // Longer than numpy's own limit.
        let long = format!(
            "{{'descr': '<f4', 'shape': (2,), 'x': '{}', }}",
            "y".repeat(NPY_MAX_HEADER)
        );
        let e = err(npy_bytes(2, &long, &data));
        assert!(e.contains("at most 10000"), "{e}");
        // A header length past the end of the file (npyz would allocate it before reading).
        let mut b = npy_bytes(2, flat, &data);
        b[8..12].copy_from_slice(&4000u32.to_le_bytes());
        let e = err(b);
        assert!(e.contains("truncated header (4000 bytes declared)"), "{e}");
        for (b, what) in [
            (b"\x93NUMPY\x01\x00".to_vec(), "truncated header"),
            (
                b"\x93NUMPY\x07\x00\x10\x00".to_vec(),
                "unsupported format version 7",
            ),
            (npy_bytes(1, "(1, 2)", &data), "the header is not a dict"),
            (
                npy_bytes(1, "{'shape': (2,)), }", &data),
                "unbalanced brackets",
            ),
            (
                npy_bytes(1, "{'shape': (2, }", &data),
                "unbalanced brackets",
            ),
            (npy_bytes(1, "{'shape': '(2,), }", &data), "or quotes"),
            // Found by the npy fuzz target: npyz multiplies the dimensions unchecked.
            (
                npy_bytes(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3,2, 4,3,2, 4, 8,2,  66666,2, 4,3,2, 4, 6666666666), }",
                    &data,
                ),
                "element count overflows",
            ),
            // Found by the npy fuzz target: npyz's literal parser adds `3+ 14+8` up and then
            // multiplies the dimensions unchecked.
            (
                npy_bytes(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3+ 14+8, 000000001076404828009136133--400000), }",
                    &data,
                ),
                "is not a non-negative integer",
            ),
            (npy_bytes(1, "{'shape': (2, -3), }", &data), "'-3' is not"),
        ] {
            let e = err(b);
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn extreme_images_are_refused_before_large_allocations() {
        let dir = std::env::temp_dir().join(format!("mnc-io-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 1 x 40000: over the side limit, refused by the decoder's limits (the old loader
        // scaled it to 256 x 10,240,000, a 7.9 GB buffer).
        let p = dir.join("tall.png");
        image::RgbImage::new(1, 40_000).save(&p).unwrap();
        let e = format!("{:#}", load_image(&p, 256, 224).unwrap_err());
        assert!(e.contains("tall.png") && e.contains("limit"), "{e}");
        // 2 x 30000: decodable, but resized to 256 x 3,840,000 pixels (> 2^26).
        let p = dir.join("strip.png");
        image::RgbImage::new(30_000, 2).save(&p).unwrap();
        let e = format!("{:#}", load_image(&p, 256, 224).unwrap_err());
        assert!(e.contains("strip.png") && e.contains("aspect ratio"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // A large resize overflows nothing.
        let e = format!("{:#}", load_image(&p, u32::MAX, 224).unwrap_err());
        assert!(e.contains("aspect ratio"), "{e}");
        // An ordinary image still loads.
        let p = dir.join("ok.png");
        image::RgbImage::new(300, 257).save(&p).unwrap();
        assert_eq!(
            load_image(&p, 256, 224).unwrap().shape,
            vec![1, 3, 224, 224]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn top_k_orders_by_value() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5], 2), vec![(1, 0.9), (2, 0.5)]);
    }

    #[test]
    fn class_names_are_complete() {
        let c = imagenet_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], "tench");
    }
}
