//! `verify`: holds every server of the deployment to the conformance probes
//! repo-gen embedded when it wrote the repository
//! ([`clip_contract::probes`]), ensemble by ensemble, by cosine similarity.
//! Catches other weights, other normalisation constants, a lossy TensorRT
//! or FP16 build or a wrong deployment before it fills an index.

use base64::Engine;
use clip_contract::{param, probes};

use crate::input::Modality;
use crate::models::ModelInfo;
use crate::rank::cosine;
use crate::tensor::{bytes_request, output_as_f32};
use crate::triton::Triton;
use crate::{Client, Error};

/// Default lowest cosine a probe may have: what FP16 and TensorRT builds of
/// a correct model keep (they differ in the third or fourth decimal), far
/// above what another checkpoint or other normalisation gives.
pub const DEFAULT_MIN_COSINE: f32 = 0.99;

/// One ensemble on one server against its stored probes.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub server: String,
    pub model: String,
    /// Each probe (a sentence, or an image's name) and the cosine between the
    /// server's embedding and the stored one; or why the ensemble could not
    /// be checked at all.
    pub outcome: Result<Vec<(String, f32)>, String>,
}

impl Verification {
    /// Checked, and every probe at least `min_cosine`.
    pub fn passed(&self, min_cosine: f32) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|probes| probes.iter().all(|(_, c)| *c >= min_cosine))
    }
}

/// The probes of `modality`: their names and the bytes sent.
fn probe_inputs(modality: Modality) -> Vec<(String, &'static [u8])> {
    match modality {
        Modality::Text => probes::SENTENCES
            .iter()
            .map(|s| (format!("{s:?}"), s.as_bytes()))
            .collect(),
        Modality::Image => probes::IMAGES
            .iter()
            .map(|(name, bytes)| ((*name).to_owned(), *bytes))
            .collect(),
    }
}

/// The stored embeddings of the ensemble whose config `parameters` are
/// given, one row per probe, or why there are none to use.
fn stored(
    parameter: impl Fn(&str) -> Option<String>,
    probes: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let set = parameter(param::PROBE_SET).ok_or(
        "the ensemble has no conformance probes (a repository from --onnx-dir, or from a \
         repo-gen before probes existed); regenerate it with repo-gen",
    )?;
    if set != probes::fingerprint() {
        return Err(format!(
            "the repository's probe set {set} is not this client's {}; use a clip-client \
             of the repo-gen version that wrote the repository",
            probes::fingerprint()
        ));
    }
    let encoded = parameter(param::PROBE_EMBEDDINGS)
        .ok_or_else(|| format!("{} is missing", param::PROBE_EMBEDDINGS))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("{} is not base64: {e}", param::PROBE_EMBEDDINGS))?;
    let values = crate::f32_from_raw(&bytes).map_err(|e| e.to_string())?;
    if values.len() != probes * dim {
        return Err(format!(
            "{} holds {} values, not {probes} probes of {dim}",
            param::PROBE_EMBEDDINGS,
            values.len()
        ));
    }
    Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

/// `modality`'s ensemble on `triton`, probe by probe (one request each, so
/// any batch size serves).
async fn verify_on(
    triton: &Triton,
    name: &str,
    modality: Modality,
) -> Result<Vec<(String, f32)>, String> {
    let config = triton.model_config(name).await.map_err(|e| e.to_string())?;
    let info = ModelInfo::from_config(modality, &config).map_err(|e| e.to_string())?;
    let inputs = probe_inputs(modality);
    let parameter = |key: &str| config.parameters.get(key).map(|p| p.string_value.clone());
    let expected = stored(parameter, inputs.len(), info.embedding_dim)?;
    let mut results = Vec::new();
    for ((probe, bytes), want) in inputs.into_iter().zip(expected) {
        let request = bytes_request(name, &info.input.name, &info.output.name, &[bytes]);
        let got = triton
            .infer(request)
            .await
            .and_then(|response| output_as_f32(&response, &info.output.name))
            .map_err(|e| format!("{probe}: {e}"))?;
        results.push((probe, cosine(&got, &want)));
    }
    Ok(results)
}

impl Client {
    /// Every server, both ensembles, every probe: one [`Verification`] per
    /// server and ensemble. Servers that cannot be reached are reported in
    /// their entries, not as an error.
    pub async fn verify(&self) -> Result<Vec<Verification>, Error> {
        let mut out = Vec::new();
        for triton in self.servers.each() {
            for modality in [Modality::Text, Modality::Image] {
                let model = self.ensemble_name(modality);
                out.push(Verification {
                    server: triton.url().to_owned(),
                    outcome: verify_on(triton, &model, modality).await,
                    model,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(set: &str, values: &[f32]) -> impl Fn(&str) -> Option<String> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let set = set.to_owned();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        move |key: &str| match key {
            param::PROBE_SET => Some(set.clone()),
            param::PROBE_EMBEDDINGS => Some(encoded.clone()),
            _ => None,
        }
    }

    #[test]
    fn stored_probes_are_read_back_row_by_row() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let rows = stored(parameters(&probes::fingerprint(), &values), 3, 2).unwrap();
        assert_eq!(rows, [[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]);
    }

    #[test]
    fn another_probe_set_or_a_wrong_count_is_refused_with_the_reason() {
        let values = [1.0f32; 6];
        let other = stored(parameters("0123456789abcdef", &values), 3, 2).unwrap_err();
        assert!(other.contains("probe set 0123456789abcdef"), "{other}");
        let short = stored(parameters(&probes::fingerprint(), &values), 3, 4).unwrap_err();
        assert!(
            short.contains("holds 6 values, not 3 probes of 4"),
            "{short}"
        );
        let none = stored(|_: &str| None, 3, 2).unwrap_err();
        assert!(none.contains("no conformance probes"), "{none}");
    }

    #[test]
    fn a_verification_passes_only_when_every_probe_does() {
        let entry = |outcome| Verification {
            server: "grpc://a".into(),
            model: "clip_text".into(),
            outcome,
        };
        assert!(entry(Ok(vec![("a".into(), 0.999), ("b".into(), 0.995)])).passed(0.99));
        assert!(!entry(Ok(vec![("a".into(), 0.999), ("b".into(), 0.9)])).passed(0.99));
        assert!(!entry(Err("down".into())).passed(0.0));
    }
}
