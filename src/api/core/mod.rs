//! The API every host can use: Kernel additions, the `Nginx` core methods
//! (log, versions, constants, globals), and the Ruby library ngx_mruby users
//! rely on (`gems/`). `Userdata` and `StringIO` are Ruby (`mrblib/`).

pub mod cgroup;
pub mod gems;
pub mod kernel;
pub mod nginx;
