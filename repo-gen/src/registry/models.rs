//! The registry's entries: each architecture's towers in clip-export's
//! terms and every published checkpoint, with where its files live.

use clip_contract::defaults;
use clip_export::{
    default_text_pooling, Activation, ClipArchitecture, MclipTextArchitecture, TextTower,
    VisionKind, VisionTower, RESNET_DOWNSAMPLING,
};

use super::{HubFiles, ModelSpec, MultilingualText, WeightsLayout, VOCAB_SIZE};

const OPENAI_MEAN: [f32; 3] = defaults::IMAGE_MEAN;
const OPENAI_STD: [f32; 3] = defaults::IMAGE_STD;
/// open_clip's INCEPTION_MEAN / INCEPTION_STD.
const HALF: [f32; 3] = [0.5, 0.5, 0.5];

const fn text(width: usize, layers: usize, heads: usize) -> TextTower {
    TextTower {
        width,
        layers,
        heads,
        mlp_width: 4 * width,
        context_length: defaults::CONTEXT_LENGTH,
        vocab_size: VOCAB_SIZE,
        // For --random-init; a downloaded config keeps its own (it follows its eos_token_id).
        pooling: default_text_pooling(),
    }
}

const fn vision(
    width: usize,
    layers: usize,
    heads: usize,
    mlp_width: usize,
    patch_size: usize,
    image_size: usize,
) -> VisionTower {
    VisionTower {
        width,
        layers,
        heads,
        mlp_width,
        patch_size,
        image_size,
        kind: VisionKind::Transformer,
    }
}

/// An open_clip `ModifiedResNet` tower as clip-export reads its config:
/// attention-pool heads of 64 channels (open_clip's default head width).
const fn resnet(stages: [usize; 4], width: usize, image_size: usize) -> VisionTower {
    VisionTower {
        width,
        layers: stages[0] + stages[1] + stages[2] + stages[3],
        heads: width * RESNET_DOWNSAMPLING / 64,
        mlp_width: 0,
        patch_size: RESNET_DOWNSAMPLING,
        image_size,
        kind: VisionKind::ResNet { stages },
    }
}

// The towers of each architecture (open_clip's model_configs, HF configs).
const B32_TEXT: TextTower = text(512, 12, 8);
const B32_VISION: VisionTower = vision(768, 12, 12, 3072, 32, 224);
const B16_TEXT: TextTower = B32_TEXT;
const B16_VISION: VisionTower = vision(768, 12, 12, 3072, 16, 224);
const L14_TEXT: TextTower = text(768, 12, 12);
const L14_VISION: VisionTower = vision(1024, 24, 16, 4096, 14, 224);
const L14_336_VISION: VisionTower = vision(1024, 24, 16, 4096, 14, 336);
// ViT-H-14 and ViT-g-14 share a 24-layer text tower (the repos' open_clip_config.json).
const H14_TEXT: TextTower = text(1024, 24, 16);
const H14_VISION: VisionTower = vision(1280, 32, 16, 5120, 14, 224);
const G14_TEXT: TextTower = H14_TEXT;
// head_width 88, mlp_ratio 4.3637: transformers' config says intermediate_size 6144.
const G14_VISION: VisionTower = vision(1408, 40, 16, 6144, 14, 224);
// open_clip's RN*.json: vision_cfg.layers, width, image_size; text_cfg width, layers, heads.
const RN50_VISION: VisionTower = resnet([3, 4, 6, 3], 64, 224);
const RN101_VISION: VisionTower = resnet([3, 4, 23, 3], 64, 224);
const RN50X4_TEXT: TextTower = text(640, 12, 10);
const RN50X4_VISION: VisionTower = resnet([4, 6, 10, 6], 80, 288);
const RN50X16_TEXT: TextTower = text(768, 12, 12);
const RN50X16_VISION: VisionTower = resnet([6, 8, 18, 8], 96, 384);
const RN50X64_TEXT: TextTower = text(1024, 12, 16);
const RN50X64_VISION: VisionTower = resnet([3, 15, 36, 10], 128, 448);
// ViT-B-16-plus-240.json: width 896 (14 heads of 64), 640-wide text of 10 heads.
const B16_PLUS_240_TEXT: TextTower = text(640, 12, 10);
const B16_PLUS_240_VISION: VisionTower = vision(896, 12, 14, 3584, 16, 240);

