//! Entity names, cheap to decode and to clone: a fleet's stream names the same hosts over and
//! over, so a decoded sample keeps a short name in place and shares a long one with the same name
//! read before, instead of allocating one per sample.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// Names up to this many bytes are kept in place (`web-42`, `db-eu-3.example.com`): no
/// allocation, no lookup. Longer ones are [interned](Entity::interned).
pub const INLINE_NAME_BYTES: usize = 30;

/// Long names a decoding thread keeps for reuse. Past this many the table starts afresh, so a
/// stream of ever-new names (host churn, garbage) cannot grow it without bound; names already
/// handed out stay valid, and a name seen again is simply allocated once more.
pub const INTERNED_NAMES_PER_THREAD: usize = 1 << 17;

thread_local! {
    // foldhash, seeded per process: a few times faster than SipHash on short keys, and names
    // come from the network, so the seed keeps their buckets unpredictable.
    static INTERNED: RefCell<HashSet<Arc<str>, RandomState>> =
        RefCell::new(HashSet::with_hasher(RandomState::default()));
}

/// The name of an entity (a host, a server): immutable, cheap to clone, and built without an
/// allocation once the stream is warm.
///
/// Compares, orders and hashes as its text, so a map keyed by `Entity` is looked up with a
/// `&str`. Serialized as a plain string; deserializing one keeps it in place or interns it.
///
/// ```
/// use anomaly_core::Entity;
///
/// let short = Entity::interned("web-1");
/// assert_eq!(short, "web-1");
/// let long = "a-rather-long-host-name.eu-west-1.compute.internal";
/// let (a, b) = (Entity::interned(long), Entity::interned(long));
/// assert!(Entity::same_text_shared(&a, &b), "the second is the first, shared");
/// ```
#[derive(Clone)]
pub struct Entity(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes of `bytes`, copied whole from a `str`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_NAME_BYTES],
    },
    Shared(Arc<str>),
}

impl Entity {
    /// `name`, kept in place when short, otherwise shared with nothing.
    pub fn new(name: &str) -> Self {
        Self::inline(name).unwrap_or_else(|| Self(Repr::Shared(Arc::from(name))))
    }

    /// `name`, kept in place when short, otherwise shared with the same name read earlier on
    /// this thread if there was one: no allocation in steady state. The table of long names is
    /// per thread (no lock) and bounded by [`INTERNED_NAMES_PER_THREAD`].
    pub fn interned(name: &str) -> Self {
        if let Some(inline) = Self::inline(name) {
            return inline;
        }
        INTERNED.with(|table| {
            let mut table = table.borrow_mut();
            if let Some(shared) = table.get(name) {
                return Self(Repr::Shared(Arc::clone(shared)));
            }
            if table.len() >= INTERNED_NAMES_PER_THREAD {
                table.clear();
            }
            let shared: Arc<str> = Arc::from(name);
            table.insert(Arc::clone(&shared));
            Self(Repr::Shared(shared))
        })
    }

    fn inline(name: &str) -> Option<Self> {
        let len = name.len();
        if len > INLINE_NAME_BYTES {
            return None;
        }
        let mut bytes = [0; INLINE_NAME_BYTES];
        bytes[..len].copy_from_slice(name.as_bytes());
        Some(Self(Repr::Inline {
            len: len as u8,
            bytes,
        }))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: `bytes` is a whole `str` copied in `inline`, so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Shared(name) => name,
        }
    }

    /// Whether `a` and `b` are one shared long name (not only equal text).
    pub fn same_text_shared(a: &Self, b: &Self) -> bool {
        match (&a.0, &b.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for Entity {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Entity {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Entity {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Entity {
    fn eq(&self, other: &Self) -> bool {
        Self::same_text_shared(self, other) || self.as_str() == other.as_str()
    }
}

impl Eq for Entity {}

impl PartialOrd for Entity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Entity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes: `Borrow<str>` lookups must find it.
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Entity {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Entity {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Entity {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Entity> for str {
    fn eq(&self, other: &Entity) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Entity> for &str {
    fn eq(&self, other: &Entity) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Entity> for String {
    fn eq(&self, other: &Entity) -> bool {
        self == other.as_str()
    }
}

impl fmt::Debug for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<&str> for Entity {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<&String> for Entity {
    fn from(name: &String) -> Self {
        Self::new(name)
    }
}

impl From<String> for Entity {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

impl From<Entity> for String {
    fn from(name: Entity) -> Self {
        name.as_str().to_owned()
    }
}

impl Serialize for Entity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Entity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;

        impl Visitor<'_> for Name {
            type Value = Entity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entity name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Entity, E> {
                Ok(Entity::interned(name))
            }
        }

        deserializer.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const LONG: &str = "a-rather-long-host-name.eu-west-1.compute.internal";

    #[test]
    fn short_names_are_kept_in_place_and_long_ones_shared_once_decoded() {
        let short: Entity = serde_json::from_str("\"db-7\"").unwrap();
        assert_eq!(short, "db-7");
        assert!(matches!(short.0, Repr::Inline { .. }));
        let longest = "x".repeat(INLINE_NAME_BYTES);
        assert!(matches!(Entity::interned(&longest).0, Repr::Inline { .. }));
        assert_eq!(Entity::interned(&longest), longest.as_str());

        let json = format!("\"{LONG}\"");
        let first: Entity = serde_json::from_str(&json).unwrap();
        let second: Entity = serde_json::from_str(&json).unwrap();
        assert!(Entity::same_text_shared(&first, &second));
        assert_eq!(serde_json::to_string(&second).unwrap(), json);
        let own = Entity::new(LONG);
        assert!(!Entity::same_text_shared(&first, &own));
        assert_eq!(first, own, "equal as text");
    }

    #[test]
    fn names_round_trip_through_postcard_whatever_their_length() {
        let multibyte = "hôte-ünïcode-ñame-très-long-indeed";
        assert!(multibyte.len() > INLINE_NAME_BYTES);
        for name in [
            "",
            "é",
            "web-1",
            "a".repeat(INLINE_NAME_BYTES + 1).as_str(),
            multibyte,
        ] {
            let bytes = postcard::to_stdvec(&Entity::new(name)).unwrap();
            let back: Entity = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.as_str(), name);
        }
    }

    #[test]
    fn the_table_starts_afresh_past_its_bound_and_old_names_stay_valid() {
        // Runs on a thread of its own: the table is per thread.
        std::thread::spawn(|| {
            let early = Entity::interned(LONG);
            for i in 0..INTERNED_NAMES_PER_THREAD {
                Entity::interned(&format!("{LONG}-{i}"));
            }
            INTERNED.with(|t| assert!(t.borrow().len() <= INTERNED_NAMES_PER_THREAD));
            let again = Entity::interned(LONG);
            assert!(
                !Entity::same_text_shared(&early, &again),
                "the table was cleared"
            );
            assert_eq!(early, again);
            assert_eq!(early.as_str(), LONG);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_map_keyed_by_entities_is_looked_up_by_text_and_orders_as_text() {
        let mut map = HashMap::new();
        map.insert(Entity::new("web-1"), 1);
        map.insert(Entity::new(LONG), 2);
        assert_eq!(map.get("web-1"), Some(&1));
        assert_eq!(map.get(LONG), Some(&2));
        assert!(Entity::new("a") < Entity::new("b"));
        assert!(Entity::new(LONG) < Entity::new("b"));
    }
}
