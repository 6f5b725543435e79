pub mod request;
pub mod wait;
