//! Unit tests of the zoo: parameter counts against torchvision, naming, scaling, options.

use super::*;
use crate::cost::{analyze, CostOptions};

/// torchvision's (timm's for mobilenet_v1) parameter counts, BatchNorm weight+bias included.
const TORCHVISION_PARAMS: [(&str, u64); 12] = [
    ("mobilenet_v1", 4_231_976),
    ("mobilenet_v2", 3_504_872),
    ("mobilenet_v3_small", 2_542_856),
    ("mobilenet_v3_large", 5_483_032),
    ("efficientnet_b0", 5_288_548),
    ("efficientnet_b1", 7_794_184),
    ("efficientnet_b2", 9_109_994),
    ("efficientnet_b3", 12_233_232),
    ("efficientnet_b4", 19_341_616),
    ("efficientnet_b5", 30_389_784),
    ("efficientnet_b6", 43_040_704),
    ("efficientnet_b7", 66_347_960),
];

fn params(g: &Graph) -> u64 {
    analyze(g, &CostOptions::default()).unwrap().total_params
}

#[test]
fn make_divisible_matches_torchvision() {
    // Values checked against torchvision.ops.misc._make_divisible.
    assert_eq!(make_divisible(32.0 * 1.1, 8), 32);
    assert_eq!(make_divisible(16.0 * 1.8, 8), 32);
    assert_eq!(make_divisible(40.0 * 1.4, 8), 56);
    assert_eq!(make_divisible(3.0, 8), 8);
    assert_eq!(make_divisible(92.0, 8), 96);
    assert_eq!(make_divisible(1.0 * 72.0 / 4.0, 8), 24);
}

#[test]
fn every_model_has_torchvision_param_count() {
    for (name, want) in TORCHVISION_PARAMS {
        let g = build(
            name,
            &ZooOptions {
                keep_bn: true,
                ..Default::default()
            },
        )
        .unwrap();
        mnc_ir::verify::verify(&g).unwrap();
        assert_eq!(params(&g), want, "{name}");
    }
}

#[test]
fn unknown_name_lists_valid_names() {
    let e = build("resnet50", &ZooOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resnet50") && e.contains("efficientnet_b7") && e.contains("mobilenet_v1"),
        "{e}"
    );
}

/// The state-dict keys and shapes of the reference models, written by
/// `tests/zoo/state_dict_keys.py`.
fn reference_keys(
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<usize>>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/zoo/state_dict_keys.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, Vec<usize>>,
    > = Default::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut it = line.split(' ');
        let (m, k, s) = (
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap_or(""),
        );
        let shape: Vec<usize> = if s.is_empty() {
            vec![]
        } else {
            s.split(',').map(|d| d.parse().unwrap()).collect()
        };
        out.entry(m.to_string())
            .or_default()
            .insert(k.to_string(), shape);
    }
    out
}

