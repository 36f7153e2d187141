//! The model registry: names, facts and forgiving lookup.

use clip_export::Activation;
use repo_gen::registry::{self, LookupError, WeightsLayout};

const EXPECTED: [&str; 29] = [
    "ViT-B-32::openai",
    "ViT-B-16::openai",
    "ViT-L-14::openai",
    "ViT-L-14-336::openai",
    "ViT-B-32::laion2b-s34b-b79k",
    "ViT-B-16::laion400m_e31",
    "ViT-B-16::laion400m_e32",
    "ViT-B-32::laion400m_e31",
    "ViT-B-32::laion400m_e32",
    "ViT-L-14::laion400m_e31",
    "ViT-L-14::laion400m_e32",
    "ViT-L-14::laion2b-s32b-b82k",
    "ViT-H-14::laion2b-s32b-b79k",
    "ViT-g-14::laion2b-s12b-b42k",
    "RN50::openai",
    "RN50::yfcc15m",
    "RN50::cc12m",
    "RN101::openai",
    "RN101::yfcc15m",
    "RN50x4::openai",
    "RN50x16::openai",
    "RN50x64::openai",
    "ViT-B-16-plus-240::laion400m_e31",
    "ViT-B-16-plus-240::laion400m_e32",
    "ViT-B-32::laion2b_e16",
    "M-CLIP/XLM-Roberta-Large-Vit-B-32",
    "M-CLIP/XLM-Roberta-Large-Vit-L-14",
    "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus",
    "M-CLIP/LABSE-Vit-L-14",
];

#[test]
fn every_clip_as_service_name_is_known_exactly_once() {
    let names: Vec<&str> = registry::all().iter().map(|m| m.name).collect();
    assert_eq!(names, EXPECTED);
    for name in EXPECTED {
        assert_eq!(registry::lookup(name).unwrap().name, name);
    }
}

