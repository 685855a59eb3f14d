//! librdkafka's queues, used directly where rdkafka's wrappers cost a thread's idle CPU or a
//! call and an allocation per message: a queue that wakes a thread through a socket instead of
//! being polled, and messages taken from a queue a batch at a time.

use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;

/// A handle on one of a client's librdkafka queues, released when dropped. It holds a reference
/// to the client: drop it before the client.
pub(super) struct Queue(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka's queue handles are thread-safe; the handle is released only in `Drop`.
unsafe impl Send for Queue {}
// SAFETY: as above; every operation used here locks the queue inside librdkafka.
unsafe impl Sync for Queue {}

impl Queue {
    /// The client's main queue (a producer's delivery reports land there).
    ///
    /// # Safety
    /// `client` must be a live librdkafka client.
    pub(super) unsafe fn main(client: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: the caller vouches for `client`; the handle holds its own reference.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_main(client) }).map(Self)
    }

    /// The consumer group's queue (rebalances, errors, statistics, and messages of partitions
    /// not forwarded elsewhere); `None` for a client without a group.
    ///
    /// # Safety
    /// `client` must be a live librdkafka client.
    pub(super) unsafe fn consumer(client: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: as for `main`.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(client) }).map(Self)
    }

    /// A new queue of the application's, for messages forwarded to it.
    ///
    /// # Safety
    /// `client` must be a live librdkafka client.
    pub(super) unsafe fn new(client: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: as for `main`.
        NonNull::new(unsafe { rd::rd_kafka_queue_new(client) }).map(Self)
    }

    /// Sends the messages fetched for `topic`'s `partition` to `to` from now on, including across
    /// later assignments of the partition (librdkafka keeps a forwarding the application set).
    ///
    /// # Safety
    /// `client` must be the live librdkafka client `to` belongs to.
    pub(super) unsafe fn forward_partition(
        client: *mut rd::rd_kafka_t,
        topic: &str,
        partition: i32,
        to: &Queue,
    ) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        // SAFETY: the caller vouches for `client`; the name is a valid C string for the call.
        let Some(source) = NonNull::new(unsafe {
            rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition)
        })
        .map(Self) else {
            return false;
        };
        // SAFETY: both handles are valid; the forwarding holds its own reference to `to`.
        unsafe { rd::rd_kafka_queue_forward(source.0.as_ptr(), to.0.as_ptr()) };
        true
    }

    /// librdkafka writes a byte to `socket` whenever the queue stops being empty (once until the
    /// queue is next served). The socket must stay open until [`stop_signalling`](Self::stop_signalling).
    pub(super) fn signal_to(&self, socket: &UnixStream) {
        // SAFETY: the queue handle is valid; the payload is static; the caller keeps the socket
        // open while the signalling is on.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(
                self.0.as_ptr(),
                socket.as_raw_fd(),
                b"r".as_ptr().cast(),
                1,
            )
        }
    }

    /// Turns [`signal_to`](Self::signal_to) off.
    pub(super) fn stop_signalling(&self) {
        // SAFETY: the queue handle is valid; fd -1 turns the signalling off.
        unsafe { rd::rd_kafka_queue_io_event_enable(self.0.as_ptr(), -1, std::ptr::null(), 0) }
    }

    /// Operations queued.
    pub(super) fn len(&self) -> usize {
        // SAFETY: the queue handle is valid.
        unsafe { rd::rd_kafka_queue_length(self.0.as_ptr()) }
    }

    /// Takes up to `max` messages already queued, without waiting, into `into` (emptied first);
    /// outdated messages (from before a seek or a new assignment) are dropped by librdkafka.
    pub(super) fn take_messages(&self, into: &mut Messages, max: usize) -> usize {
        into.clear();
        into.held.reserve(max);
        // SAFETY: the queue handle is valid, and `held` has room for `max` pointers, which
        // librdkafka fills from the start; it returns how many it wrote (or -1 on error).
        let taken = unsafe {
            rd::rd_kafka_consume_batch_queue(self.0.as_ptr(), 0, into.held.as_mut_ptr(), max)
        };
        let taken = usize::try_from(taken).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialised the first `taken` pointers, each a message now owned by
        // `into` (destroyed in `clear`).
        unsafe { into.held.set_len(taken) };
        taken
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: the handle was obtained from librdkafka and is released once.
        unsafe { rd::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// Messages taken from a queue, owned until [`clear`](Self::clear), the next take or the drop
/// return them to librdkafka.
#[derive(Default)]
pub(super) struct Messages {
    held: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: a message may be read and destroyed from any thread; only one owner holds each.
unsafe impl Send for Messages {}

impl Messages {
    /// The messages, in the order the queue gave them.
    pub(super) fn iter(&self) -> impl Iterator<Item = RawMessage<'_>> {
        self.held.iter().map(|&message| RawMessage {
            // SAFETY: each pointer is a live message owned by `self` for the borrow.
            message: unsafe { &*message },
        })
    }

    /// Returns every message to librdkafka (their fetch buffers stay reserved until then).
    pub(super) fn clear(&mut self) {
        for message in self.held.drain(..) {
            // SAFETY: each message is owned here and destroyed once.
            unsafe { rd::rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for Messages {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One fetched message, borrowed from [`Messages`].
pub(super) struct RawMessage<'a> {
    message: &'a rd::rd_kafka_message_t,
}

impl<'a> RawMessage<'a> {
    /// The fetch error this message reports instead of a record (partition end, a broker error).
    pub(super) fn error(&self) -> Option<rdkafka::error::RDKafkaErrorCode> {
        (self.message.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| self.message.err.into())
    }

    /// The topic's name as librdkafka holds it (not validated as UTF-8).
    pub(super) fn topic(&self) -> &'a [u8] {
        if self.message.rkt.is_null() {
            return &[];
        }
        // SAFETY: the topic handle lives as long as the message, and its name is a C string.
        unsafe { std::ffi::CStr::from_ptr(rd::rd_kafka_topic_name(self.message.rkt)) }.to_bytes()
    }

    pub(super) fn partition(&self) -> i32 {
        self.message.partition
    }

    pub(super) fn offset(&self) -> i64 {
        self.message.offset
    }

    pub(super) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: `key` points at `key_len` bytes owned by the message, or is null.
        unsafe { bytes(self.message.key.cast(), self.message.key_len) }
    }

    pub(super) fn payload(&self) -> &'a [u8] {
        // SAFETY: `payload` points at `len` bytes owned by the message, or is null.
        unsafe { bytes(self.message.payload.cast(), self.message.len) }.unwrap_or_default()
    }

    /// The record's timestamp in milliseconds, 0 when it has none.
    pub(super) fn timestamp_ms(&self) -> i64 {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; librdkafka only reads it and writes `kind`.
        let ms = unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) };
        if kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE {
            0
        } else {
            ms
        }
    }
}

/// # Safety
/// `ptr` must be null or point at `len` bytes that outlive `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    // SAFETY: as the caller vouches.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A socket pair librdkafka's queues write a byte to (see [`Queue::signal_to`]) and a thread
/// sleeps on.
pub(super) struct Wakeup {
    reader: UnixStream,
    /// The end librdkafka writes to: non-blocking, since its own threads must never block on a
    /// full socket.
    signal: UnixStream,
}

impl Wakeup {
    /// A wake-up whose [`wait`](Self::wait) lasts at most `timeout`.
    pub(super) fn new(timeout: Duration) -> std::io::Result<Self> {
        let (reader, signal) = UnixStream::pair()?;
        reader.set_read_timeout(Some(timeout))?;
        signal.set_nonblocking(true)?;
        Ok(Self { reader, signal })
    }

    /// The end to hand to [`Queue::signal_to`].
    pub(super) fn signal(&self) -> &UnixStream {
        &self.signal
    }

    /// Wakes the thread waiting in [`wait`](Self::wait) (or its next wait).
    pub(super) fn wake(&self) {
        let _ = (&self.signal).write(b"w");
    }

    /// Sleeps until a byte arrives or the timeout passes, and consumes the bytes waiting.
    pub(super) fn wait(&self) {
        let mut bytes = [0u8; 64];
        match (&self.reader).read(&mut bytes) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                ) => {}
            // Not expected of a socket pair this owns both ends of; never a spin.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
