//! Where the detector stands in each source partition, stored in the same database transaction
//! as the events it wrote (exactly-once): the next offset to read and where reading must start
//! again to rebuild its state ([`Position`]). The state itself, as of an offset, is stored in a
//! transaction of its own (it can be tens of megabytes, and the events must not wait for it),
//! after the position that covers it. A restarted or newly assigned instance reads both back
//! ([`Checkpoint`]) and carries on from there.

use anyhow::Context;
use diesel::prelude::*;
// Only called by path: with the prelude's `QueryDsl` its `filter` would be ambiguous on tables.
use diesel::query_dsl::methods::FilterDsl;
use diesel::upsert::excluded;

use super::{AnomalyRow, Store, postgres_schema, sqlite_schema, upsert_postgres, upsert_sqlite};

/// One source partition's position, as stored with the events.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The next offset to process: every record below it is reflected in the store.
    pub next_offset: u64,
    /// Where reading must start again to rebuild the state (`<= next_offset`).
    pub replay_from: u64,
}

/// One source partition's stored position and state, as read back on assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Where the partition stands.
    pub position: Position,
    /// The partition's encoded state and the offset it is as of (every record below it is in
    /// it; never beyond `position.next_offset`), if one was stored.
    pub state: Option<(u64, Vec<u8>)>,
}

fn to_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn to_u64(offset: i64) -> u64 {
    u64::try_from(offset).unwrap_or(0)
}

/// The position statement of [`Store::commit`], the same for both backends (diesel's tables are
/// per backend): an upsert that never moves the offsets back.
macro_rules! commit_position {
    ($schema:ident, $conn:expr, $group:expr, $position:expr) => {{
        use $schema::stream_offsets::dsl::*;
        let (group, position): (&str, &Position) = ($group, $position);
        let upsert = diesel::insert_into(stream_offsets)
            .values((
                consumer_group.eq(group),
                topic.eq(&position.topic),
                partition_id.eq(position.partition),
                next_offset.eq(to_i64(position.next_offset)),
                replay_from.eq(Some(to_i64(position.replay_from))),
            ))
            .on_conflict((consumer_group, topic, partition_id))
            .do_update()
            .set((
                next_offset.eq(excluded(next_offset)),
                replay_from.eq(excluded(replay_from)),
            ));
        FilterDsl::filter(upsert, next_offset.le(excluded(next_offset)))
            .execute($conn)
            .map(drop)
    }};
}

/// The statement of [`Store::save_state`] for either backend: an upsert that never moves the
/// state back.
macro_rules! save_state {
    ($schema:ident, $conn:expr, $group:expr, $topic:expr, $partition:expr, $at:expr, $bytes:expr) => {{
        use $schema::stream_state::dsl::*;
        let upsert = diesel::insert_into(stream_state)
            .values((
                consumer_group.eq($group),
                topic.eq($topic),
                partition_id.eq($partition),
                state_offset.eq(to_i64($at)),
                state.eq($bytes),
            ))
            .on_conflict((consumer_group, topic, partition_id))
            .do_update()
            .set((
                state_offset.eq(excluded(state_offset)),
                state.eq(excluded(state)),
            ));
        FilterDsl::filter(upsert, state_offset.le(excluded(state_offset)))
            .execute($conn)
            .map(drop)
    }};
}

impl Store {
    /// Writes `rows` and `position` of consumer `group` in one transaction. Offsets never move
    /// back: a stale writer (an instance that lost the partition and has not noticed yet)
    /// changes nothing there.
    pub fn commit(
        &mut self,
        group: &str,
        rows: &[AnomalyRow],
        position: &Position,
    ) -> anyhow::Result<()> {
        match self {
            Self::Postgres(conn) => conn
                .transaction(|conn| {
                    upsert_postgres(conn, rows)?;
                    commit_position!(postgres_schema, conn, group, position)
                })
                .context("cannot write anomalies and offsets to PostgreSQL"),
            Self::Sqlite(conn) => conn
                .transaction(|conn| {
                    upsert_sqlite(conn, rows)?;
                    commit_position!(sqlite_schema, conn, group, position)
                })
                .context("cannot write anomalies and offsets to SQLite"),
        }
    }

    /// Stores `bytes`, the state of `partition` of `topic` for consumer `group` as of offset
    /// `at`. The caller stores it only once a position at or beyond `at` is committed: a
    /// restored state never holds records the store has not seen. Like offsets, the state never
    /// moves back: a stale writer's older state changes nothing.
    pub fn save_state(
        &mut self,
        group: &str,
        source_topic: &str,
        partition: i32,
        at: u64,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        match self {
            Self::Postgres(conn) => save_state!(
                postgres_schema,
                conn,
                group,
                source_topic,
                partition,
                at,
                bytes
            )
            .context("cannot write the detector state to PostgreSQL"),
            Self::Sqlite(conn) => save_state!(
                sqlite_schema,
                conn,
                group,
                source_topic,
                partition,
                at,
                bytes
            )
            .context("cannot write the detector state to SQLite"),
        }
    }

    /// The stored checkpoints of `partitions` of `topic` for consumer `group`, with their state;
    /// a partition never written is missing.
    pub fn checkpoints(
        &mut self,
        group: &str,
        source_topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<Checkpoint>> {
        type Offsets = Vec<(i32, i64, Option<i64>)>;
        type States = Vec<(i32, i64, Vec<u8>)>;
        // Diesel's tables are per backend; the queries are the same for both.
        macro_rules! read_checkpoints {
            ($schema:ident, $conn:expr) => {{
                use $schema::stream_offsets as o;
                use $schema::stream_state as s;
                let offsets = FilterDsl::filter(
                    o::table,
                    o::consumer_group
                        .eq(group)
                        .and(o::topic.eq(source_topic))
                        .and(o::partition_id.eq_any(partitions)),
                )
                .select((o::partition_id, o::next_offset, o::replay_from))
                .load($conn)
                .context("cannot read stored offsets")?;
                let states = FilterDsl::filter(
                    s::table,
                    s::consumer_group
                        .eq(group)
                        .and(s::topic.eq(source_topic))
                        .and(s::partition_id.eq_any(partitions)),
                )
                .select((s::partition_id, s::state_offset, s::state))
                .load($conn)
                .context("cannot read stored detector state")?;
                (offsets, states)
            }};
        }
        let (offsets, states): (Offsets, States) = match self {
            Self::Postgres(conn) => read_checkpoints!(postgres_schema, conn),
            Self::Sqlite(conn) => read_checkpoints!(sqlite_schema, conn),
        };
        Ok(offsets
            .into_iter()
            .map(|(partition, next, replay)| {
                let next_offset = to_u64(next);
                Checkpoint {
                    position: Position {
                        topic: source_topic.to_string(),
                        partition,
                        next_offset,
                        replay_from: replay.map_or(next_offset, to_u64).min(next_offset),
                    },
                    state: states
                        .iter()
                        .find(|(p, _, _)| *p == partition)
                        .map(|(_, at, bytes)| (to_u64(*at), bytes.clone())),
                }
            })
            .collect())
    }
}
