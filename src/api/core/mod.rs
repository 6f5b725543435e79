pub mod gems;
pub mod kernel;
pub mod nginx;
