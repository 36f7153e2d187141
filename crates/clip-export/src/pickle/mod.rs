//! A pickle reader for what torch.save writes into `data.pkl`, and nothing
//! more. A pickle is a program: its GLOBAL opcodes name Python callables
//! that REDUCE calls. This reader calls none; it knows the few torch.save
//! uses (OrderedDict, torch's tensor rebuilders, the typed storage classes)
//! as data constructors and refuses every other name.
//!
//! Containers live in a heap and values refer to them by index, which gives
//! pickle's reference semantics (a memoised dict filled after BINPUT is the
//! filled dict at BINGET) without recursive types: no input can nest deep
//! enough to overflow the stack, or form a cycle that leaks.

mod value;

use std::collections::HashMap;
use std::sync::Arc;

use crate::torch_zip::TorchError;
pub(crate) use value::{Global, Object, Pickle, StorageDtype, StorageRef, TensorRef, Value};

/// Runs the pickle in `data` up to its STOP opcode.
pub(crate) fn load(data: &[u8]) -> Result<Pickle, TorchError> {
    let mut machine = Machine {
        data,
        pos: 0,
        op_start: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        heap: Vec::new(),
    };
    let root = machine.run()?;
    Ok(Pickle {
        heap: machine.heap,
        root,
    })
}

struct Machine<'p> {
    data: &'p [u8],
    pos: usize,
    /// Where the opcode being run starts, for error messages.
    op_start: usize,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    heap: Vec<Object>,
}