fn constants(g: &Graph) -> std::collections::BTreeMap<String, Vec<usize>> {
    g.node_ids()
        .into_iter()
        .filter_map(|id| match &g.node(id).op {
            mnc_ir::Op::Constant(t) => Some((g.node(id).name.clone(), t.shape.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn tensor_names_and_shapes_are_the_state_dict() {
    let refs = reference_keys();
    assert_eq!(refs.len(), names().len());
    for &name in names() {
        let keep = ZooOptions {
            keep_bn: true,
            ..Default::default()
        };
        let g = build(name, &keep).unwrap();
        let got = constants(&g);
        let want = &refs[name];
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(*k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (k, s) in want {
            assert_eq!(&got[k], s, "{name}: shape of {k}");
        }
        // Every conv / linear weight's module path names the node that uses it.
        for k in want.keys() {
            if let Some(module) = k.strip_suffix(".weight") {
                if want[k].len() >= 2 {
                    assert!(g.find(module).is_some(), "{name}: no node named {module}");
                }
            }
        }
    }
}

#[test]
fn mult_adds_match_torchinfo_at_native_resolution() {
    // torchinfo figures (mult-adds, millions) of the torchvision/timm models at the same
    // resolution; efficientnet_b2 is left out because torchvision evaluates it at 288, not 260.
    let want: [(&str, f64); 11] = [
        ("mobilenet_v1", 568.74),
        ("mobilenet_v2", 300.81),
        ("mobilenet_v3_small", 56.53),
        ("mobilenet_v3_large", 216.62),
        ("efficientnet_b0", 385.87),
        ("efficientnet_b1", 686.88),
        ("efficientnet_b3", 1827.25),
        ("efficientnet_b4", 4393.93),
        ("efficientnet_b5", 10266.60),
        ("efficientnet_b6", 19067.87),
        ("efficientnet_b7", 37746.27),
    ];
    for (name, m) in want {
        let g = build(
            name,
            &ZooOptions {
                keep_bn: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut got = analyze(&g, &CostOptions::default())
            .unwrap()
            .total_mult_adds as f64;
        if name == "mobilenet_v1" {
            // torchinfo does not count timm's BatchNormAct2d layers; mnc counts each
            // BatchNorm's weight and bias (one mult-add each per image) as for any BatchNorm.
            let bn: usize = g
                .node_ids()
                .into_iter()
                .filter(|&id| matches!(g.node(id).op, mnc_ir::Op::BatchNorm { .. }))
                .map(|id| 2 * g.node(id).ty.shape[1])
                .sum();
            assert_eq!(bn, 21_888);
            got -= bn as f64;
        }
        let got = got / 1e6;
        assert!(
            (got - m).abs() <= 0.005 + 1e-9,
            "{name}: {got:.2} M mult-adds, torchinfo {m:.2} M"
        );
    }
}

#[test]
fn docs_zoo_md_has_the_generated_table() {
    // docs/ZOO.md pastes `mnc zoo list --format markdown`; it must not go stale.
    let table = cli::render(&cli::rows().unwrap(), cli::ListFormat::Markdown);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ZOO.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        doc.contains(&table),
        "{} does not contain the current `mnc zoo list --format markdown` output:\n{table}",
        path.display()
    );
}

#[test]
fn options_are_validated_and_applied() {
    let bad = |o: ZooOptions, name: &str| build(name, &o).unwrap_err().to_string();
    assert!(bad(
        ZooOptions {
            num_classes: 0,
            ..Default::default()
        },
        "mobilenet_v2"
    )
    .contains("num_classes"));
    assert!(bad(
        ZooOptions {
            width: Some(f64::NAN),
            ..Default::default()
        },
        "efficientnet_b0"
    )
    .contains("width"));
    assert!(bad(
        ZooOptions {
            depth: Some(1.2),
            ..Default::default()
        },
        "mobilenet_v2"
    )
    .contains("EfficientNet"));
    assert!(bad(
        ZooOptions {
            resolution: Some(0),
            ..Default::default()
        },
        "mobilenet_v2"
    )
    .contains("resolution"));
    assert!(bad(
        ZooOptions {
            batch: 0,
            ..Default::default()
        },
        "mobilenet_v2"
    )
    .contains("batch"));

    // Transfer-learning head: 3 classes, batch 4, resolution 160.
    let g = build(
        "mobilenet_v2",
        &ZooOptions {
            num_classes: 3,
            batch: 4,
            resolution: Some(160),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(g.node(g.inputs[0]).ty.shape, vec![4, 3, 160, 160]);
    assert_eq!(g.node(g.outputs[0].node).ty.shape, vec![4, 3]);
    let w = g.find("classifier.1.weight").unwrap();
    assert_eq!(g.node(w).ty.shape, vec![3, 1280]);
    assert!(matches!(
        g.node(g.find("classifier.0").unwrap()).op,
        mnc_ir::Op::Dropout
    ));

    // Custom compound scaling: B0 with B1's coefficients is B1 (same constants, same values).
    let custom = build(
        "efficientnet_b0",
        &ZooOptions {
            width: Some(1.0),
            depth: Some(1.1),
            resolution: Some(240),
            ..Default::default()
        },
    )
    .unwrap();
    let b1 = build("efficientnet_b1", &ZooOptions::default()).unwrap();
    assert_eq!(params(&custom), params(&b1));
    assert_eq!(constants(&custom), constants(&b1));

    // Weights depend on the seed, deterministically.
    let c = |seed| {
        let g = build(
            "mobilenet_v3_small",
            &ZooOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        match &g.node(g.find("features.0.0.weight").unwrap()).op {
            mnc_ir::Op::Constant(t) => t.content_hash(),
            _ => unreachable!(),
        }
    };
    assert_eq!(c(1), c(1));
    assert_ne!(c(1), c(2));
}

#[test]
fn efficientnet_scaling_follows_torchvision() {
    // Stage repeats and widths of B7: ceil(n * 3.1), _make_divisible(c * 2.0, 8).
    let reps: Vec<usize> = efficientnet::B0_STAGES
        .iter()
        .map(|s| efficientnet::scaled_repeats(s.5, 3.1))
        .collect();
    assert_eq!(reps, vec![4, 7, 7, 10, 10, 13, 4]);
    let g = build(
        "efficientnet_b7",
        &ZooOptions {
            resolution: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    let w = g.find("features.0.0.weight").unwrap();
    assert_eq!(g.node(w).ty.shape, vec![64, 3, 3, 3]);
    let head = g.find("features.8.0.weight").unwrap();
    assert_eq!(g.node(head).ty.shape, vec![2560, 640, 1, 1]);
    // BatchNorm epsilon: 1e-5 for B0-B4, 1e-3 for B5-B7 (torchvision).
    for (name, eps) in [("efficientnet_b4", 1e-5f32), ("efficientnet_b5", 1e-3)] {
        let g = build(
            name,
            &ZooOptions {
                keep_bn: true,
                resolution: Some(32),
                ..Default::default()
            },
        )
        .unwrap();
        match g.node(g.find("features.0.1").unwrap()).op {
            mnc_ir::Op::BatchNorm { epsilon } => assert_eq!(epsilon, eps, "{name}"),
            _ => panic!("{name}: features.0.1 is not a BatchNorm"),
        }
    }
}

#[test]
fn cli_builds_and_writes_onnx() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        zoo: cli::ZooArgs,
    }
    let dir = mnc_tests::tmp_dir("zoo-cli");
    let path = dir.join("m.onnx");
    let cmd = Cmd::try_parse_from([
        "zoo",
        "mobilenet_v3_small",
        "-o",
        path.to_str().unwrap(),
        "--num-classes",
        "3",
        "--resolution",
        "96",
        "--keep-bn",
        "--seed",
        "7",
        "--batch",
        "2",
    ])
    .unwrap();
    cli::run(&cmd.zoo).unwrap();
    let g = crate::onnx::import_file(&path, &Default::default()).unwrap();
    assert_eq!(g.node(g.inputs[0]).ty.shape, vec![2, 3, 96, 96]);
    assert_eq!(g.node(g.outputs[0].node).ty.shape, vec![2, 3]);
    let want = build(
        "mobilenet_v3_small",
        &ZooOptions {
            num_classes: 3,
            resolution: Some(96),
            keep_bn: true,
            seed: 7,
            batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        mnc_ir::print::print_graph(&g).unwrap(),
        mnc_ir::print::print_graph(&want).unwrap()
    );
    let bad = Cmd::try_parse_from(["zoo", "nonet", "-o", path.to_str().unwrap()]).unwrap();
    let e = cli::run(&bad.zoo).unwrap_err().to_string();
    assert!(e.contains("nonet") && e.contains("mobilenet_v2"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn width_and_depth_multipliers_match_torchvision_and_timm() {
    // Parameter counts of the reference models built with the same multipliers:
    // timm mobilenetv1_125; torchvision mobilenet_v2(width_mult=...),
    // mobilenet_v3_*(width_mult=...), EfficientNet(_efficientnet_conf(width 1.3, depth 1.5)).
    let cases: [(&str, f64, Option<f64>, usize, u64); 6] = [
        ("mobilenet_v1", 1.25, None, 1000, 6_270_840),
        ("mobilenet_v2", 0.5, None, 1000, 1_968_680),
        ("mobilenet_v2", 1.4, None, 1000, 6_108_776),
        ("mobilenet_v3_large", 0.75, None, 1000, 3_377_576),
        ("mobilenet_v3_small", 0.5, None, 3, 405_803),
        ("efficientnet_b0", 1.3, Some(1.5), 10, 12_305_756),
    ];
    for (name, w, d, nc, want) in cases {
        let g = build(
            name,
            &ZooOptions {
                width: Some(w),
                depth: d,
                num_classes: nc,
                keep_bn: true,
                resolution: Some(32),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(params(&g), want, "{name} width {w} depth {d:?}");
    }
    // Any resolution down to 1x1 builds (every window fits its padded input).
    for &name in names() {
        let g = build(
            name,
            &ZooOptions {
                resolution: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        mnc_ir::verify::verify(&g).unwrap();
    }
}
