//! Cluster tests: two real `sluice serve` processes, each with its own data
//! directory and ports, on one fresh PostgreSQL database (and, for blobs,
//! one bucket on the test S3 server).
//!
//! They always run on PostgreSQL (the test server from
//! `sluice_tests::postgres`), whatever `SLUICE_TEST_BACKEND` says, so
//! `scripts/test.sh` runs this binary once, not again on its PostgreSQL
//! pass. One binary, so the harness is linked once.

mod blobs;
mod commits;
mod deploys;
mod documents;
mod messages;
mod node;
mod outage;
mod schedules;