#[test]
fn entries_are_internally_consistent() {
    for m in registry::all() {
        match &m.multilingual {
            None => assert_eq!(m.name, format!("{}::{}", m.arch, m.pretrained)),
            Some(text) => {
                assert_eq!(m.name, format!("{}/{}", m.arch, m.pretrained));
                assert_eq!(text.hub.repo, m.name);
                assert_eq!(text.architecture.embed_dim, m.embed_dim(), "{}", m.name);
                text.architecture.validate().unwrap();
            }
        }
        assert_eq!(m.architecture.text.context_length, 77, "{}", m.name);
        assert_eq!(m.architecture.text.vocab_size, 49408, "{}", m.name);
        assert_eq!(
            m.architecture.text.width % m.architecture.text.heads,
            0,
            "{}",
            m.name
        );
        assert_eq!(
            m.architecture.vision.feature_width() % m.architecture.vision.heads,
            0,
            "{}",
            m.name
        );
        m.architecture.validate().unwrap();
        assert_eq!(
            m.architecture.vision.image_size % m.architecture.vision.patch_size,
            0,
            "{}",
            m.name
        );
        assert_eq!(m.hub.config, m.layout.config_file(), "{}", m.name);
        assert_eq!(m.hub.weights, m.layout.weights_file(), "{}", m.name);
        assert_eq!(m.hub.tokenizer, "tokenizer.json", "{}", m.name);
        assert_eq!(m.hub.revision, "main", "{}", m.name);
        assert!(m.hub.repo.contains('/'), "{}", m.name);
        assert!(m.std.iter().all(|s| *s > 0.0), "{}", m.name);
        // OpenAI weights use QuickGELU; so do LAION-400M's ViT-B-32 and
        // open_clip's own ResNets (yfcc15m, cc12m).
        // M-CLIP's image towers: ViT-B-32 and ViT-L-14 openai, ViT-B-16-plus-240 LAION.
        let quick = m.pretrained == "openai"
            || m.name.starts_with("ViT-B-32::laion400m")
            || m.arch.starts_with("RN")
            || (m.multilingual.is_some() && !m.name.ends_with("B-16Plus"));
        let expected = if quick {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        assert_eq!(m.architecture.activation, expected, "{}", m.name);
    }
}

#[test]
fn architecture_facts_match_the_published_configs() {
    let b32 = registry::lookup("ViT-B-32::openai").unwrap();
    assert_eq!(b32.hub.repo, "openai/clip-vit-base-patch32");
    assert_eq!(b32.layout, WeightsLayout::Transformers);
    assert_eq!(b32.architecture.embed_dim, 512);
    assert_eq!(
        (
            b32.architecture.text.width,
            b32.architecture.text.layers,
            b32.architecture.text.heads
        ),
        (512, 12, 8)
    );
    assert_eq!(
        (
            b32.architecture.vision.width,
            b32.architecture.vision.layers,
            b32.architecture.vision.heads
        ),
        (768, 12, 12)
    );
    assert_eq!(
        (
            b32.architecture.vision.patch_size,
            b32.architecture.vision.image_size
        ),
        (32, 224)
    );
    assert_eq!(b32.mean, clip_contract::defaults::IMAGE_MEAN);

    let l336 = registry::lookup("ViT-L-14-336::openai").unwrap();
    assert_eq!(
        (
            l336.architecture.vision.patch_size,
            l336.architecture.vision.image_size
        ),
        (14, 336)
    );
    assert_eq!(l336.architecture.embed_dim, 768);

    let h14 = registry::lookup("ViT-H-14::laion2b-s32b-b79k").unwrap();
    assert_eq!(h14.hub.repo, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K");
    assert_eq!(h14.architecture.embed_dim, 1024);
    assert_eq!(
        (
            h14.architecture.text.width,
            h14.architecture.text.layers,
            h14.architecture.text.heads
        ),
        (1024, 24, 16)
    );
    assert_eq!(
        (
            h14.architecture.vision.width,
            h14.architecture.vision.layers,
            h14.architecture.vision.heads
        ),
        (1280, 32, 16)
    );

    let g14 = registry::lookup("ViT-g-14::laion2b-s12b-b42k").unwrap();
    assert_eq!(
        (
            g14.architecture.vision.width,
            g14.architecture.vision.layers,
            g14.architecture.vision.mlp_width
        ),
        (1408, 40, 6144)
    );

    let l14_laion = registry::lookup("ViT-L-14::laion2b-s32b-b82k").unwrap();
    assert_eq!(l14_laion.mean, [0.5; 3]);
    assert_eq!(l14_laion.std, [0.5; 3]);

    let b16_400m = registry::lookup("ViT-B-16::laion400m_e32").unwrap();
    assert_eq!(b16_400m.layout, WeightsLayout::OpenClip);
    assert_eq!(b16_400m.hub.weights, "open_clip_model.safetensors");
    assert_eq!(
        b16_400m.hub.repo,
        "timm/vit_base_patch16_clip_224.laion400m_e32"
    );
}

/// open_clip 3.3.0's model_configs (RN50.json, RN101.json, RN50x4.json,
/// RN50x16.json, RN50x64.json, ViT-B-16-plus-240.json, ViT-B-32.json), read
/// by clip-export, describe the registry's architectures, and the embedding
/// sizes are CLIP-as-service's.
#[test]
fn registry_architectures_are_what_open_clip_configs_say() {
    let config = |embed: usize, vision: &str, text: (usize, usize)| {
        format!(
            r#"{{"embed_dim": {embed}, "vision_cfg": {vision}, "text_cfg": {{"context_length": 77,
                "vocab_size": 49408, "width": {}, "heads": {}, "layers": 12}}}}"#,
            text.0, text.1
        )
    };
    let resnet = |layers: &str, width: usize, size: usize| {
        format!(
            r#"{{"image_size": {size}, "layers": {layers}, "width": {width}, "patch_size": null}}"#
        )
    };
    let cases = [
        (
            "RN50::openai",
            config(1024, &resnet("[3, 4, 6, 3]", 64, 224), (512, 8)),
        ),
        (
            "RN50::yfcc15m",
            config(1024, &resnet("[3, 4, 6, 3]", 64, 224), (512, 8)),
        ),
        (
            "RN50::cc12m",
            config(1024, &resnet("[3, 4, 6, 3]", 64, 224), (512, 8)),
        ),
        (
            "RN101::openai",
            config(512, &resnet("[3, 4, 23, 3]", 64, 224), (512, 8)),
        ),
        (
            "RN101::yfcc15m",
            config(512, &resnet("[3, 4, 23, 3]", 64, 224), (512, 8)),
        ),
        (
            "RN50x4::openai",
            config(640, &resnet("[4, 6, 10, 6]", 80, 288), (640, 10)),
        ),
        (
            "RN50x16::openai",
            config(768, &resnet("[6, 8, 18, 8]", 96, 384), (768, 12)),
        ),
        (
            "RN50x64::openai",
            config(1024, &resnet("[3, 15, 36, 10]", 128, 448), (1024, 16)),
        ),
        (
            "ViT-B-16-plus-240::laion400m_e31",
            config(
                640,
                r#"{"image_size": 240, "layers": 12, "width": 896, "patch_size": 16}"#,
                (640, 10),
            ),
        ),
        (
            "ViT-B-16-plus-240::laion400m_e32",
            config(
                640,
                r#"{"image_size": 240, "layers": 12, "width": 896, "patch_size": 16}"#,
                (640, 10),
            ),
        ),
        (
            "ViT-B-32::laion2b_e16",
            config(
                512,
                r#"{"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}"#,
                (512, 8),
            ),
        ),
    ];
    for (name, json) in cases {
        let spec = registry::lookup(name).unwrap();
        let mut parsed = clip_export::ClipArchitecture::from_config_json(&json).unwrap();
        // The registry owns the activation and the pooling (see check_against_registry).
        parsed.activation = spec.architecture.activation;
        parsed.text.pooling = spec.architecture.text.pooling;
        assert_eq!(parsed, spec.architecture, "{name}");
    }
    let dims: Vec<(&str, usize, usize)> = [
        "RN50::openai",
        "RN101::openai",
        "RN50x4::openai",
        "RN50x16::openai",
        "RN50x64::openai",
        "ViT-B-16-plus-240::laion400m_e31",
    ]
    .iter()
    .map(|n| {
        let a = registry::lookup(n).unwrap().architecture;
        (*n, a.embed_dim, a.vision.image_size)
    })
    .collect();
    assert_eq!(
        dims,
        [
            ("RN50::openai", 1024, 224),
            ("RN101::openai", 512, 224),
            ("RN50x4::openai", 640, 288),
            ("RN50x16::openai", 768, 384),
            ("RN50x64::openai", 1024, 448),
            ("ViT-B-16-plus-240::laion400m_e31", 640, 240),
        ]
    );
}

