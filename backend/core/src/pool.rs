//! Batch buffers handed back once their responses are sent, so the next
//! batch writes into memory that is already mapped. A fresh buffer of a
//! batch's size is mapped anew (the server runs with a fixed 128 KiB mmap
//! threshold, so that freed batches leave its RSS), and every one of its
//! pages faults on first write: about 150 faults per 224x224 image.

use std::sync::{Arc, Mutex, PoisonError};

use crate::batch::{Element, HostTensor};

/// At most this many spare buffers; a buffer returns only after its batch
/// is answered, so an instance keeps at most one in circulation.
const SPARE_BUFFERS: usize = 8;

/// Spare batch buffers of one model, shared by its instances.
#[derive(Default)]
pub struct BufferPool<T> {
    spare: Mutex<Vec<Vec<T>>>,
}

impl<T: Element> BufferPool<T> {
    /// A buffer of `len` zeroed values, in a spare buffer's memory when one
    /// is free.
    pub fn take(&self, len: usize) -> Vec<T> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut values = spare.unwrap_or_default();
        values.clear();
        values.resize(len, T::zeroed());
        values
    }

    /// The batch's output tensor over `values`, which come back to the pool
    /// when the tensor is dropped, after the responses are sent.
    pub fn tensor(self: &Arc<Self>, row_dims: Vec<i64>, values: Vec<T>) -> HostTensor {
        HostTensor::from_bytes(
            T::DATATYPE,
            row_dims,
            Pooled {
                values,
                pool: Arc::clone(self),
            },
        )
    }

    /// Returns a buffer that did not become a tensor.
    pub fn give_back(&self, values: Vec<T>) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_BUFFERS {
            spare.push(values);
        }
    }
}

/// A batch buffer on loan from its pool.
struct Pooled<T: Element> {
    values: Vec<T>,
    pool: Arc<BufferPool<T>>,
}

impl<T: Element> AsRef<[u8]> for Pooled<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.values)
    }
}

impl<T: Element> Drop for Pooled<T> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.values));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped tensor's buffer is the next batch's, zeroed again, and the
    /// tensor's bytes are the values it was given.
    #[test]
    fn a_buffer_comes_back_zeroed_for_the_next_batch() {
        let pool = Arc::new(BufferPool::<f32>::default());
        let mut values = pool.take(6);
        values.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let address = values.as_ptr();
        let tensor = pool.tensor(vec![3], values);
        let expected: &[u8] = bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(tensor.bytes(0..2), Some(expected));
        drop(tensor);
        let again = pool.take(4);
        assert_eq!(again.as_ptr(), address, "the same memory");
        assert_eq!(again, vec![0.0; 4]);
        // A larger batch grows the spare buffer; the pool never hands one out twice.
        let larger = pool.take(8);
        assert_ne!(larger.as_ptr(), again.as_ptr());
        assert_eq!(larger, vec![0.0; 8]);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_spares() {
        let pool = Arc::new(BufferPool::<u8>::default());
        let tensors: Vec<_> = (0..SPARE_BUFFERS + 3)
            .map(|_| pool.tensor(vec![1], pool.take(1)))
            .collect();
        drop(tensors);
        assert_eq!(pool.spare.lock().unwrap().len(), SPARE_BUFFERS);
    }
}
