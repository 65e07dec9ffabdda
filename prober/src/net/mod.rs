//! Where probes go: target names and addresses, interfaces, and the kernel's routes and
//! neighbours (over rtnetlink), for either address family.

pub mod interface;
pub mod neighbour;
mod netlink;
pub mod resolve;
pub mod route;
pub mod topology;
pub mod watch;

pub use interface::Interface;
pub use resolve::{resolve, Destination, Family, Host};
pub use route::Route;
pub use watch::Watch;
