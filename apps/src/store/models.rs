//! The model versions of each consumer group, kept in the event store, which every instance of
//! the group already shares: one version is current, and every instance scores with it.
//!
//! A version is stored complete, with its SHA-256, in the same transaction that makes it current,
//! so no instance ever reads a half-written model; a damaged one is refused when unpacked
//! (`anomaly_model::ModelPackage`). Which instance trains is decided by a lease: a PostgreSQL
//! advisory lock held by the trainer's own connection, released when it is done or when its
//! process dies. SQLite serves one instance, which always holds the lease.

use anomaly_model::ModelPackage;
use anyhow::Context;
use diesel::prelude::*;
// Only called by path: with the prelude's `QueryDsl` its `filter` would be ambiguous on tables.
use diesel::query_dsl::methods::FilterDsl;
use diesel::sql_types::{Bool, Text};

use super::{Store, postgres_schema, sqlite_schema};

/// Versions kept per group besides the current one: what a damaged current version falls back to.
const KEPT_VERSIONS: usize = 3;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The statements below, the same for both backends (diesel's tables are per backend).
macro_rules! current_version {
    ($schema:ident, $conn:expr, $group:expr) => {{
        use $schema::model_current::dsl::*;
        FilterDsl::filter(model_current, model_group.eq($group))
            .select(version)
            .first::<String>($conn)
            .optional()
    }};
}

macro_rules! versions_newest_first {
    ($schema:ident, $conn:expr, $group:expr) => {{
        use $schema::model_versions::dsl::*;
        FilterDsl::filter(model_versions, model_group.eq($group))
            .order((created_at_ms.desc(), version.desc()))
            .select(version)
            .load::<String>($conn)
    }};
}

macro_rules! package {
    ($schema:ident, $conn:expr, $group:expr, $version:expr) => {{
        use $schema::model_versions::dsl::*;
        FilterDsl::filter(
            model_versions,
            model_group.eq($group).and(version.eq($version)),
        )
        .select((artifact, sha256))
        .first::<(Vec<u8>, String)>($conn)
        .optional()
    }};
}

macro_rules! insert_version {
    ($schema:ident, $conn:expr, $group:expr, $package:expr) => {{
        use $schema::model_versions::dsl::*;
        let package: &ModelPackage = $package;
        diesel::insert_into(model_versions)
            .values((
                model_group.eq($group),
                version.eq(&package.version),
                artifact.eq(&package.bytes),
                sha256.eq(&package.sha256),
                created_at_ms.eq(chrono::Utc::now().timestamp_millis()),
            ))
            // Already there: the same model (a version names one training), stored before.
            .on_conflict_do_nothing()
            .execute($conn)
    }};
}

macro_rules! publish {
    ($schema:ident, $conn:expr, $group:expr, $package:expr) => {{
        let (group, package): (&str, &ModelPackage) = ($group, $package);
        insert_version!($schema, $conn, group, package)?;
        {
            use $schema::model_current::dsl::*;
            diesel::insert_into(model_current)
                .values((model_group.eq(group), version.eq(&package.version)))
                .on_conflict(model_group)
                .do_update()
                .set(version.eq(&package.version))
                .execute($conn)?;
        }
        let old: Vec<String> = versions_newest_first!($schema, $conn, group)?
            .into_iter()
            .filter(|v| *v != package.version)
            .skip(KEPT_VERSIONS)
            .collect();
        use $schema::model_versions::dsl::*;
        diesel::delete(FilterDsl::filter(
            model_versions,
            model_group.eq(group).and(version.eq_any(&old)),
        ))
        .execute($conn)?;
        QueryResult::Ok(())
    }};
}

macro_rules! seed {
    ($schema:ident, $conn:expr, $group:expr, $package:expr) => {{
        let (group, package): (&str, &ModelPackage) = ($group, $package);
        insert_version!($schema, $conn, group, package)?;
        use $schema::model_current::dsl::*;
        let became = diesel::insert_into(model_current)
            .values((model_group.eq(group), version.eq(&package.version)))
            .on_conflict_do_nothing()
            .execute($conn)?;
        QueryResult::Ok(became == 1)
    }};
}

impl Store {
    /// The version `group` scores with, if it has one.
    pub fn current_model_version(&mut self, group: &str) -> anyhow::Result<Option<String>> {
        match self {
            Self::Postgres(conn) => current_version!(postgres_schema, conn, group),
            Self::Sqlite(conn) => current_version!(sqlite_schema, conn, group),
        }
        .context("cannot read the group's current model version")
    }

    /// The versions stored for `group`, the current one first, then the others newest first.
    pub fn model_versions(&mut self, group: &str) -> anyhow::Result<Vec<String>> {
        let current = self.current_model_version(group)?;
        let mut versions = match self {
            Self::Postgres(conn) => versions_newest_first!(postgres_schema, conn, group),
            Self::Sqlite(conn) => versions_newest_first!(sqlite_schema, conn, group),
        }
        .context("cannot list the group's model versions")?;
        if let Some(current) = current {
            versions.retain(|v| *v != current);
            versions.insert(0, current);
        }
        Ok(versions)
    }

    /// One stored version of `group`, packed as it was stored (not yet checked).
    pub fn model_package(
        &mut self,
        group: &str,
        model_version: &str,
    ) -> anyhow::Result<Option<ModelPackage>> {
        match self {
            Self::Postgres(conn) => package!(postgres_schema, conn, group, model_version),
            Self::Sqlite(conn) => package!(sqlite_schema, conn, group, model_version),
        }
        .with_context(|| format!("cannot read model version {model_version}"))
        .map(|found| {
            found.map(|(bytes, sha256)| ModelPackage {
                version: model_version.to_string(),
                bytes,
                sha256,
            })
        })
    }

    /// Stores `package` and makes it `group`'s current version, in one transaction; versions
    /// beyond the few kept are removed.
    pub fn publish_model(&mut self, group: &str, package: &ModelPackage) -> anyhow::Result<()> {
        match self {
            Self::Postgres(conn) => {
                conn.transaction(|conn| publish!(postgres_schema, conn, group, package))
            }
            Self::Sqlite(conn) => {
                conn.transaction(|conn| publish!(sqlite_schema, conn, group, package))
            }
        }
        .with_context(|| format!("cannot publish model version {}", package.version))
    }

    /// Makes `package` `group`'s first version, unless the group has one already; whether it
    /// did. Instances that start with a model of their own (`anomaly train --out`) offer it so:
    /// the first one wins and the others adopt it.
    pub fn seed_model(&mut self, group: &str, package: &ModelPackage) -> anyhow::Result<bool> {
        match self {
            Self::Postgres(conn) => {
                conn.transaction(|conn| seed!(postgres_schema, conn, group, package))
            }
            Self::Sqlite(conn) => {
                conn.transaction(|conn| seed!(sqlite_schema, conn, group, package))
            }
        }
        .with_context(|| format!("cannot offer model version {}", package.version))
    }

    /// Takes `group`'s training lease if no other connection holds it; it is held until this
    /// connection closes (dropping the `Store`, or the process dying).
    pub fn try_lead_training(&mut self, group: &str) -> anyhow::Result<bool> {
        match self {
            Self::Postgres(conn) => {
                // A key of its own per group (hashtext is 32-bit; the migration lock is wider).
                let Locked { locked } = diesel::sql_query(
                    "SELECT pg_try_advisory_lock(hashtext('anomaly-train:' || $1)::BIGINT) AS locked",
                )
                .bind::<Text, _>(group)
                .get_result(conn)
                .context("cannot take the training lease")?;
                Ok(locked)
            }
            Self::Sqlite(_) => Ok(true),
        }
    }
}
