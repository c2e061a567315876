//! `weft schedules`: flows started on a cron's ticks by the nodes sharing the store — one
//! module per subcommand (`add`, `list`; `change` holds pause, resume, remove and trigger,
//! which take a schedule's name and nothing else).

pub(crate) mod add;
pub(crate) mod change;
pub(crate) mod list;
