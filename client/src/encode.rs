//! `encode`: inputs in, embeddings out, in input order.
//!
//! The inputs are pulled lazily and grouped into batches per modality. At
//! most `concurrency` batches are in flight (parallel unary `ModelInfer`
//! calls over one HTTP/2 connection); an image batch reads its files only
//! when it starts, so memory holds `concurrency x batch_size` images at
//! most, however long the input. When the server rejects a batch as
//! invalid, the batch is split in halves until the bad items are alone, so
//! one corrupt image costs only itself. An [`Input::Invalid`] is never
//! sent: its error goes out at once, in its own place.
//!
//! With [`Preprocess::Local`], images are decoded, resized and cropped here,
//! with the backend's own code and settings, and their pixels go to the
//! pixel path's model: the server does no preprocessing, and an image that
//! cannot be decoded fails here, alone.

use std::collections::{BTreeMap, VecDeque};

use clip_contract::DataType;
use futures_util::future::BoxFuture;
use futures_util::{stream, FutureExt, Stream, StreamExt};

use crate::client::Client;
use crate::error::{ItemError, ItemFailure};
use crate::input::{ImageSource, Input, Modality};
use crate::models::ModelInfo;
use crate::{bytes_request, fixed_request, output_as_f32, Error};

/// How `encode` batches and sends. Progress is what the results say as
/// they arrive: `encode_each`'s items, `encode_with_callbacks`' requests.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Inputs per request (capped by the ensemble's `max_batch_size`).
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Scale each embedding to unit length.
    pub normalize: bool,
    /// Where images are decoded.
    pub preprocess: Preprocess,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            batch_size: 32,
            concurrency: 4,
            normalize: false,
            preprocess: Preprocess::Server,
        }
    }
}

/// Where images are decoded, resized and cropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocess {
    /// The server's image ensemble does it: the client sends the files.
    #[default]
    Server,
    /// The client does it, with the same code and the settings the server's
    /// pixel path model gives, and sends `S x S x 3` pixels to that model
    /// (`repo-gen --pixel-path`). The embeddings are the server path's.
    Local,
}

/// One input's outcome.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Position in the input sequence, from 0.
    pub index: usize,
    pub input: Input,
    /// The embedding, or why there is none.
    pub result: Result<Vec<f32>, ItemError>,
}

/// Counts of a finished `encode` job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub encoded: usize,
    pub failed: usize,
}

/// What the batcher hands out.
enum Batch {
    /// Inputs of one request, all of one modality, with their positions.
    Request {
        modality: Modality,
        items: Vec<(usize, Input)>,
    },
    /// An [`Input::Invalid`] with its error: nothing to send.
    Invalid(Encoded),
}

/// Groups a lazy input sequence into per-modality batches. When one
/// modality's batch fills, the other's partial batch goes out with it, so
/// a rare image among many sentences does not hold back ordered output
/// (and the reordering buffer) for long.
struct Batcher<I> {
    inputs: I,
    size: usize,
    next_index: usize,
    text: Vec<(usize, Input)>,
    image: Vec<(usize, Input)>,
    ready: VecDeque<Batch>,
}

impl<I: Iterator<Item = Input>> Batcher<I> {
    fn new(inputs: I, size: usize) -> Self {
        Batcher {
            inputs,
            size: size.max(1),
            next_index: 0,
            text: Vec::new(),
            image: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    fn pending(&mut self, modality: Modality) -> &mut Vec<(usize, Input)> {
        match modality {
            Modality::Text => &mut self.text,
            Modality::Image => &mut self.image,
        }
    }

    fn flush(&mut self, modality: Modality) {
        let items = std::mem::take(self.pending(modality));
        if !items.is_empty() {
            self.ready.push_back(Batch::Request { modality, items });
        }
    }

    /// Flushes both partial batches, the one holding the oldest input first.
    fn flush_all(&mut self) {
        let first = |v: &Vec<(usize, Input)>| v.first().map_or(usize::MAX, |(i, _)| *i);
        let order = if first(&self.text) <= first(&self.image) {
            [Modality::Text, Modality::Image]
        } else {
            [Modality::Image, Modality::Text]
        };
        order.into_iter().for_each(|m| self.flush(m));
    }
}

impl<I: Iterator<Item = Input>> Iterator for Batcher<I> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        while self.ready.is_empty() {
            let Some(input) = self.inputs.next() else {
                self.flush_all();
                break;
            };
            let index = self.next_index;
            self.next_index += 1;
            let modality = match input.modality_or_error(index) {
                Ok(modality) => modality,
                Err(error) => {
                    // Nothing to send: it leaves at once, without waiting
                    // for a partial batch (ordered output puts it in place).
                    self.ready.push_back(Batch::Invalid(Encoded {
                        index,
                        input,
                        result: Err(error),
                    }));
                    continue;
                }
            };
            let size = self.size;
            let pending = self.pending(modality);
            pending.push((index, input));
            if pending.len() >= size {
                self.flush_all();
            }
        }
        self.ready.pop_front()
    }
}