impl Machine<'_> {
    fn error(&self, message: impl Into<String>) -> TorchError {
        TorchError::Pickle {
            offset: self.op_start,
            message: message.into(),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], TorchError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.error("the pickle ends inside an opcode's argument"));
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TorchError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, TorchError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, TorchError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self, len: u64) -> Result<Value, TorchError> {
        let len = usize::try_from(len).map_err(|_| self.error("a string longer than memory"))?;
        let bytes = self.bytes(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(Arc::from(s))),
            Err(_) => Err(self.error("a string that is not UTF-8")),
        }
    }

    fn line(&mut self) -> Result<String, TorchError> {
        let rest = &self.data[self.pos..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error("GLOBAL's name has no end of line"));
        };
        let line = std::str::from_utf8(&rest[..len])
            .map_err(|_| self.error("GLOBAL's name is not UTF-8"))?
            .to_string();
        self.pos += len + 1;
        Ok(line)
    }

    fn push_object(&mut self, object: Object) {
        self.heap.push(object);
        self.stack.push(Value::Object(self.heap.len() - 1));
    }

    /// The top of the stack, above the innermost MARK.
    fn pop(&mut self) -> Result<Value, TorchError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("the stack is empty"));
        }
        Ok(self.stack.pop().unwrap_or(Value::None))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, TorchError> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.error("no MARK to collect items from"));
        };
        Ok(self.stack.split_off(mark))
    }

    fn top(&self) -> Result<&Value, TorchError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(v) if self.stack.len() > floor => Ok(v),
            _ => Err(self.error("the stack is empty")),
        }
    }

    /// The heap object on top of the stack, for SETITEM(S), APPEND(S), BUILD.
    fn top_object(&mut self) -> Result<&mut Object, TorchError> {
        let index = match self.top()? {
            Value::Object(i) => *i,
            other => {
                let kind = other.kind(&self.heap).to_string();
                return Err(self.error(format!("cannot add items to {kind}")));
            }
        };
        Ok(&mut self.heap[index])
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), TorchError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("a dict item without a value"));
        }
        let mut items = items.into_iter();
        let pairs: Vec<(Value, Value)> =
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect();
        match self.top_object()? {
            Object::Dict(dict) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(self.error("SETITEM on something that is not a dict")),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), TorchError> {
        match self.top_object()? {
            Object::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.error("APPEND to something that is not a list")),
        }
    }

    fn memo_get(&mut self, index: u32) -> Result<(), TorchError> {
        match self.memo.get(&index) {
            Some(value) => {
                self.stack.push(value.clone());
                Ok(())
            }
            None => Err(self.error(format!("memo {index} was never stored"))),
        }
    }

    fn memo_put(&mut self, index: u32) -> Result<(), TorchError> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, TorchError> {
        loop {
            self.op_start = self.pos;
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    // PROTO: torch.save writes 2; 3 to 5 differ only in opcodes handled here.
                    let version = self.u8()?;
                    if !(2..=5).contains(&version) {
                        return Err(self.error(format!("pickle protocol {version}")));
                    }
                }
                0x95 => {
                    self.bytes(8)?; // FRAME: a length hint
                }
                b'.' => return self.stop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.push_object(Object::Dict(Vec::new())),
                b']' => self.push_object(Object::List(Vec::new())),
                b')' => self.push_object(Object::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    let value = self.long1()?;
                    self.stack.push(value);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let len = self.u32()?;
                    let s = self.string(len.into())?;
                    self.stack.push(s);
                }
                0x8c => {
                    let len = self.u8()?;
                    let s = self.string(len.into())?;
                    self.stack.push(s);
                }
                0x8d => {
                    let len = u64::from_le_bytes(self.array()?);
                    let s = self.string(len)?;
                    self.stack.push(s);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(opcode - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push_object(Object::Tuple(items));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let value = self.pop()?;
                    self.append(vec![value])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'q' => {
                    let index = self.u8()?;
                    self.memo_put(index.into())?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memo_put(index)?;
                }
                0x94 => {
                    let index =
                        u32::try_from(self.memo.len()).map_err(|_| self.error("memo overflow"))?;
                    self.memo_put(index)?;
                }
                b'h' => {
                    let index = self.u8()?;
                    self.memo_get(index.into())?;
                }
                b'j' => {
                    let index = self.u32()?;
                    self.memo_get(index)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack
                        .push(Value::Global(Global::resolve(&module, &name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.error("STACK_GLOBAL of something other than two strings"));
                    };
                    self.stack
                        .push(Value::Global(Global::resolve(&module, &name)?));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_storage(&pid)?;
                    self.push_object(Object::Storage(storage));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.reduce(callable, args)?;
                }
                b'b' => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`), never items.
                    self.pop()?;
                    if !matches!(self.top_object()?, Object::Dict(_)) {
                        return Err(self.error("BUILD of something that is not a dict"));
                    }
                }
                other => {
                    return Err(TorchError::UnknownOpcode {
                        offset: self.op_start,
                        opcode: other,
                    })
                }
            }
        }
    }

    fn stop(&mut self) -> Result<Value, TorchError> {
        if !self.marks.is_empty() || self.stack.len() != 1 {
            return Err(self.error(format!(
                "STOP with {} values on the stack and {} open MARKs",
                self.stack.len(),
                self.marks.len()
            )));
        }
        self.pop()
    }

    /// LONG1: a little-endian two's complement integer of up to 8 bytes here.
    fn long1(&mut self) -> Result<Value, TorchError> {
        let len = usize::from(self.u8()?);
        if len > 8 {
            return Err(self.error(format!("a {len}-byte integer (wider than 64 bits)")));
        }
        let bytes = self.bytes(len)?;
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut full = [if negative { 0xff } else { 0 }; 8];
        full[..len].copy_from_slice(bytes);
        Ok(Value::Int(i64::from_le_bytes(full)))
    }

    fn tuple(&self, value: &Value) -> Option<&[Value]> {
        match self.heap_of(value) {
            Some(Object::Tuple(items)) => Some(items),
            _ => None,
        }
    }

    /// torch.save's persistent id: `("storage", <dtype>Storage, key, location, numel)`.
    fn persistent_storage(&self, pid: &Value) -> Result<StorageRef, TorchError> {
        let bad = || self.error("a persistent id that is not torch's storage reference");
        match self.tuple(pid).ok_or_else(bad)? {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" =>
            {
                Ok(StorageRef {
                    dtype: *dtype,
                    key: key.clone(),
                    numel: u64::try_from(*numel).map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<(), TorchError> {
        let Value::Global(global) = callable else {
            return Err(self.error("REDUCE of something that is not a known callable"));
        };
        let Some(args) = self.tuple(&args).map(<[Value]>::to_vec) else {
            return Err(self.error("REDUCE with arguments that are not a tuple"));
        };
        match (global, args.as_slice()) {
            (Global::OrderedDict, []) => self.push_object(Object::Dict(Vec::new())),
            // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
            (Global::RebuildTensorV2, [storage, offset, size, stride, _, _, ..])
                if args.len() <= 7 =>
            {
                let tensor = self.tensor(storage, offset, size, stride)?;
                self.push_object(Object::Tensor(tensor));
            }
            // (_rebuild_tensor_v2, torch.Tensor or Parameter, its arguments, attributes)
            (
                Global::RebuildFromTypeV2,
                [Value::Global(Global::RebuildTensorV2), Value::Global(Global::TensorType), inner, _],
            ) => self.reduce(Value::Global(Global::RebuildTensorV2), inner.clone())?,
            // (data, requires_grad, backward_hooks[, state]): the data is the tensor
            (Global::RebuildParameter, [data, _, _])
            | (Global::RebuildParameterWithState, [data, _, _, _])
                if matches!(self.heap_of(data), Some(Object::Tensor(_))) =>
            {
                self.stack.push(data.clone());
            }
            _ => {
                return Err(self.error(format!(
                    "{global:?} called with {} arguments of unexpected kinds",
                    args.len()
                )))
            }
        }
        Ok(())
    }

    fn heap_of(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Object(i) => self.heap.get(*i),
            _ => None,
        }
    }

    fn tensor(
        &self,
        storage: &Value,
        offset: &Value,
        size: &Value,
        stride: &Value,
    ) -> Result<TensorRef, TorchError> {
        let Some(Object::Storage(storage)) = self.heap_of(storage) else {
            return Err(self.error("a tensor rebuilt from something that is not a storage"));
        };
        let ints = |value: &Value, what: &str| -> Result<Vec<u64>, TorchError> {
            let as_u64 = |v: &Value| match v {
                Value::Int(i) => u64::try_from(*i).ok(),
                _ => None,
            };
            match self.tuple(value) {
                Some(items) => items.iter().map(as_u64).collect::<Option<Vec<_>>>(),
                None => None,
            }
            .ok_or_else(|| self.error(format!("a tensor's {what} is not a tuple of sizes")))
        };
        let Value::Int(offset) = offset else {
            return Err(self.error("a tensor's storage offset is not an int"));
        };
        let offset = u64::try_from(*offset)
            .map_err(|_| self.error("a tensor's storage offset is negative"))?;
        let size = ints(size, "size")?;
        let stride = ints(stride, "stride")?;
        if size.len() != stride.len() {
            return Err(self.error(format!(
                "a tensor with {} sizes and {} strides",
                size.len(),
                stride.len()
            )));
        }
        Ok(TensorRef {
            storage: storage.clone(),
            offset,
            size,
            stride,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(data: &[u8]) -> String {
        load(data).unwrap_err().to_string()
    }

    #[test]
    fn scalars_and_containers() {
        // PROTO 2, (1, -2, "ab", [True, None, 0.5]) with LONG1 -2, a memoised list
        let mut data = vec![
            0x80, 2, b'(', b'K', 1, 0x8a, 1, 0xfe, 0x8c, 2, b'a', b'b', b']',
        ];
        data.extend([b'q', 0, b'(', 0x88, b'N', b'G']);
        data.extend(0.5f64.to_be_bytes());
        data.extend([b'e', b't', b'.']);
        let pickle = load(&data).unwrap();
        let Some(Object::Tuple(items)) = pickle.object(&pickle.root) else {
            panic!("{pickle:?}")
        };
        assert_eq!(
            items[..3],
            [Value::Int(1), Value::Int(-2), Value::Str("ab".into())]
        );
        assert_eq!(
            pickle.object(&items[3]),
            Some(&Object::List(vec![
                Value::Bool(true),
                Value::None,
                Value::Float(0.5)
            ]))
        );
    }

    #[test]
    fn memo_refers_to_the_filled_container() {
        // d = {}; memo 0 = d; d["k"] = 7; root = (d, memo 0)
        let data = [
            0x80, 2, b'(', b'}', b'q', 0, 0x8c, 1, b'k', b'K', 7, b's', b'h', 0, b't', b'.',
        ];
        let pickle = load(&data).unwrap();
        let Some(Object::Tuple(items)) = pickle.object(&pickle.root) else {
            panic!()
        };
        assert_eq!(items[0], items[1]);
        assert_eq!(
            pickle.object(&items[1]),
            Some(&Object::Dict(vec![(Value::Str("k".into()), Value::Int(7))]))
        );
    }

    #[test]
    fn refusals() {
        let global = b"\x80\x02cposix\nsystem\n.";
        assert!(matches!(
            load(global),
            Err(TorchError::ForbiddenGlobal { name }) if name == "posix.system"
        ));
        assert!(matches!(
            load(b"\x80\x02ctorch\nComplexFloatStorage\n."),
            Err(TorchError::ForbiddenGlobal { .. })
        ));
        assert!(matches!(
            load(b"\x80\x02I12\n."),
            Err(TorchError::UnknownOpcode {
                offset: 2,
                opcode: b'I'
            })
        ));
        assert!(err(b"\x80\x02K\x01K\x02.").contains("STOP with 2 values"));
        assert!(err(b"\x80\x02h\x05.").contains("memo 5"));
        assert!(err(b"\x80\x02X\xff\x00\x00\x00ab").contains("ends inside"));
        assert!(err(b"\x80\x02K\x01K\x02R.").contains("not a known callable"));
        // an integer wider than 64 bits (the legacy format's magic number is one)
        assert!(
            err(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").contains("wider")
        );
    }

    #[test]
    fn pops_stop_at_the_mark() {
        // MARK then TUPLE1 must not reach below the mark
        assert!(err(b"\x80\x02K\x01(\x85.").contains("stack is empty"));
    }
}
