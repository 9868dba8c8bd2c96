//! The sandbox: what a function can reach, and hostile functions stopped.

mod capabilities;
mod hostile;
