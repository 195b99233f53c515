//! Typed faces over the containers (feature `serde`): keys and values are
//! `Serialize` / `Deserialize` values, encoded with postcard.
//!
//! The header records the types' names, so a typed container opens only as
//! the same types (`TypeMismatch` otherwise), and never as a byte container.
//! Two keys are the same key when their encodings are equal: integers,
//! strings, enums and tuples behave as expected; floats compare by bits
//! (`0.0` and `-0.0` are two keys), as with a `HashMap` of `f64` bits.
//!
//! To keep keys or values of several types in one map — Python's dict —
//! use an enum of them as `K` or `V` (see `examples/manager_dict_list.rs`).

use super::list::SharedList;
use super::map::{modify, Change, SharedMap};
use super::{Options, Store};
use crate::error::ContainerError;
use crate::types::{Kind, TypeDesc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// The marker of a typed map's types (no value of them is held).
type Pair<K, V> = fn(K, V) -> (K, V);

fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ContainerError> {
    postcard::to_allocvec(v).map_err(ContainerError::Encode)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, ContainerError> {
    postcard::from_bytes(b).map_err(ContainerError::Decode)
}

fn decode_opt<T: DeserializeOwned>(b: Option<Vec<u8>>) -> Result<Option<T>, ContainerError> {
    b.map(|b| decode(&b)).transpose()
}

/// A [`SharedMap`] whose keys are `K` and values `V` (feature `serde`).
///
/// ```
/// use shmring::TypedMap;
/// let scores = TypedMap::<String, u32>::anonymous()?;
/// scores.insert(&"ada".to_string(), &3)?;
/// scores.update(&"ada".to_string(), |n| Some(n.unwrap_or(0) + 1))?;
/// assert_eq!(scores.get(&"ada".to_string())?, Some(4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedMap<K, V> {
    map: SharedMap,
    _t: PhantomData<Pair<K, V>>,
}

impl<K, V> std::fmt::Debug for TypedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedMap").field("map", &self.map).finish()
    }
}

/// Builds or opens a [`TypedMap`].
pub struct TypedMapBuilder<K, V> {
    o: Options,
    _t: PhantomData<Pair<K, V>>,
}

