pub mod keepalive;
