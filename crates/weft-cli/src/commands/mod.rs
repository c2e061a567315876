//! One module per subcommand, each with its arguments (clap) and the function that runs it.
//! They share what is in [`crate::shared`] and never import one another.

pub(crate) mod backup;
pub(crate) mod bench;
pub(crate) mod event;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod plans;
pub(crate) mod queues;
pub(crate) mod run;
pub(crate) mod schedules;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod worker;
pub(crate) mod workers;