/// Scales `v` to unit L2 norm; an all-zero vector stays as it is.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Outcome of one item inside a request: an embedding or the server's reason.
type ItemOutcome = (usize, Result<Vec<f32>, String>);

impl Client {
    /// Embeds every input and returns one [`Encoded`] per input, in input
    /// order. Per-input failures are in each `result`; the `Err` of the
    /// call is for failures of the whole job (server gone, model missing).
    pub async fn encode<I>(&self, inputs: I, options: &EncodeOptions) -> Result<Vec<Encoded>, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
    {
        let mut out = Vec::new();
        self.encode_each(inputs, options, |item| {
            out.push(item);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Streams results to `on_item` in input order, holding only the
    /// batches in flight. An `Err` from `on_item` (e.g. a failed write)
    /// stops the job and is returned.
    pub async fn encode_each<I, F>(
        &self,
        inputs: I,
        options: &EncodeOptions,
        mut on_item: F,
    ) -> Result<Summary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        F: FnMut(Encoded) -> Result<(), Error>,
    {
        let inputs = inputs.into_iter().map(Into::into);
        let mut batches = std::pin::pin!(self.encode_batches(inputs, options));
        let mut summary = Summary::default();
        // Results that arrived before an earlier input's batch did.
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        while let Some(batch) = batches.next().await {
            for item in batch? {
                waiting.insert(item.index, item);
            }
            while let Some(item) = waiting.remove(&next) {
                next += 1;
                match item.result {
                    Ok(_) => summary.encoded += 1,
                    Err(_) => summary.failed += 1,
                }
                on_item(item)?;
            }
        }
        debug_assert!(waiting.is_empty());
        Ok(summary)
    }

    /// Like [`Client::encode_each`], with CLIP-as-service's per-request
    /// callbacks: `on_done` gets each request's successful items, `on_error`
    /// each failed item. Batches are reported as they complete, not in
    /// input order.
    pub async fn encode_with_callbacks<I, D, E>(
        &self,
        inputs: I,
        options: &EncodeOptions,
        mut on_done: D,
        mut on_error: E,
    ) -> Result<Summary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        D: FnMut(&[Encoded]),
        E: FnMut(&ItemError),
    {
        let inputs = inputs.into_iter().map(Into::into);
        let mut batches = std::pin::pin!(self.encode_batches(inputs, options));
        let mut summary = Summary::default();
        while let Some(batch) = batches.next().await {
            let (done, failed): (Vec<_>, Vec<_>) =
                batch?.into_iter().partition(|item| item.result.is_ok());
            summary.encoded += done.len();
            summary.failed += failed.len();
            if !done.is_empty() {
                on_done(&done);
            }
            for item in &failed {
                if let Err(error) = &item.result {
                    on_error(error);
                }
            }
        }
        Ok(summary)
    }

    /// The results of each request, in the order the requests were formed
    /// (input order within a request; across text and image requests the
    /// order may interleave). Polling drives up to `concurrency` requests.
    pub fn encode_batches<'a, I>(
        &'a self,
        inputs: I,
        options: &EncodeOptions,
    ) -> impl Stream<Item = Result<Vec<Encoded>, Error>> + 'a
    where
        I: Iterator<Item = Input> + 'a,
    {
        let (normalize, preprocess) = (options.normalize, options.preprocess);
        stream::iter(Batcher::new(inputs, options.batch_size))
            .map(move |batch| self.run_batch(batch, normalize, preprocess))
            .buffered(options.concurrency.max(1))
    }

    /// Reads the batch's images (and crops them, for the pixel path), sends
    /// it (in chunks of the model's largest batch) and pairs every input
    /// with its outcome.
    async fn run_batch(
        &self,
        batch: Batch,
        normalize: bool,
        preprocess: Preprocess,
    ) -> Result<Vec<Encoded>, Error> {
        let (modality, items) = match batch {
            Batch::Request { modality, items } => (modality, items),
            Batch::Invalid(encoded) => return Ok(vec![encoded]),
        };
        let payloads = self.payloads(&items).await;
        let payloads: Vec<Result<Vec<u8>, ItemFailure>> = payloads
            .into_iter()
            .map(|p| p.map_err(ItemFailure::Read))
            .collect();
        let (info, payloads) = match (modality, preprocess) {
            (Modality::Image, Preprocess::Local) => {
                let pixel = self.pixel_model().await?;
                (&pixel.info, crop_locally(pixel, payloads).await)
            }
            _ => (self.model(modality).await?, payloads),
        };
        let mut readable = Vec::new();
        let mut outcomes: Vec<Option<Result<Vec<f32>, ItemFailure>>> = Vec::new();
        for (position, payload) in payloads.into_iter().enumerate() {
            match payload {
                Ok(bytes) => {
                    readable.push((position, bytes));
                    outcomes.push(None);
                }
                Err(failure) => outcomes.push(Some(Err(failure))),
            }
        }
        let mut served = Vec::new();
        for chunk in readable.chunks(info.max_batch_size) {
            self.infer_isolating_failures(info, chunk, &mut served)
                .await?;
        }
        for (position, result) in served {
            outcomes[position] = Some(result.map_err(ItemFailure::Rejected));
        }
        Ok(items
            .into_iter()
            .zip(outcomes)
            .map(|((index, input), outcome)| {
                let result = match outcome.expect("every readable item was sent") {
                    Ok(mut embedding) => {
                        if normalize {
                            l2_normalize(&mut embedding);
                        }
                        Ok(embedding)
                    }
                    Err(failure) => Err(ItemError {
                        index,
                        source_text: input.short_source(),
                        failure,
                    }),
                };
                Encoded {
                    index,
                    input,
                    result,
                }
            })
            .collect())
    }

    /// The bytes each item of the batch sends, read all at once.
    async fn payloads(&self, items: &[(usize, Input)]) -> Vec<Result<Vec<u8>, String>> {
        let reads = items.iter().map(|(_, input)| self.payload_of(input));
        futures_util::future::join_all(reads).await
    }

    /// The bytes an input sends: UTF-8 for a sentence, the encoded file
    /// for an image (read off the async threads).
    pub(crate) async fn payload_of(&self, input: &Input) -> Result<Vec<u8>, String> {
        match input {
            Input::Text(text) => Ok(text.as_bytes().to_vec()),
            Input::Image(ImageSource::Bytes(bytes)) => Ok(bytes.clone()),
            Input::Invalid { reason, .. } => Err(reason.clone()),
            Input::Image(source) => {
                let reader = self.reader.clone();
                let source = source.clone();
                tokio::task::spawn_blocking(move || reader.read(&source))
                    .await
                    .unwrap_or_else(|e| Err(format!("reader task failed: {e}")))
            }
        }
    }

    /// Sends `items` as one request; if the server rejects it as invalid,
    /// splits it in halves and retries each, so that in the end only the
    /// offending items carry the server's error.
    fn infer_isolating_failures<'a>(
        &'a self,
        info: &'a ModelInfo,
        items: &'a [(usize, Vec<u8>)],
        out: &'a mut Vec<ItemOutcome>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            match self.infer(info, items).await {
                Ok(embeddings) => {
                    let positions = items.iter().map(|(position, _)| *position);
                    out.extend(positions.zip(embeddings.into_iter().map(Ok)));
                    Ok(())
                }
                Err(Error::Status {
                    code: tonic::Code::InvalidArgument,
                    message,
                    ..
                }) => {
                    if let [(position, _)] = items {
                        out.push((*position, Err(message)));
                        return Ok(());
                    }
                    let (left, right) = items.split_at(items.len() / 2);
                    self.infer_isolating_failures(info, left, out).await?;
                    self.infer_isolating_failures(info, right, out).await
                }
                Err(other) => Err(other),
            }
        }
        .boxed()
    }

    /// One `ModelInfer` call: `items.len()` embeddings of `embedding_dim`.
    pub(crate) async fn infer(
        &self,
        info: &ModelInfo,
        items: &[(usize, Vec<u8>)],
    ) -> Result<Vec<Vec<f32>>, Error> {
        let payloads: Vec<&[u8]> = items.iter().map(|(_, bytes)| bytes.as_slice()).collect();
        let request = match info.input.data_type {
            DataType::Bytes => {
                bytes_request(&info.name, &info.input.name, &info.output.name, &payloads)
            }
            _ => fixed_request(&info.name, &info.input, &info.output.name, &payloads),
        };
        let response = self
            .servers
            .call(|t| {
                let request = request.clone();
                async move { t.infer(request).await }
            })
            .await?;
        let values = output_as_f32(&response, &info.output.name)?;
        let expected = items.len() * info.embedding_dim;
        if values.len() != expected {
            return Err(Error::Response {
                model: info.name.clone(),
                reason: format!(
                    "{} values for {} items of dimension {} (expected {expected})",
                    values.len(),
                    items.len(),
                    info.embedding_dim
                ),
            });
        }
        Ok(values
            .chunks_exact(info.embedding_dim)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// Each read image's `S x S x 3` pixels for the pixel path, decoded off the
/// async threads, the batch's images in parallel; an image that cannot be
/// decoded gets the reason the server would have given.
async fn crop_locally(
    pixel: &crate::models::PixelModel,
    payloads: Vec<Result<Vec<u8>, ItemFailure>>,
) -> Vec<Result<Vec<u8>, ItemFailure>> {
    use rayon::prelude::*;
    let preprocessor = pixel.preprocessor.clone();
    let count = payloads.len();
    tokio::task::spawn_blocking(move || {
        payloads
            .into_par_iter()
            .map(|payload| {
                let encoded = payload?;
                let mut pixels = vec![0u8; preprocessor.pixels_per_image()];
                preprocessor
                    .pixels_into(&encoded, &mut pixels)
                    .map_err(|e| ItemFailure::Preprocess(e.to_string()))?;
                Ok(pixels)
            })
            .collect()
    })
    .await
    .unwrap_or_else(|e| {
        let reason = format!("the preprocessing task failed: {e}");
        (0..count)
            .map(|_| Err(ItemFailure::Preprocess(reason.clone())))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each batch's modality (`None` for an invalid input) and positions.
    fn batches_of(inputs: Vec<Input>, size: usize) -> Vec<(Option<Modality>, Vec<usize>)> {
        Batcher::new(inputs.into_iter(), size)
            .map(|b| match b {
                Batch::Request { modality, items } => {
                    (Some(modality), items.iter().map(|(i, _)| *i).collect())
                }
                Batch::Invalid(encoded) => (None, vec![encoded.index]),
            })
            .collect()
    }

    fn batches(inputs: &[&str], size: usize) -> Vec<(Modality, Vec<usize>)> {
        let inputs = inputs.iter().map(|s| Input::detect(*s)).collect();
        batches_of(inputs, size)
            .into_iter()
            .map(|(modality, items)| (modality.expect("no invalid inputs"), items))
            .collect()
    }

    #[test]
    fn batches_fill_per_modality_and_flush_at_the_end() {
        use Modality::{Image, Text};
        assert_eq!(
            batches(&["a", "b", "c", "d", "e"], 2),
            [(Text, vec![0, 1]), (Text, vec![2, 3]), (Text, vec![4])]
        );
        assert_eq!(
            batches(&["a", "x.jpg", "b", "y.png", "c"], 2),
            [
                (Text, vec![0, 2]),
                (Image, vec![1]),
                (Image, vec![3]),
                (Text, vec![4])
            ]
        );
        // The image at 0 leaves with the first full text batch, oldest first.
        assert_eq!(
            batches(&["x.jpg", "a", "b", "c"], 2),
            [(Image, vec![0]), (Text, vec![1, 2]), (Text, vec![3])]
        );
        assert!(batches(&[], 4).is_empty());
    }

    #[test]
    fn an_invalid_input_leaves_alone_at_once_with_its_error_and_takes_no_slot() {
        use Modality::{Image, Text};
        let inputs = vec![
            Input::invalid("\\xff", "line 1 is not UTF-8"),
            Input::text("a"),
            Input::invalid("b\\xc3", "line 3 is not UTF-8"),
            Input::invalid("c\\x80", "line 4 is not UTF-8"),
            Input::image_path("x.jpg"),
            Input::text("d"),
            Input::invalid("\\xfe", "line 7 is not UTF-8"),
        ];
        assert_eq!(
            batches_of(inputs.clone(), 2),
            [
                (None, vec![0]),
                (None, vec![2]),
                (None, vec![3]),
                (Some(Text), vec![1, 5]),
                (Some(Image), vec![4]),
                (None, vec![6]),
            ]
        );
        let Some(Batch::Invalid(encoded)) = Batcher::new(inputs.into_iter().skip(2), 2).next()
        else {
            panic!("the first input is invalid");
        };
        assert_eq!(encoded.index, 0);
        assert_eq!(
            encoded.input,
            Input::invalid("b\\xc3", "line 3 is not UTF-8")
        );
        let error = encoded.result.unwrap_err();
        assert_eq!(
            error.failure,
            ItemFailure::Invalid("line 3 is not UTF-8".into())
        );
        assert_eq!(
            error.to_string(),
            "input #0 (b\\xc3): invalid input: line 3 is not UTF-8"
        );
    }

    #[test]
    fn batcher_pulls_inputs_lazily() {
        let pulled = std::cell::Cell::new(0);
        let inputs = (0..).map(|i| {
            pulled.set(pulled.get() + 1);
            Input::text(format!("{i}"))
        });
        let mut batcher = Batcher::new(inputs, 3);
        assert!(matches!(batcher.next(), Some(Batch::Request { items, .. }) if items.len() == 3));
        assert_eq!(pulled.get(), 3);
        batcher.next();
        assert_eq!(pulled.get(), 6);
    }

    #[test]
    fn normalize_gives_unit_length_and_leaves_zero_alone() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0; 3];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0.0; 3]);
    }
}
