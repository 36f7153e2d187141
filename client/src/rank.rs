//! `rank`: candidates ordered by how well they match a query, scored as
//! CLIP-as-service's `/rank` does: `clip_score` is the softmax over the
//! candidates of `logit_scale x cosine`, and the raw cosine rides along.

use crate::client::Client;
use crate::encode::{EncodeOptions, Encoded};
use crate::input::Input;
use crate::Error;

/// One candidate with its scores.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub input: Input,
    /// Share of the softmax over all candidates; the scores sum to 1.
    pub clip_score: f32,
    /// Cosine similarity to the query, in [-1, 1].
    pub cosine: f32,
}

/// Cosine similarity; 0 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms > 0.0 {
        dot / norms
    } else {
        0.0
    }
}

/// `(cosine, clip_score)` of each candidate, in candidate order.
pub fn clip_scores(query: &[f32], candidates: &[Vec<f32>], logit_scale: f32) -> Vec<(f32, f32)> {
    let cosines: Vec<f32> = candidates.iter().map(|c| cosine(query, c)).collect();
    // Softmax with the maximum subtracted so exp() cannot overflow.
    let logits: Vec<f32> = cosines.iter().map(|c| logit_scale * c).collect();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    cosines
        .into_iter()
        .zip(exps)
        .map(|(cosine, e)| (cosine, e / total))
        .collect()
}

impl Client {
    /// Ranks `candidates` against `query`: typically an image against
    /// sentences (zero-shot tagging) or a sentence against images. Best
    /// first. Any input that fails to encode fails the call, naming it.
    pub async fn rank<Q, I>(
        &self,
        query: Q,
        candidates: I,
        options: &EncodeOptions,
    ) -> Result<Vec<Ranked>, Error>
    where
        Q: Into<Input>,
        I: IntoIterator,
        I::Item: Into<Input>,
    {
        self.rank_with_progress(query, candidates, options, |_| {})
            .await
    }

    /// [`Client::rank`], telling `on_encoded` of each input (the query
    /// first, then the candidates in order) as its result arrives.
    pub async fn rank_with_progress<Q, I, P>(
        &self,
        query: Q,
        candidates: I,
        options: &EncodeOptions,
        mut on_encoded: P,
    ) -> Result<Vec<Ranked>, Error>
    where
        Q: Into<Input>,
        I: IntoIterator,
        I::Item: Into<Input>,
        P: FnMut(&Encoded),
    {
        let query = query.into();
        let query_model = self.model(query.modality_or_error(0)?).await?.clone();
        let inputs = std::iter::once(query).chain(candidates.into_iter().map(Into::into));
        let mut encoded = Vec::new();
        self.encode_each(inputs, options, |item| {
            on_encoded(&item);
            encoded.push(item);
            Ok(())
        })
        .await?;
        let mut encoded = encoded.into_iter();
        let query = encoded
            .next()
            .expect("the query is the first input")
            .result?;
        let mut candidates = Vec::new();
        let mut embeddings = Vec::new();
        for item in encoded {
            embeddings.push(item.result?);
            candidates.push(item.input);
        }
        let scores = clip_scores(&query, &embeddings, query_model.logit_scale());
        let mut ranked: Vec<Ranked> = candidates
            .into_iter()
            .zip(scores)
            .map(|(input, (cosine, clip_score))| Ranked {
                input,
                clip_score,
                cosine,
            })
            .collect();
        ranked.sort_by(|a, b| b.clip_score.total_cmp(&a.clip_score));
        Ok(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.70710677).abs() < 1e-6);
        assert_eq!(cosine(&[1.0, 2.0], &[-2.0, 1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert!((cosine(&[2.0, 0.0], &[-5.0, 0.0]) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn clip_scores_are_the_softmax_of_scaled_cosines() {
        let query = [1.0, 0.0];
        let candidates = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]];
        let scores = clip_scores(&query, &candidates, 100.0);
        let total: f32 = scores.iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Worked by hand: logits 100, 0, 70.71 -> exp relative to the max.
        let e1 = (-100.0f32).exp();
        let e2 = (70.71068f32 - 100.0).exp();
        let expected = [
            1.0 / (1.0 + e1 + e2),
            e1 / (1.0 + e1 + e2),
            e2 / (1.0 + e1 + e2),
        ];
        for ((cos, score), want) in scores.iter().zip(expected) {
            assert!((score - want).abs() < 1e-6, "{cos} {score} {want}");
        }
        assert_eq!(scores[1].0, 0.0);
    }

    #[test]
    fn a_scale_of_one_keeps_scores_close() {
        let scores = clip_scores(&[1.0, 0.0], &[vec![1.0, 0.0], vec![0.0, 1.0]], 1.0);
        let e = std::f32::consts::E;
        assert!((scores[0].1 - e / (e + 1.0)).abs() < 1e-6);
        assert!(clip_scores(&[1.0], &[], 100.0).is_empty());
    }
}
