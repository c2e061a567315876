//! `weft jobs`: the job board — posting jobs, reading the board and the trash, and the
//! operator's actions (trash, retry). One module per subcommand.

pub(crate) mod list;
pub(crate) mod post;
pub(crate) mod retry;
pub(crate) mod show;
pub(crate) mod trash;
pub(crate) mod trashed;
