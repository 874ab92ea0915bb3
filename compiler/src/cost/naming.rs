//! Layer names: the PyTorch module path encoded in an ONNX node name.
//!
//! The PyTorch ONNX exporter names a node after the module scope it was traced in, one
//! path segment per module, then the op type: `/features/features.3/conv/conv.1/Conv`.
//! A segment that extends the previous one (`features` -> `features.3`, `conv` ->
//! `conv.1`) is a child of a container and adds only its suffix; any other segment is a
//! named attribute of the previous module. So the example above is the module
//! `features.3.conv.1`, the name torchinfo and `model.named_modules()` use.

/// The module path a PyTorch-exported node name encodes, e.g.
/// `/features/features.3/conv/conv.1/Conv` -> `features.3.conv.1`. Names that do not
/// have the `/scope/.../OpType` form (hand-written graphs, other exporters, root-level
/// ops such as `/Flatten`) are returned unchanged.
pub fn module_path(node_name: &str) -> String {
    let Some(rest) = node_name.strip_prefix('/') else {
        return node_name.to_string();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // The last segment is the op type (`Conv`, `Conv_1`, ...), not a module.
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return node_name.to_string();
    }
    let scopes = &segments[..segments.len() - 1];
    let mut path = String::new();
    let mut prev: Option<&str> = None;
    for &seg in scopes {
        match prev.and_then(|p| seg.strip_prefix(p)) {
            Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => path.push_str(suffix),
            _ => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(seg);
            }
        }
        prev = Some(seg);
    }
    path
}

/// The module that owns a parameter tensor: its name without the last component
/// (`features.1.0.block.1.fc1.weight` -> `features.1.0.block.1.fc1`); names without a
/// dot are returned unchanged.
pub fn param_owner(tensor_name: &str) -> &str {
    match tensor_name.rsplit_once('.') {
        Some((owner, _)) if !owner.is_empty() => owner,
        _ => tensor_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_scopes_become_module_paths() {
        assert_eq!(
            module_path("/features/features.3/conv/conv.1/Conv"),
            "features.3.conv.1"
        );
        assert_eq!(
            module_path("/features/features.0/features.0.0/Conv"),
            "features.0.0"
        );
        assert_eq!(
            module_path("/features/features.1/features.1.0/block/block.1/fc1/Conv"),
            "features.1.0.block.1.fc1"
        );
        assert_eq!(
            module_path("/features/features.1/features.1.0/block/block.0/block.0.0/Conv"),
            "features.1.0.block.0.0"
        );
        assert_eq!(module_path("/classifier/classifier.1/Gemm"), "classifier.1");
        assert_eq!(
            module_path("/features/features.2/conv/conv.0/conv.0.2/Clip"),
            "features.2.conv.0.2"
        );
    }

    #[test]
    fn other_names_are_kept() {
        assert_eq!(module_path("/Flatten"), "/Flatten");
        assert_eq!(module_path("conv1"), "conv1");
        assert_eq!(module_path("Conv_0"), "Conv_0");
        assert_eq!(module_path("/a//Conv"), "/a//Conv");
        assert_eq!(module_path("/"), "/");
    }

    #[test]
    fn param_owners() {
        assert_eq!(
            param_owner("features.1.0.block.1.fc1.weight"),
            "features.1.0.block.1.fc1"
        );
        assert_eq!(param_owner("w"), "w");
    }
}