const fn transformers(repo: &'static str) -> HubFiles {
    HubFiles {
        repo,
        revision: "main",
        config: "config.json",
        weights: "model.safetensors",
        tokenizer: "tokenizer.json",
    }
}

const fn open_clip(repo: &'static str) -> HubFiles {
    HubFiles {
        repo,
        revision: "main",
        config: "open_clip_config.json",
        weights: "open_clip_model.safetensors",
        tokenizer: "tokenizer.json",
    }
}

#[allow(clippy::too_many_arguments)]
const fn entry(
    name: &'static str,
    arch: &'static str,
    pretrained: &'static str,
    hub: HubFiles,
    layout: WeightsLayout,
    embed_dim: usize,
    text: TextTower,
    vision: VisionTower,
    activation: Activation,
    mean: [f32; 3],
    std: [f32; 3],
) -> ModelSpec {
    ModelSpec {
        name,
        arch,
        pretrained,
        hub,
        layout,
        architecture: ClipArchitecture {
            text,
            vision,
            embed_dim,
            activation,
            // Every CLIP's LayerNorms use torch's default.
            layer_norm_eps: 1e-5,
        },
        mean,
        std,
        multilingual: None,
    }
}

/// M-CLIP `name`: its text tower from the hub repository of the same name,
/// the image tower of `image`, the registry entry CLIP-as-service pairs it
/// with. The text tower embeds into the image tower's width.
const fn mclip(
    (name, pretrained): (&'static str, &'static str),
    text: MclipTextArchitecture,
    image: ModelSpec,
) -> ModelSpec {
    assert!(text.embed_dim == image.architecture.embed_dim);
    ModelSpec {
        name,
        arch: "M-CLIP",
        pretrained,
        multilingual: Some(MultilingualText {
            hub: HubFiles {
                repo: name,
                revision: "main",
                config: "config.json",
                weights: "pytorch_model.bin",
                tokenizer: "tokenizer.json",
            },
            architecture: text,
        }),
        ..image
    }
}

