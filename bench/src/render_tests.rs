//! The whole report from a results folder holding every section, as a full
//! run leaves it (figures made up, shaped as the scripts write them).

use std::fs;
use std::path::Path;

use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn csv(per_second: f64) -> String {
    format!("Concurrency,Inferences/Second,p50 latency\n1,{per_second},2000\n")
}

fn results_with_every_section(dir: &Path) {
    write(dir, "mode", "full\n");
    write(dir, "sentences", "10\n");
    let mut runs = String::new();
    for (implementation, rate, cpu) in [
        ("clip", 100.0, 4.0),
        ("python", 30.0, 9.0),
        ("python_draft", 60.0, 6.0),
    ] {
        let csv_name = format!("pa/{implementation}.csv");
        write(dir, &csv_name, &csv(rate));
        runs +=
            &format!("preprocess\t{implementation}\tm\t2mp\t1\t1\t2\t{csv_name}\t0\t{cpu}\t400\n");
    }
    write(dir, "pa/ensemble.csv", &csv(20.0));
    write(dir, "pa/pixels.csv", &csv(27.0));
    runs += "ensemble\tclip_image\tclip_image\timage_2mp\t1\t8\t2\tpa/ensemble.csv\t0\t10.0\t200\n";
    runs += "ensemble\tclip_image_pixels\tclip_image_pixels\tpixels\t1\t8\t2\tpa/pixels.csv\t0\t10.0\t270\n";
    write(dir, "runs.tsv", &runs);
    let encoder = json!({"results": [{"batch": 1, "items_per_second": 20.0}, {"batch": 8, "items_per_second": 28.0}]});
    write(dir, "encoder_image.json", &encoder.to_string());
    let stats = |compute: u64, count: u64| {
        json!({"model_stats": [{"inference_count": count, "inference_stats": {
            "compute_input": {"ns": "0"}, "compute_infer": {"ns": compute.to_string()}, "compute_output": {"ns": "0"}}}]})
        .to_string()
    };
    for (model, compute) in [
        ("clip_image_preprocess", 1_000_000_000u64),
        ("clip_image_encoder", 9_000_000_000),
    ] {
        write(
            dir,
            &format!("stats/clip_image_before_{model}.json"),
            &stats(0, 0),
        );
        write(
            dir,
            &format!("stats/clip_image_after_{model}.json"),
            &stats(compute, 200),
        );
    }
    let inprocess = |rate: f64| {
        json!({"cores": 2, "results": [
            {"size": "2mp", "threads": 1, "images": 100, "cpu_s": 100.0 / rate, "images_per_second": rate},
            {"size": "2mp", "threads": 2, "images": 200, "cpu_s": 200.0 / rate, "images_per_second": rate * 2.0}]})
        .to_string()
    };
    write(dir, "inprocess/clip.json", &inprocess(110.0));
    write(dir, "inprocess/floor.json", &inprocess(116.0));
    write(dir, "inprocess/dali.json", &inprocess(46.0));
    write(
        dir,
        "pixel_path.tsv",
        "photo\tpath\timages\tserver_cpu_s\tclient_cpu_s\twall_s\twire_bytes\n\
         2mp\tserver\t64\t0.64\t0.2\t2.0\t800000\n2mp\tlocal\t64\t0.02\t1.0\t1.5\t150528\n",
    );
    write(
        dir,
        "int8.md",
        "# int8 vs fp32 encoders, ViT-B-32::openai, 2 cores\n\nimage encoder, items/s (2 intra-op threads)\n\n\
         | batch | fp32 | int8 | ort-quantize_dynamic |\n|---|---|---|---|\n| 8 | 28.0 | 40.0 | 35.0 |\n\n\
         image embeddings against fp32 over 8 rows\n\n| model | min cosine | mean cosine |\n|---|---|---|\n\
         | int8 | 0.99600 | 0.99800 |\n| ort-quantize_dynamic | 0.99100 | 0.99500 |\n",
    );
    write(dir, "index_items", "1000000\n");
    write(
        dir,
        "index.txt",
        "faiss 1.15.1 IndexHNSWFlat(M=16, efConstruction=40), 2 threads: built 1000000 items in 300.0 s (600.0 CPU-s): 3333 adds/s\n\
         appended 1000000 items in 250.0 s (480.0 CPU-s): 4000 appends/s, 2083 per CPU-second\n\
         \x20 ef_search  64: recall@10 0.960, p50 0.900 ms, p99 2.000 ms\n\
         \x20 efSearch  64: recall@10 0.970, p50 0.800 ms, p99 1.500 ms\n",
    );
}

#[test]
fn every_section_renders_and_its_targets_are_judged() {
    let dir = std::env::temp_dir().join(format!("bench-render-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    results_with_every_section(&dir);
    let manifest = json!({"quality": 90, "sizes": [{"name": "2mp", "width": 1632, "height": 1224,
        "megapixels": 2.0, "bytes_per_pixel": 0.4, "files": [{"file": "2mp/00.jpg", "bytes": 800000}]}]});
    let (md, groups) = crate::report::render(&dir, &manifest).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    for heading in [
        "## Against the best peers",
        "## End to end against the encoder alone",
        "## Pixel path against bytes path",
        "## int8 against fp32 encoders",
        "## Index: clip-index against faiss HNSW",
        "## Targets missed in this run",
    ] {
        assert!(md.contains(heading), "no {heading:?} in\n{md}");
    }
    // Pixel path: 10 ms against 0.31 ms of server CPU per image.
    assert!(md.contains("**32.0x**"), "{md}");
    // int8 40 / fp32 28, and the pixel ensemble at 27 of 28 items/s.
    assert!(md.contains("**1.43x**"), "{md}");
    assert!(md.contains("**96.4%**"), "{md}");
    // Combined limit: 1 / (1/28 + (1/110)/2) items/s (110 images per CPU-second in process).
    let combined = crate::ensemble::combined_limit(28.0, 1.0 / 110.0, 2);
    assert!(md.contains(&format!("{combined:.1}/s")), "{md}");
    // In Triton 400 images over 4 CPU-s against 110 per CPU-s in process.
    assert!(md.contains("**0.91x** | met"), "{md}");
    let missed = &md[md.find("## Targets missed").unwrap()..];
    assert!(missed.contains("int8 image encoder 1.43x fp32"), "{missed}");
    assert!(missed.contains("image ensemble at 71."), "{missed}");
    assert!(!missed.contains("pixel path:"), "{missed}");
    assert!(!missed.contains("index"), "{missed}");
    // The chart's first bar is against the best Python model (draft).
    assert_eq!(groups[0].ratios[0], Some(100.0 / 60.0));
}

/// Signature every report section shares.
pub(crate) type Section = fn(&mut String, &Path, bool, &mut Vec<String>) -> anyhow::Result<()>;

/// One section rendered (full run) from a results folder holding only `file`:
/// its Markdown and the targets it missed.
pub(crate) fn render_alone(section: Section, file: &str, text: &str) -> (String, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("bench-{file}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    let (mut w, mut missed) = (String::new(), Vec::new());
    section(&mut w, &dir, false, &mut missed).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (w, missed)
}