#[test]
fn lookup_forgives_case_and_dash_versus_underscore() {
    let cases = [
        ("vit-b-32::OpenAI", "ViT-B-32::openai"),
        ("VIT-B-32::OPENAI", "ViT-B-32::openai"),
        ("ViT-B-16::laion400m-e31", "ViT-B-16::laion400m_e31"),
        ("vit_b_16::LAION400M_E32", "ViT-B-16::laion400m_e32"),
        ("ViT-B-32::laion2b_s34b_b79k", "ViT-B-32::laion2b-s34b-b79k"),
        ("vit-g-14::laion2b-s12b-b42k", "ViT-g-14::laion2b-s12b-b42k"),
        ("  ViT-L-14::openai ", "ViT-L-14::openai"),
    ];
    for (query, expected) in cases {
        let found = registry::lookup(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(found.name, expected, "{query}");
    }
}

#[test]
fn unknown_name_suggests_the_closest_models() {
    let err = registry::lookup("ViT-B-32::openai2").unwrap_err();
    let LookupError::Unknown { suggestions, .. } = &err else {
        panic!("expected Unknown, got {err:?}");
    };
    assert_eq!(suggestions.first(), Some(&"ViT-B-32::openai"));
    assert_eq!(
        err.to_string(),
        format!(
            "unknown model \"ViT-B-32::openai2\"; did you mean {}? (`repo-gen models` lists all)",
            suggestions.join(", ")
        )
    );

    let err = registry::lookup("ViT-L-14::laion400m_e33").unwrap_err();
    let LookupError::Unknown { suggestions, .. } = &err else {
        panic!("expected Unknown, got {err:?}");
    };
    assert!(suggestions.contains(&"ViT-L-14::laion400m_e32"), "{err}");
    assert!(suggestions.contains(&"ViT-L-14::laion400m_e31"), "{err}");
    assert!(suggestions.len() <= 5);

    let err = registry::lookup("ViT-H-14::laion2b").unwrap_err();
    assert!(
        err.to_string().contains("ViT-H-14::laion2b-s32b-b79k"),
        "{err}"
    );
}

#[test]
fn far_off_name_points_to_the_list() {
    let err = registry::lookup("resnet50").unwrap_err();
    assert_eq!(
        err,
        LookupError::Unknown {
            name: "resnet50".into(),
            suggestions: vec![]
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown model \"resnet50\"; run `repo-gen models` for the full list"
    );
}

#[test]
fn architecture_without_tag_lists_its_weights() {
    let err = registry::lookup("vit-b-16").unwrap_err();
    assert_eq!(
        err.to_string(),
        "model name \"vit-b-16\" has no pretrained tag; write ARCH::PRETRAINED \
         (known for this architecture: ViT-B-16::openai, ViT-B-16::laion400m_e31, \
         ViT-B-16::laion400m_e32)"
    );
}

#[test]
fn folding_that_leaves_two_models_is_refused() {
    let mut models = registry::all()[..1].to_vec();
    let mut other = models[0];
    other.name = "ViT-B-32::open_ai";
    other.pretrained = "open_ai";
    let mut third = models[0];
    third.name = "ViT-B-32::open-ai";
    third.pretrained = "open-ai";
    models.push(other);
    models.push(third);
    // Exact spellings still win.
    assert_eq!(
        registry::lookup_in(&models, "ViT-B-32::open_ai")
            .unwrap()
            .name,
        "ViT-B-32::open_ai"
    );
    let err = registry::lookup_in(&models, "vit-b-32::OPEN_AI").unwrap_err();
    assert_eq!(
        err.to_string(),
        "model name \"vit-b-32::OPEN_AI\" is ambiguous: it matches \
         ViT-B-32::open_ai, ViT-B-32::open-ai; spell it exactly"
    );
}

#[test]
fn mclip_pairs_as_clip_as_service_does() {
    // Text base, embedding width, and the image tower's CLIP (its mclip_model.py).
    for (name, base, dim, image) in [
        (
            "M-CLIP/XLM-Roberta-Large-Vit-B-32",
            "xlm-roberta",
            512,
            "ViT-B-32::openai",
        ),
        (
            "M-CLIP/XLM-Roberta-Large-Vit-L-14",
            "xlm-roberta",
            768,
            "ViT-L-14::openai",
        ),
        (
            "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus",
            "xlm-roberta",
            640,
            "ViT-B-16-plus-240::laion400m_e31",
        ),
        ("M-CLIP/LABSE-Vit-L-14", "bert", 768, "ViT-L-14::openai"),
    ] {
        let m = registry::lookup(name).unwrap();
        let image = registry::lookup(image).unwrap();
        let text = m.multilingual.expect("a multilingual text tower");
        assert_eq!(text.architecture.encoder.family.name(), base, "{name}");
        assert_eq!(
            (m.embed_dim(), text.architecture.embed_dim),
            (dim, dim),
            "{name}"
        );
        assert_eq!(
            (m.hub, m.layout, m.architecture, m.mean, m.std),
            (
                image.hub,
                image.layout,
                image.architecture,
                image.mean,
                image.std
            ),
            "{name}"
        );
        assert_eq!(text.hub.weights, "pytorch_model.bin", "{name}");
        let width = if base == "bert" { 768 } else { 1024 };
        assert_eq!(text.architecture.encoder.width, width, "{name}");
    }
}

#[test]
fn openai_names_are_the_openai_entries() {
    // clip.available_models(), which CLIP-as-service accepts as well.
    for (openai, ours) in registry::OPENAI_NAMES {
        let model = registry::lookup(openai).unwrap();
        assert_eq!(model.name, ours);
        assert_eq!(model.pretrained, "openai", "{openai}");
    }
    let arch = |name: &str| registry::lookup(name).unwrap().arch;
    assert_eq!(arch("ViT-L/14@336px"), "ViT-L-14-336");
    assert_eq!(arch("RN50x64"), "RN50x64");
}
