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
    let npy = npyz::NpyFile::new(&bytes[..])
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
