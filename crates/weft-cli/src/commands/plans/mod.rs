//! `weft plans`: one module per subcommand — reading plans (list, show, history) and the
//! operator's actions (halt, cancel, skip, inhibit, resume), and waiting for one to end.

pub(crate) mod cancel;
pub(crate) mod halt;
pub(crate) mod history;
pub(crate) mod inhibit;
pub(crate) mod list;
pub(crate) mod prune;
pub(crate) mod rerun;
pub(crate) mod resume;
pub(crate) mod show;
pub(crate) mod skip;
pub(crate) mod wait;