/// An open_clip-layout entry with OpenAI's normalisation: `(name, arch,
/// pretrained)`, the hub repository, `(embed_dim, text, vision, activation)`.
const fn open_clip_entry(
    (name, arch, pretrained): (&'static str, &'static str, &'static str),
    repo: &'static str,
    (embed_dim, text, vision, activation): (usize, TextTower, VisionTower, Activation),
) -> ModelSpec {
    entry(
        name,
        arch,
        pretrained,
        open_clip(repo),
        WeightsLayout::OpenClip,
        embed_dim,
        text,
        vision,
        activation,
        OPENAI_MEAN,
        OPENAI_STD,
    )
}

use Activation::{Gelu, QuickGelu};
use WeightsLayout::{OpenClip, Transformers};

const VIT_B_32_OPENAI: ModelSpec = entry(
    "ViT-B-32::openai",
    "ViT-B-32",
    "openai",
    transformers("openai/clip-vit-base-patch32"),
    Transformers,
    512,
    B32_TEXT,
    B32_VISION,
    QuickGelu,
    OPENAI_MEAN,
    OPENAI_STD,
);

const VIT_L_14_OPENAI: ModelSpec = entry(
    "ViT-L-14::openai",
    "ViT-L-14",
    "openai",
    transformers("openai/clip-vit-large-patch14"),
    Transformers,
    768,
    L14_TEXT,
    L14_VISION,
    QuickGelu,
    OPENAI_MEAN,
    OPENAI_STD,
);

const VIT_B_16_PLUS_240_LAION400M_E31: ModelSpec = open_clip_entry(
    (
        "ViT-B-16-plus-240::laion400m_e31",
        "ViT-B-16-plus-240",
        "laion400m_e31",
    ),
    "timm/vit_base_patch16_plus_clip_240.laion400m_e31",
    (640, B16_PLUS_240_TEXT, B16_PLUS_240_VISION, Gelu),
);

/// Every model repo-gen knows, in the order `repo-gen models` lists them.
pub static MODELS: &[ModelSpec] = &[
    // OpenAI's weights, as converted by Hugging Face. The ViT-B-32 and
    // ViT-L-14 repos are known to carry model.safetensors on main; for
    // ViT-B-16 and ViT-L-14-336 that was not confirmed (their main branch
    // may hold only pytorch_model.bin).
    VIT_B_32_OPENAI,
    entry(
        "ViT-B-16::openai",
        "ViT-B-16",
        "openai",
        transformers("openai/clip-vit-base-patch16"),
        Transformers,
        512,
        B16_TEXT,
        B16_VISION,
        QuickGelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    VIT_L_14_OPENAI,
    entry(
        "ViT-L-14-336::openai",
        "ViT-L-14-336",
        "openai",
        transformers("openai/clip-vit-large-patch14-336"),
        Transformers,
        768,
        L14_TEXT,
        L14_336_VISION,
        QuickGelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    // LAION-2B: LAION's repos hold both layouts; the transformers one is used.
    entry(
        "ViT-B-32::laion2b-s34b-b79k",
        "ViT-B-32",
        "laion2b-s34b-b79k",
        transformers("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        Transformers,
        512,
        B32_TEXT,
        B32_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    // LAION-400M: open_clip's pretrained.py points these at timm's dual-use
    // (open_clip + timm) repos. The repo names are open_clip's; that each
    // repo holds open_clip_model.safetensors (and not only
    // open_clip_pytorch_model.bin) is inferred from timm's sibling CLIP repos
    // and not confirmed for every one of the six.
    //
    // The ViT-B-32 LAION-400M weights were trained with QuickGELU (open_clip
    // lists them under ViT-B-32-quickgelu); ViT-B-16 and ViT-L-14 with GELU.
    entry(
        "ViT-B-16::laion400m_e31",
        "ViT-B-16",
        "laion400m_e31",
        open_clip("timm/vit_base_patch16_clip_224.laion400m_e31"),
        OpenClip,
        512,
        B16_TEXT,
        B16_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-B-16::laion400m_e32",
        "ViT-B-16",
        "laion400m_e32",
        open_clip("timm/vit_base_patch16_clip_224.laion400m_e32"),
        OpenClip,
        512,
        B16_TEXT,
        B16_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-B-32::laion400m_e31",
        "ViT-B-32",
        "laion400m_e31",
        open_clip("timm/vit_base_patch32_clip_224.laion400m_e31"),
        OpenClip,
        512,
        B32_TEXT,
        B32_VISION,
        QuickGelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-B-32::laion400m_e32",
        "ViT-B-32",
        "laion400m_e32",
        open_clip("timm/vit_base_patch32_clip_224.laion400m_e32"),
        OpenClip,
        512,
        B32_TEXT,
        B32_VISION,
        QuickGelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-L-14::laion400m_e31",
        "ViT-L-14",
        "laion400m_e31",
        open_clip("timm/vit_large_patch14_clip_224.laion400m_e31"),
        OpenClip,
        768,
        L14_TEXT,
        L14_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-L-14::laion400m_e32",
        "ViT-L-14",
        "laion400m_e32",
        open_clip("timm/vit_large_patch14_clip_224.laion400m_e32"),
        OpenClip,
        768,
        L14_TEXT,
        L14_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    // open_clip preprocesses this one with mean = std = 0.5 (INCEPTION_*).
    entry(
        "ViT-L-14::laion2b-s32b-b82k",
        "ViT-L-14",
        "laion2b-s32b-b82k",
        transformers("laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
        Transformers,
        768,
        L14_TEXT,
        L14_VISION,
        Gelu,
        HALF,
        HALF,
    ),
    entry(
        "ViT-H-14::laion2b-s32b-b79k",
        "ViT-H-14",
        "laion2b-s32b-b79k",
        transformers("laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
        Transformers,
        1024,
        H14_TEXT,
        H14_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    entry(
        "ViT-g-14::laion2b-s12b-b42k",
        "ViT-g-14",
        "laion2b-s12b-b42k",
        transformers("laion/CLIP-ViT-g-14-laion2B-s12B-b42K"),
        Transformers,
        1024,
        G14_TEXT,
        G14_VISION,
        Gelu,
        OPENAI_MEAN,
        OPENAI_STD,
    ),
    // ResNet CLIPs (open_clip's ModifiedResNet), from timm's open_clip repos
    // as open_clip's pretrained.py names them. All were trained with
    // QuickGELU, yfcc15m and cc12m included (open_clip's quick_gelu=True).
    // open_clip_model.safetensors is confirmed on the hub for RN50::openai,
    // RN50x16::openai and RN50x64::openai; assumed for the other five.
    open_clip_entry(
        ("RN50::openai", "RN50", "openai"),
        "timm/resnet50_clip.openai",
        (1024, B32_TEXT, RN50_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN50::yfcc15m", "RN50", "yfcc15m"),
        "timm/resnet50_clip.yfcc15m",
        (1024, B32_TEXT, RN50_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN50::cc12m", "RN50", "cc12m"),
        "timm/resnet50_clip.cc12m",
        (1024, B32_TEXT, RN50_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN101::openai", "RN101", "openai"),
        "timm/resnet101_clip.openai",
        (512, B32_TEXT, RN101_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN101::yfcc15m", "RN101", "yfcc15m"),
        "timm/resnet101_clip.yfcc15m",
        (512, B32_TEXT, RN101_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN50x4::openai", "RN50x4", "openai"),
        "timm/resnet50x4_clip.openai",
        (640, RN50X4_TEXT, RN50X4_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN50x16::openai", "RN50x16", "openai"),
        "timm/resnet50x16_clip.openai",
        (768, RN50X16_TEXT, RN50X16_VISION, QuickGelu),
    ),
    open_clip_entry(
        ("RN50x64::openai", "RN50x64", "openai"),
        "timm/resnet50x64_clip.openai",
        (1024, RN50X64_TEXT, RN50X64_VISION, QuickGelu),
    ),
    // LAION-400M ViT-B-16-plus-240 (GELU) and LAION-2B ViT-B-32 epoch 16
    // (GELU), timm's open_clip repos as pretrained.py names them; the
    // safetensors file in them is assumed, not confirmed.
    VIT_B_16_PLUS_240_LAION400M_E31,
    open_clip_entry(
        (
            "ViT-B-16-plus-240::laion400m_e32",
            "ViT-B-16-plus-240",
            "laion400m_e32",
        ),
        "timm/vit_base_patch16_plus_clip_240.laion400m_e32",
        (640, B16_PLUS_240_TEXT, B16_PLUS_240_VISION, Gelu),
    ),
    open_clip_entry(
        ("ViT-B-32::laion2b_e16", "ViT-B-32", "laion2b_e16"),
        "timm/vit_base_patch32_clip_224.laion2b_e16",
        (512, B32_TEXT, B32_VISION, Gelu),
    ),
    // M-CLIP's multilingual text towers, paired as CLIP-as-service pairs
    // them (its mclip_model.py); the LaBSE base is BERT-base sized.
    mclip(
        (
            "M-CLIP/XLM-Roberta-Large-Vit-B-32",
            "XLM-Roberta-Large-Vit-B-32",
        ),
        MclipTextArchitecture::xlm_roberta_large(512),
        VIT_B_32_OPENAI,
    ),
    mclip(
        (
            "M-CLIP/XLM-Roberta-Large-Vit-L-14",
            "XLM-Roberta-Large-Vit-L-14",
        ),
        MclipTextArchitecture::xlm_roberta_large(768),
        VIT_L_14_OPENAI,
    ),
    mclip(
        (
            "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus",
            "XLM-Roberta-Large-Vit-B-16Plus",
        ),
        MclipTextArchitecture::xlm_roberta_large(640),
        VIT_B_16_PLUS_240_LAION400M_E31,
    ),
    mclip(
        ("M-CLIP/LABSE-Vit-L-14", "LABSE-Vit-L-14"),
        MclipTextArchitecture::labse(768),
        VIT_L_14_OPENAI,
    ),
];