impl<K, V> Clone for TypedMapBuilder<K, V> {
    fn clone(&self) -> Self {
        TypedMapBuilder {
            o: self.o.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for TypedMapBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedMapBuilder")
            .field("o", &self.o)
            .finish()
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> TypedMapBuilder<K, V> {
    super::container_builder_methods!(TypedMap<K, V>);

    fn kind_desc() -> (Kind, TypeDesc) {
        let (k, v) = (std::any::type_name::<K>(), std::any::type_name::<V>());
        (
            Kind::Map,
            super::named_desc(std::any::type_name::<(K, V)>(), &["map", k, v]),
        )
    }

    fn finish(store: Store) -> TypedMap<K, V> {
        TypedMap {
            map: SharedMap::from_store(store),
            _t: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> TypedMap<K, V> {
    super::container_constructors!(TypedMapBuilder<K, V>, TypedMapBuilder {
        o: Options::default(),
        _t: PhantomData,
    });

    pub(crate) fn store(&self) -> &Store {
        self.map.store()
    }

    super::container_handle_methods!();

    /// The bytes underneath (postcard encodings), for tools.
    pub fn as_bytes(&self) -> &SharedMap {
        &self.map
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, ContainerError> {
        decode_opt(self.map.get(&encode(key)?)?)
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &K) -> Result<bool, ContainerError> {
        self.map.contains_key(&encode(key)?)
    }

    /// Entries in the map (a snapshot).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Stores `value` under `key`; returns the value it replaced.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, ContainerError> {
        decode_opt(self.map.insert(&encode(key)?, &encode(value)?)?)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>, ContainerError> {
        decode_opt(self.map.remove(&encode(key)?)?)
    }

    /// Replaces the value of `key` with `f(current)` as one atomic step
    /// (`None` removes it); returns the new value. See
    /// [`SharedMap::update`]: `f` runs under the writer lock.
    ///
    /// # Errors
    /// As [`SharedMap::update`]; also `Decode` if the stored value is not a
    /// `V` (then nothing changes and `f` does not run), `Encode`.
    pub fn update(
        &self,
        key: &K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, ContainerError> {
        let k = encode(key)?;
        let mut result: Result<Option<(V, Vec<u8>)>, ContainerError> = Ok(None);
        let slot = &mut result;
        modify(self.map.store(), &k, move |old| {
            let old = match old.map(decode::<V>).transpose() {
                Ok(old) => old,
                Err(e) => {
                    *slot = Err(e);
                    return (Change::Keep, ());
                }
            };
            match f(old) {
                None => (Change::Remove, ()),
                Some(v) => match encode(&v) {
                    Ok(b) => {
                        *slot = Ok(Some((v, b)));
                        match slot {
                            Ok(Some((_, b))) => (Change::Set(&b[..]), ()),
                            _ => unreachable!("just stored"),
                        }
                    }
                    Err(e) => {
                        *slot = Err(e);
                        (Change::Keep, ())
                    }
                },
            }
        })?;
        Ok(result?.map(|(v, _)| v))
    }

    /// Stores `new` (`None`: removes the key) only if the current value of
    /// `key` encodes as `current` does (`None`: absent), as one atomic step.
    /// Returns `Ok(Err(actual))` with the value found when it did not swap.
    pub fn compare_and_swap(
        &self,
        key: &K,
        current: Option<&V>,
        new: Option<&V>,
    ) -> Result<Result<(), Option<V>>, ContainerError> {
        let cur = current.map(encode).transpose()?;
        let new = new.map(encode).transpose()?;
        match self
            .map
            .compare_and_swap(&encode(key)?, cur.as_deref(), new.as_deref())?
        {
            Ok(()) => Ok(Ok(())),
            Err(actual) => Ok(Err(decode_opt(actual)?)),
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), ContainerError> {
        self.map.clear()
    }

    /// A consistent snapshot of every entry, in no particular order.
    pub fn entries(&self) -> Result<Vec<(K, V)>, ContainerError> {
        self.map
            .entries()?
            .into_iter()
            .map(|(k, v)| Ok((decode(&k)?, decode(&v)?)))
            .collect()
    }

    /// An iterator over a consistent snapshot (taken now).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>, ContainerError> {
        Ok(self.entries()?.into_iter())
    }
}

/// A [`SharedList`] of `T` (feature `serde`).
///
/// ```
/// use shmring::TypedList;
/// let l = TypedList::<u32>::anonymous()?;
/// l.extend(0..10)?;
/// l.reverse()?;
/// assert_eq!(l.to_vec()?, (0..10).rev().collect::<Vec<_>>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedList<T> {
    list: SharedList,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> std::fmt::Debug for TypedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedList")
            .field("list", &self.list)
            .finish()
    }
}

/// Builds or opens a [`TypedList`].
pub struct TypedListBuilder<T> {
    o: Options,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for TypedListBuilder<T> {
    fn clone(&self) -> Self {
        TypedListBuilder {
            o: self.o.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TypedListBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedListBuilder")
            .field("o", &self.o)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> TypedListBuilder<T> {
    super::container_builder_methods!(TypedList<T>);

    fn kind_desc() -> (Kind, TypeDesc) {
        let t = std::any::type_name::<T>();
        (Kind::List, super::named_desc(t, &["list", t]))
    }

    fn finish(store: Store) -> TypedList<T> {
        TypedList {
            list: SharedList::from_store(store),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> TypedList<T> {
    super::container_constructors!(
        TypedListBuilder<T>,
        TypedListBuilder {
            o: Options::default(),
            _t: PhantomData,
        }
    );

    pub(crate) fn store(&self) -> &Store {
        self.list.store()
    }

    super::container_handle_methods!();

    /// The bytes underneath (postcard encodings), for tools.
    pub fn as_bytes(&self) -> &SharedList {
        &self.list
    }

    /// Items in the list (a snapshot).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the list is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The item at `index`; `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<T>, ContainerError> {
        decode_opt(self.list.get(index)?)
    }

    /// A consistent snapshot of every item, in order.
    pub fn to_vec(&self) -> Result<Vec<T>, ContainerError> {
        self.list.to_vec()?.iter().map(|b| decode(b)).collect()
    }

    /// An iterator over a consistent snapshot (taken now).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ContainerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Appends `value`.
    pub fn push(&self, value: &T) -> Result<(), ContainerError> {
        self.list.push(&encode(value)?)
    }

    /// Appends every item, as one atomic step.
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), ContainerError> {
        let enc = items
            .into_iter()
            .map(|v| encode(&v))
            .collect::<Result<Vec<_>, _>>()?;
        self.list.extend(enc)
    }

    /// Removes and returns the last item.
    pub fn pop(&self) -> Result<Option<T>, ContainerError> {
        decode_opt(self.list.pop()?)
    }

    /// Replaces the item at `index`; returns the old one.
    pub fn set(&self, index: usize, value: &T) -> Result<T, ContainerError> {
        decode(&self.list.set(index, &encode(value)?)?)
    }

    /// Inserts `value` before position `index`.
    pub fn insert(&self, index: usize, value: &T) -> Result<(), ContainerError> {
        self.list.insert(index, &encode(value)?)
    }

    /// Removes and returns the item at `index`.
    pub fn remove(&self, index: usize) -> Result<T, ContainerError> {
        decode(&self.list.remove(index)?)
    }

    /// Reverses the order, as one atomic step.
    pub fn reverse(&self) -> Result<(), ContainerError> {
        self.list.reverse()
    }

    /// Sorts the items by `T`'s order (stable), as one atomic step.
    ///
    /// # Errors
    /// `Decode` if an item is not a `T` (nothing changes).
    pub fn sort(&self) -> Result<(), ContainerError>
    where
        T: Ord,
    {
        self.sort_by(|a, b| a.cmp(b))
    }

    /// Sorts the items with `compare` (stable), as one atomic step.
    /// Every item is decoded once, under the writer lock.
    ///
    /// # Errors
    /// `Decode` if an item is not a `T` (nothing changes).
    pub fn sort_by(
        &self,
        mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering,
    ) -> Result<(), ContainerError> {
        self.list.reorder(|items| {
            let values = items
                .iter()
                .map(|b| decode::<T>(b))
                .collect::<Result<Vec<T>, _>>()?;
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_by(|&a, &b| compare(&values[a], &values[b]));
            Ok(order)
        })
    }

    /// Keeps the first `len` items.
    pub fn truncate(&self, len: usize) -> Result<(), ContainerError> {
        self.list.truncate(len)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<(), ContainerError> {
        self.list.clear()
    }
}
